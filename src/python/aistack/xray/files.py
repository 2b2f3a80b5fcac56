"""Where uploaded images and rendered heatmaps live, under server-generated names.

Names are ``<prediction id>.<ext>``: never derived from user input, one file per request
(2020 overwrote a single shared file), and old files are swept after ``retention``. Files
are written just before their database row; a crash in between leaves orphans, which the
sweep removes once they are ``ORPHAN_GRACE_SECONDS`` old.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path

SOURCE = "source"  # uploaded images, as received
RESULT = "result"  # heatmap blended over the image (v1 `Output_Heatmap`)
HEATMAP = "heatmap"  # colorized heatmap alone, for overlays drawn by the client
KINDS = (SOURCE, RESULT, HEATMAP)


class FileKind(StrEnum):
    # The ``kind`` of ``/static/<kind>/<name>``. No docstring: OpenAPI would show it.
    source = SOURCE
    result = RESULT
    heatmap = HEATMAP


FILE_NAME = r"^[0-9a-f]{32}\.(jpg|png|dcm)$"
"""A stored file's name: ``<prediction id>.<jpg|png>``; anything else names no file."""
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "dcm": "application/dicom"}
"""Content-Type of a stored file, by extension."""
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=300",
}
"""Headers a stored file is served with: never sniffed, never run as a page, cached only by
the caller's own browser, for five minutes."""

TEMP_PREFIX = ".tmp-"
TEMP_GRACE_SECONDS = 3600  # a temporary file this old was left by a crash
ORPHAN_GRACE_SECONDS = 600  # a file this old whose row never came was left by a crash

KnownIds = Callable[[list[str]], Iterable[str]]
"""Given prediction ids, the ones that have a database row."""


class FileStore:
    """A folder per kind below ``root``; served read-only under ``/static/<kind>/``."""

    def __init__(self, root: Path, retention_seconds: float = 7 * 24 * 3600) -> None:
        self.root = root
        self.retention_seconds = retention_seconds
        for kind in KINDS:
            (root / kind).mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, name: str, data: bytes) -> str:
        """Write atomically (readers never see half a file); returns the name."""
        if kind not in KINDS or "/" in name or name.startswith("."):
            raise ValueError(f"bad file kind or name: {kind}/{name}")
        folder = self.root / kind
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, folder / name)
        return name

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind / name

    def sweep(self, now: float | None = None, known_ids: KnownIds | None = None) -> int:
        """Delete files past retention, and orphans with no row; returns how many went.

        ``known_ids`` tells which prediction ids have a row; without it orphans stay.
        """
        now = now if now is not None else time.time()
        cutoff = now - self.retention_seconds
        temp_cutoff = min(cutoff, now - TEMP_GRACE_SECONDS)  # spare writes in progress
        orphan_cutoff = now - ORPHAN_GRACE_SECONDS
        removed = 0
        candidates: list[os.DirEntry] = []
        for kind in KINDS:
            for entry in os.scandir(self.root / kind):
                # Files come and go while we look (other requests write and rename them).
                with contextlib.suppress(FileNotFoundError):
                    if not entry.is_file():
                        continue
                    temporary = entry.name.startswith(TEMP_PREFIX)
                    modified = entry.stat().st_mtime
                    if modified < (temp_cutoff if temporary else cutoff):
                        os.unlink(entry.path)
                        removed += 1
                    elif not temporary and modified < orphan_cutoff:
                        candidates.append(entry)
        if known_ids is not None and candidates:
            removed += self._remove_orphans(candidates, known_ids)
        return removed

    @staticmethod
    def _remove_orphans(candidates: list[os.DirEntry], known_ids: KnownIds) -> int:
        ids = sorted({entry.name.split(".")[0] for entry in candidates})
        known = set(known_ids(ids))
        removed = 0
        for entry in candidates:
            if entry.name.split(".")[0] not in known:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed
