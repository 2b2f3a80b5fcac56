"""The model as a FHIR Device, identified by a digest of its trained artifact.

IHE AI Results asks for a new algorithm identifier with every model change; a version number
alone does not give that (a retrained model could reuse a folder), a digest of the SavedModel's
graph and weights does. It is computed once per artifact and cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from aistack.fhir.codes import (
    AI_DEVICE,
    AI_DEVICE_KIND_EXTENSION,
    ALGORITHM_VERSION,
    DEEP_LEARNING,
    MODEL_ARTIFACT_SYSTEM,
)
from aistack.fhir.context import DEVICE_PREFIX

ARTIFACT_FILES = ("saved_model.pb", "variables")
"""What makes the trained artifact (TF Serving layout); assets and model cards do not."""
MANUFACTURER = "aistack"
CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelDescription:
    """A served model version: its name, version and SavedModel folder (``models/<name>/<N>``)."""

    name: str
    version: int
    path: Path

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, version: int, name: str | None = None
    ) -> ModelDescription:
        """The description of ``<model_dir>/<version>``; the name defaults to the folder's."""
        return cls(name or model_dir.name, version, model_dir / str(version))

    @cached_property
    def artifact_sha256(self) -> str:
        return artifact_digest(self.path)

    @property
    def device_id(self) -> str:
        return f"{DEVICE_PREFIX}-{self.artifact_sha256[:32]}"

    def identifier(self) -> dict[str, str]:
        return {"system": MODEL_ARTIFACT_SYSTEM, "value": self.artifact_sha256}


def artifact_digest(version_dir: Path) -> str:
    """SHA-256 over the artifact files' relative paths, sizes and bytes (hex).

    Cached by the files' paths, sizes and modification times: the bytes are read once per
    artifact, and a file changed in place is noticed.
    """
    version_dir = version_dir.resolve()
    stats = [(path, path.stat()) for path in _artifact_files(version_dir)]
    signature = tuple((str(path), stat.st_size, stat.st_mtime_ns) for path, stat in stats)
    return _digest(version_dir, signature)


def _artifact_files(version_dir: Path) -> list[Path]:
    graph = version_dir / ARTIFACT_FILES[0]
    if not graph.is_file():
        raise FileNotFoundError(f"no SavedModel at {version_dir} (missing {graph.name})")
    variables = version_dir / ARTIFACT_FILES[1]
    weights = sorted(p for p in variables.rglob("*") if p.is_file()) if variables.is_dir() else []
    return [graph, *weights]


@lru_cache(maxsize=32)
def _digest(version_dir: Path, signature: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, size, _ in signature:
        path = Path(name)
        digest.update(f"{path.relative_to(version_dir).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def device_json(model: ModelDescription) -> dict[str, Any]:
    """The Device (AI Transparency IG AI device; DICOM TID 4019 name and version)."""
    return {
        "resourceType": "Device",
        "id": model.device_id,
        "extension": [
            {"url": AI_DEVICE_KIND_EXTENSION, "valueCodeableConcept": DEEP_LEARNING.concept()}
        ],
        "identifier": [model.identifier()],
        "status": "active",
        "manufacturer": MANUFACTURER,
        "deviceName": [
            {"name": model.name, "type": "model-name"},
            {
                "name": f"{MANUFACTURER} chest X-ray classifier {model.name} v{model.version}",
                "type": "user-friendly-name",
            },
        ],
        "type": AI_DEVICE.concept(),
        "version": [{"type": ALGORITHM_VERSION.concept(), "value": str(model.version)}],
        "note": [
            {
                "text": "Classifies a chest X-ray as COVID-19, normal or bacterial pneumonia "
                "and shows where it looked (Grad-CAM). Its outputs are AI-generated, not "
                "diagnoses, and need review by a qualified clinician."
            }
        ],
    }
