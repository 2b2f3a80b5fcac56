"""What a TF Serving double serves: every version of one model folder, really loaded.

Each version is the real SavedModel (``tf.saved_model.load``) run through its own
signatures, so answers are the model's. The request resolution follows TF Serving's
ServerCore: a label maps to a version (unknown label: INVALID_ARGUMENT), then only loaded
(AVAILABLE) versions can be found (anything else: NOT_FOUND "Servable not found for
request: ..."). Errors carry TF's canonical code names; each front end turns them into
HTTP statuses or gRPC codes the way TF Serving does.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aistack.inference.versions import available_versions, read_labels

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""TF's canonical error codes by number (tensorflow/core/protobuf/error_codes.proto)."""

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
"""ModelVersionStatus.State values a double may report."""


class ServingError(Exception):
    """A TF Serving failure: canonical ``code`` name and the message TF Serving would send."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Version:
    number: int
    loaded: Any
    """The loaded SavedModel: its signatures need it (and its variables) alive."""
    signatures: dict[str, Any]
    """Concrete functions by signature name, from the loaded SavedModel."""
    signature_defs: dict[str, Any]
    """SignatureDef protos from saved_model.pb, as TF Serving reports them in metadata."""


class ModelRepository:
    """One model folder in TF Serving layout (``<dir>/<version>/``), all versions loaded.

    Labels come from ``version_labels.json`` beside the versions, the file the project
    renders TF Serving's ``version_labels`` from.
    """

    def __init__(self, model_dir: Path, name: str | None = None) -> None:
        import tensorflow as tf  # noqa: PLC0415 - only doubles that serve load TensorFlow
        from tensorflow.core.protobuf import saved_model_pb2  # noqa: PLC0415

        self.tf = tf
        self.name = name or model_dir.name
        self.versions: dict[int, Version] = {}
        for number in available_versions(model_dir):
            path = model_dir / str(number)
            proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
            loaded = tf.saved_model.load(str(path))
            self.versions[number] = Version(
                number, loaded, dict(loaded.signatures), dict(proto.meta_graphs[0].signature_def)
            )
        if not self.versions:
            raise FileNotFoundError(f"no SavedModel versions under {model_dir}")
        self.labels = read_labels(model_dir)

    def resolve(self, name: str, version: int | None, label: str | None, state: str) -> Version:
        """The servable a request addresses, or TF Serving's error for it."""
        if label is not None:
            if name != self.name or label not in self.labels:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Unrecognized servable version label: {label}"
                )
            version = self.labels[label]
        if version is not None:
            request = f"Specific({name}, {version})"
        else:
            request = f"Latest({name})"
            version = max(self.versions)
        if name != self.name or version not in self.versions or state != "AVAILABLE":
            raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")
        return self.versions[version]

    def status(self, name: str, version: int | None, state: str) -> list[dict]:
        """``model_version_status`` entries; like TF Serving, a label is not looked at."""
        if name != self.name:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if version is not None and version not in self.versions:
            raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
        numbers = [version] if version is not None else sorted(self.versions)
        return [
            {
                "version": str(number),
                "state": state,
                "status": {"error_code": "OK", "error_message": ""},
            }
            for number in numbers
        ]

    def run(self, version: Version, signature: str, inputs: dict[str, np.ndarray]) -> dict:
        """The signature on these input arrays → output arrays by name."""
        tf = self.tf
        function = version.signatures[signature]
        specs = function.structured_input_signature[1]
        try:
            tensors = {
                name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()
            }
            outputs = function(**tensors)
        except tf.errors.OpError as error:
            raise ServingError(CODE_NAMES[error.error_code], error.message) from error
        except (TypeError, ValueError, KeyError) as error:
            raise ServingError("INVALID_ARGUMENT", str(error)) from error
        return {name: tensor.numpy() for name, tensor in outputs.items()}


@functools.cache
def load_repository(model_dir: Path) -> ModelRepository:
    """One load per folder and test session: loading the SavedModel takes seconds."""
    return ModelRepository(model_dir)


@functools.cache
def in_process_engine(model_dir: Path, version: int) -> Any:
    """The in-process :class:`SavedModelEngine` on the same folder: what a double must match."""
    from aistack.inference.savedmodel import SavedModelEngine  # noqa: PLC0415 - imports TF

    return SavedModelEngine(model_dir / str(version), warmup_batch_sizes=())
