"""What the commands share: consoles, say/tell, model-folder options, version choice.

Output discipline lives here: results go to stdout (`tell`), messages for people to stderr
(`say`), so that every command's stdout stays machine-readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aistack.config import Settings

if TYPE_CHECKING:
    from aistack.inference.savedmodel import SavedModelEngine

console = Console()
err_console = Console(stderr=True)

DEFAULT_MODEL_DIR = Settings.model_fields["model_dir"].default
"""The committed model (``AISTACK_MODEL_DIR`` changes what `serve` loads)."""

ModelDir = Annotated[Path, typer.Option(help="model base folder (TF Serving layout)")]
ModelVersion = Annotated[
    int | None,
    typer.Option(
        "--model-version",
        "--version",
        min=1,
        help="default: AISTACK_MODEL_VERSION, else the version labelled stable, else the only one",
    ),
]


def say(message: str) -> None:
    """A message for people, on stderr, so that stdout stays machine-readable."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def tell(message: str) -> None:
    """A result line on stdout, unwrapped so that logs and greps see whole sentences."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def requested_version(model_dir: Path, version: int | None) -> int | None:
    """``--model-version``, else AISTACK_MODEL_VERSION when ``model_dir`` is what serve loads."""
    from aistack.config import get_settings  # noqa: PLC0415

    if version is not None:
        return version
    settings = get_settings()
    return settings.model_version if model_dir.resolve() == settings.model_dir.resolve() else None


def chosen_version_dir(model_dir: Path, version: int | None) -> Path:
    """The version folder to use, or a usage error saying what is missing or how to choose."""
    from aistack.inference.versions import VersionNotChosen, resolve_version_dir  # noqa: PLC0415

    try:
        return resolve_version_dir(model_dir, requested_version(model_dir, version))
    except VersionNotChosen as error:
        raise typer.BadParameter(str(error), param_hint="--model-version") from error
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--model-dir") from error


def served_by_serve(model_dir: Path) -> tuple[int | None, str]:
    """(version `aistack serve` would load from ``model_dir``, a sentence saying why)."""
    from aistack.inference.versions import choose_version  # noqa: PLC0415

    requested = requested_version(model_dir, None)
    try:
        choice = choose_version(model_dir, requested)
    except (LookupError, FileNotFoundError, ValueError) as error:
        return None, f"nothing is served: {error}"
    reason = "AISTACK_MODEL_VERSION" if choice.reason == "requested" else choice.reason
    return choice.version, f"served: version {choice.version} ({reason})"


def load_engine(version_dir: Path) -> SavedModelEngine:
    """One warm-up batch size: the CLI classifies one image at a time."""
    from aistack.inference.savedmodel import SavedModelEngine  # noqa: PLC0415

    return SavedModelEngine(version_dir, warmup_batch_sizes=(1,))
