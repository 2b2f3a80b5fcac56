"""Which SavedModel version of a model folder is served: an explicit choice, never "the newest".

The folder has TF Serving's layout, ``<model_dir>/<version>/saved_model.pb``. Training adds
versions beside the old ones; serving one of them is a separate, deliberate step. The choice,
in order: a version asked for (``AISTACK_MODEL_VERSION``, ``--model-version``), else the
``stable`` label in ``version_labels.json`` beside the versions (the idea of TF Serving's
``version_labels``), else the only version there is. Several versions and no choice is an
error that says how to choose.

No TensorFlow import here: listing and labelling versions stays instant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from aistack.atomic_files import replacing

LABELS_FILE = "version_labels.json"
SERVED_LABEL = "stable"
MODEL_INFO_FILE = "assets.extra/model_info.json"
"""Where each version records its name, classes and input size (written by xray.export)."""

LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class VersionNotChosen(LookupError):
    """Several versions, and nothing says which one to serve."""


@dataclass(frozen=True)
class ServedVersion:
    version: int
    reason: str  # "requested", "label stable" or "only version"


def available_versions(model_dir: Path) -> list[int]:
    """Integer version folders holding a SavedModel, ascending (TF Serving's rule)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file()
    )


def next_version(model_dir: Path) -> int:
    """One above every numbered entry, finished or not, so nothing is ever written over."""
    if not model_dir.is_dir():
        return 1
    return max((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), default=0) + 1


def read_labels(model_dir: Path) -> dict[str, int]:
    """``version_labels.json`` as {label: version}; no file means no labels."""
    path = model_dir / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        labels = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in labels.items()
    ):
        raise ValueError(f'{path} must map labels to version numbers, e.g. {{"stable": 1}}')
    return labels


def set_label(model_dir: Path, label: str, version: int) -> dict[str, int]:
    """Point ``label`` at an existing version; written atomically so a server never reads half."""
    if not LABEL_PATTERN.fullmatch(label):
        raise ValueError(f"label {label!r}: use lower-case letters, digits, - and _")
    versions = available_versions(model_dir)
    if version not in versions:
        raise FileNotFoundError(f"version {version} not in {model_dir} (have {versions})")
    labels = {**read_labels(model_dir), label: version}
    path = model_dir / LABELS_FILE
    with replacing(path) as partial:
        partial.write_text(json.dumps(dict(sorted(labels.items())), indent=2) + "\n")
    return labels


def choose_version(model_dir: Path, version: int | None = None) -> ServedVersion:
    """The version to load, and why; raises when it is missing or nothing chooses one."""
    versions = available_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"no SavedModel versions under {model_dir}")
    if version is not None:
        if version not in versions:
            raise FileNotFoundError(f"version {version} not in {model_dir} (have {versions})")
        return ServedVersion(version, "requested")
    labelled = read_labels(model_dir).get(SERVED_LABEL)
    if labelled is not None:
        if labelled not in versions:
            raise FileNotFoundError(
                f"{model_dir / LABELS_FILE} labels version {labelled} {SERVED_LABEL}, "
                f"but {model_dir} has only {versions}"
            )
        return ServedVersion(labelled, f"label {SERVED_LABEL}")
    if len(versions) == 1:
        return ServedVersion(versions[0], "only version")
    raise VersionNotChosen(
        f"{model_dir} holds versions {', '.join(map(str, versions))} and none is chosen: "
        f"run `aistack models label {SERVED_LABEL} N --model-dir {model_dir}` "
        f"(writes {LABELS_FILE}) or set AISTACK_MODEL_VERSION=N"
    )


def resolve_version_dir(model_dir: Path, version: int | None = None) -> Path:
    """The folder of the version :func:`choose_version` picks."""
    return model_dir / str(choose_version(model_dir, version).version)


def read_model_info(version_dir: Path) -> dict:
    """``assets.extra/model_info.json`` of a version, or {} when it has none."""
    path = version_dir / MODEL_INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
