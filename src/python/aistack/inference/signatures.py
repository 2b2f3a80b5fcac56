"""The signatures a SavedModel version exports, read from ``saved_model.pb``.

TF Serving answers ``GET /v1/models/<m>/metadata`` with the first meta graph's
``signature_def`` map of the loaded bundle. Reading that map from the file gives the same
answer for any backend (in process or TF Serving) without loading the model a second time.
TensorFlow's protobuf modules import TensorFlow: they are imported on first use, and each
file is parsed once (cached by path, size and modification time).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAVED_MODEL_FILE = "saved_model.pb"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature, under its key (``image_bytes``, ``heatmap``)."""

    name: str
    dtype: str  # TensorFlow's enum name: DT_FLOAT, DT_STRING, ...
    shape: tuple[int, ...] | None  # -1 for a dimension of any size; None: unknown rank


def signature_defs(version_dir: Path) -> dict[str, dict[str, Any]]:
    """{signature name: SignatureDef} in TF Serving's JSON (proto field names, enum names,
    int64 as strings, default values printed), sorted by name."""
    path = version_dir / SAVED_MODEL_FILE
    stat = path.stat()
    return copy.deepcopy(_parse(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _parse(path: str, size: int, mtime_ns: int) -> dict[str, dict[str, Any]]:
    from google.protobuf import json_format  # noqa: PLC0415
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: PLC0415 - imports TensorFlow

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(Path(path).read_bytes())
    if not saved_model.meta_graphs:
        raise ValueError(f"{path} holds no meta graph")
    defs = saved_model.meta_graphs[0].signature_def
    return {
        name: json_format.MessageToDict(
            defs[name], always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        for name in sorted(defs)
    }


def tensors(signature: dict[str, Any], side: str) -> list[TensorSpec]:
    """The ``inputs`` or ``outputs`` of one SignatureDef (as :func:`signature_defs` gives it)."""
    specs = []
    for key, info in signature.get(side, {}).items():
        shape = info.get("tensor_shape", {})
        dims = None if shape.get("unknown_rank") else tuple(int(d["size"]) for d in shape["dim"])
        specs.append(TensorSpec(key, info.get("dtype", "DT_INVALID"), dims))
    return specs
