"""Stored images and heatmaps: server-chosen names, atomic writes, a sweep that never fails."""

from __future__ import annotations

import os
import threading
import time

import pytest

from aistack.xray.files import HEATMAP, RESULT, SOURCE, FileStore


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
