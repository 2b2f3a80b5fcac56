"""The Device's identifier follows the trained artifact: a changed byte, a new identifier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aistack.fhir import ModelDescription
from aistack.fhir.device import _digest, artifact_digest, device_json
from tests.conftest import MODEL_DIR


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the committed model version 1, as ``<tmp>/covid19/1``."""
    target = tmp_path / "covid19" / "1"
    shutil.copytree(MODEL_DIR / "1", target)
    return target


def test_a_copy_has_the_same_identifier_as_the_original(copy):
    original = ModelDescription.from_model_dir(MODEL_DIR, 1)
    copied = ModelDescription.from_model_dir(copy.parent, 1)
    assert copied.artifact_sha256 == original.artifact_sha256
    assert copied.device_id == original.device_id
    assert len(original.artifact_sha256) == 64


@pytest.mark.parametrize("changed", ["saved_model.pb", "variables/variables.data-00000-of-00001"])
def test_changing_one_byte_of_the_artifact_changes_the_identifier(copy, changed):
    before = ModelDescription.from_model_dir(copy.parent, 1)
    before_id = before.identifier()
    flip_byte(copy / changed, offset=len((copy / changed).read_bytes()) // 2)
    after = ModelDescription.from_model_dir(copy.parent, 1)
    assert after.identifier() != before_id
    assert after.device_id != before.device_id
    assert device_json(after)["identifier"] == [after.identifier()]


def test_files_outside_the_artifact_do_not_change_it(copy):
    before = artifact_digest(copy)
    (copy / "MODEL_CARD.md").write_text("edited card\n")
    flip_byte(next((copy / "assets.extra").iterdir()), offset=0)
    assert artifact_digest(copy) == before


def test_the_digest_is_computed_once_per_artifact(copy):
    _digest.cache_clear()
    first = artifact_digest(copy)
    for _ in range(3):
        assert artifact_digest(copy) == first
    info = _digest.cache_info()
    assert (info.misses, info.hits) == (1, 3)
    description = ModelDescription.from_model_dir(copy.parent, 1)
    assert description.artifact_sha256 == first
    assert description.__dict__["artifact_sha256"] == first  # kept on the instance: no stat


def test_a_folder_without_a_savedmodel_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing saved_model\.pb"):
        artifact_digest(tmp_path)
