"""TF Serving's ``models.config`` rendered from a model folder, so the two cannot disagree.

The folder (versions on disk and ``version_labels.json``) is the one source of truth for
which version is ``stable``; TF Serving gets the same answer through ``version_labels``:

* ``stable``: the version ``aistack serve`` loads without a request (label, else the only one);
* ``canary``: the newest version when it is newer than ``stable``, else ``stable`` itself,
  unless ``version_labels.json`` names one;
* any other label of ``version_labels.json`` as it is.

TF Serving refuses a label on a version it has not loaded, so the ``specific`` version
policy lists exactly the labelled versions. The text is written by hand (no TensorFlow or
TF Serving import, like :mod:`aistack.inference.versions`); the tests parse it with TF
Serving's own ``ModelServerConfig``.
"""

from __future__ import annotations

import re
from pathlib import Path

from aistack.atomic_files import replacing
from aistack.inference.versions import (
    LABEL_PATTERN,
    LABELS_FILE,
    SERVED_LABEL,
    available_versions,
    choose_version,
    read_labels,
)

CANARY_LABEL = "canary"
SERVING_ROOT = "/models"
"""Where the compose stack mounts ``models/`` inside the TF Serving container."""

MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Names that need no quoting in a text proto or a REST path (``/v1/models/<name>``)."""


def served_labels(model_dir: Path) -> dict[str, int]:
    """{label: version} for TF Serving; raises when a label names a version not on disk."""
    versions = available_versions(model_dir)
    stable = choose_version(model_dir).version  # no versions or no choice: raises
    labels = {**read_labels(model_dir), SERVED_LABEL: stable}
    malformed = sorted(k for k in labels if not LABEL_PATTERN.fullmatch(k))
    if malformed:
        raise ValueError(f"{model_dir / LABELS_FILE}: malformed labels {malformed}")
    missing = {k: v for k, v in labels.items() if v not in versions}
    if missing:
        raise FileNotFoundError(
            f"{model_dir / LABELS_FILE} labels versions that are not on disk: {missing} "
            f"(have {versions})"
        )
    newest = max(versions)
    labels.setdefault(CANARY_LABEL, newest if newest > stable else stable)
    return dict(sorted(labels.items()))


def render_models_config(model_dir: Path, serving_root: str = SERVING_ROOT) -> str:
    """The ModelServerConfig text proto serving the labelled versions of ``model_dir``."""
    name = model_dir.name
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ValueError(f"model folder name {name!r}: use letters, digits, _, . and -")
    labels = served_labels(model_dir)
    lines = [
        f"# TF Serving model config for {name}: rendered by `aistack models tf-config` from the",
        f"# versions on disk and {LABELS_FILE}; `aistack models label` re-renders it.",
        "# Edit the labels, not this file.",
        "model_config_list {",
        "  config {",
        f'    name: "{name}"',
        f'    base_path: "{serving_root.rstrip("/")}/{name}"',
        '    model_platform: "tensorflow"',
        "    model_version_policy {",
        "      specific {",
        *(f"        versions: {v}" for v in sorted(set(labels.values()))),
        "      }",
        "    }",
    ]
    for label, version in labels.items():
        lines += [
            "    version_labels {",
            f'      key: "{label}"',
            f"      value: {version}",
            "    }",
        ]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def write_models_config(model_dir: Path, out: Path) -> str:
    """Render and replace ``out`` atomically (a polling server never reads half); the text."""
    text = render_models_config(model_dir)
    with replacing(out) as partial:
        partial.write_text(text)
    return text
