"""A replaced file is the old one or the new one, never half, and a failed write leaves no trace."""

from pathlib import Path

import pytest

from aistack.atomic_files import replacing


def test_the_file_changes_only_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "models" / "labels.json"  # its folder does not exist yet
    with replacing(target) as partial:
        partial.write_text("new")
        assert not target.exists()  # a reader meanwhile finds nothing half-written
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["labels.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial(tmp_path: Path) -> None:
    target = tmp_path / "labels.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as partial:
        partial.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]
