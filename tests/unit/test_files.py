"""Stored images and heatmaps: server-chosen names, atomic writes, a sweep that never fails."""

from __future__ import annotations

import os
import threading
import time

import pytest

from aistack.xray.files import HEATMAP, ORPHAN_GRACE_SECONDS, RESULT, SOURCE, FileStore


def test_write_is_atomic_and_readable(tmp_path):
    files = FileStore(tmp_path)
    name = files.write(SOURCE, "abc.jpg", b"data")
    assert files.path(SOURCE, name).read_bytes() == b"data"
    assert not [p for p in (tmp_path / SOURCE).iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("name", ["../escape.jpg", ".hidden", "a/b.jpg"])
def test_names_cannot_leave_their_folder(tmp_path, name):
    with pytest.raises(ValueError):
        FileStore(tmp_path).write(RESULT, name, b"x")


def test_sweep_removes_only_files_past_retention(tmp_path):
    files = FileStore(tmp_path, retention_seconds=3600)
    old = files.path(HEATMAP, files.write(HEATMAP, "old.jpg", b"x"))
    new = files.path(HEATMAP, files.write(HEATMAP, "new.jpg", b"x"))
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert files.sweep() == 1
    assert not old.exists() and new.exists()


def test_sweep_tolerates_files_appearing_and_vanishing(tmp_path):
    files = FileStore(tmp_path, retention_seconds=0)
    stop = threading.Event()
    errors: list[Exception] = []

    def writer() -> None:
        index = 0
        while not stop.is_set():
            try:
                files.write(SOURCE, f"{index}.jpg", b"x" * 1000)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)
            index += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            files.sweep(now=time.time() + 10)
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_sweep_removes_orphans_past_the_grace_period_only(tmp_path):
    """A crash between writing the files and the row leaves orphans; the sweep takes them."""
    files = FileStore(tmp_path, retention_seconds=7 * 24 * 3600)
    kept = files.path(SOURCE, files.write(SOURCE, "a" * 32 + ".jpg", b"x"))
    orphan = files.path(RESULT, files.write(RESULT, "b" * 32 + ".jpg", b"x"))
    young_orphan = files.path(HEATMAP, files.write(HEATMAP, "c" * 32 + ".jpg", b"x"))
    old = time.time() - ORPHAN_GRACE_SECONDS - 60
    for path in (kept, orphan):
        os.utime(path, (old, old))
    asked: list[list[str]] = []

    def known_ids(ids: list[str]) -> set[str]:
        asked.append(ids)
        return {"a" * 32}

    assert files.sweep(known_ids=known_ids) == 1
    assert kept.exists() and not orphan.exists() and young_orphan.exists()
    assert asked == [["a" * 32, "b" * 32]]  # only files past the grace period are looked up


def test_sweep_without_a_row_lookup_keeps_orphans(tmp_path):
    files = FileStore(tmp_path)
    orphan = files.path(RESULT, files.write(RESULT, "b" * 32 + ".jpg", b"x"))
    old = time.time() - ORPHAN_GRACE_SECONDS - 60
    os.utime(orphan, (old, old))
    assert files.sweep() == 0 and orphan.exists()
