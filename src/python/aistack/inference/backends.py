"""Inference backends from settings: ``AISTACK_BACKENDS`` parsed and built into a router.

Format: comma-separated ``name=kind[+transport]://host:port/model[?option=value&...]``, or
``name=inprocess``. Kinds: ``inprocess`` (the model in this process, the default when the
setting is empty; LiteRT or TensorFlow as ``AISTACK_INPROCESS_RUNTIME`` says) and
``tfserving`` over ``http`` (REST, port 8501) or ``grpc`` (8500)::

    AISTACK_BACKENDS="gpu=tfserving+grpc://tfserving-gpu:8500/covid19,cpu=tfserving+http://tfserving-cpu:8501/covid19?timeout_s=5"

Options: ``concurrency`` (calls in flight to it), ``queue`` (calls that may wait for one),
``timeout_s`` (per call, within the request deadline), ``format`` (REST: ``columnar`` or
``row``). The model version is the one being served (TF Serving addressing
``/versions/N``); its name, classes and input size come from the local model folder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from aistack.config import Settings
from aistack.inference.breaker import CircuitBreaker
from aistack.inference.engine import InferenceEngine
from aistack.inference.engine import model_info as model_info
from aistack.inference.gate import Gate
from aistack.inference.litert import LiteRtEngine, litert_model_path
from aistack.inference.router import Backend, Policy, Router

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
KINDS = ("inprocess", "tfserving+http", "tfserving+grpc")
OPTIONS = {"concurrency": int, "queue": int, "timeout_s": float, "format": str}
DEFAULT_CONCURRENCY = {"inprocess": 2, "tfserving+http": 8, "tfserving+grpc": 8}
"""In-process: one call per core keeps the runtime's threads busy without thrashing."""
log = logging.getLogger(__name__)


class BackendSpecError(ValueError):
    """``AISTACK_BACKENDS`` does not parse; the message shows the expected format."""


@dataclass(frozen=True)
class BackendSpec:
    name: str
    kind: str
    host: str = ""
    port: int = 0
    model: str = ""
    options: dict[str, object] = field(default_factory=dict)

    @property
    def concurrency(self) -> int:
        return int(self.options.get("concurrency", DEFAULT_CONCURRENCY[self.kind]))  # type: ignore[arg-type]

    def queue(self, default: int) -> int:
        return int(self.options.get("queue", default))  # type: ignore[arg-type]


FORMAT_HINT = (
    "expected name=inprocess or name=tfserving+http://host:8501/model[?timeout_s=5], "
    "comma-separated"
)


def parse_backends(text: str) -> list[BackendSpec]:
    """Empty text means one in-process backend named ``inprocess``."""
    if not text.strip():
        return [BackendSpec("inprocess", "inprocess")]
    specs = [_parse_one(part.strip()) for part in text.split(",") if part.strip()]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BackendSpecError(f"backend names must be unique, got {names}")
    return specs


def _parse_one(part: str) -> BackendSpec:
    name, sep, target = part.partition("=")
    if not sep or not NAME.fullmatch(name.strip()):
        raise BackendSpecError(f"{part!r}: {FORMAT_HINT}")
    name, target = name.strip(), target.strip()
    if target == "inprocess":
        return BackendSpec(name, "inprocess")
    url = urlsplit(target)
    if url.scheme not in KINDS or not url.hostname or not url.path.strip("/"):
        raise BackendSpecError(f"{part!r}: {FORMAT_HINT}")
    try:
        port = url.port or (8501 if url.scheme.endswith("http") else 8500)
    except ValueError as error:
        raise BackendSpecError(f"{part!r}: bad port") from error
    options: dict[str, object] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        if key not in OPTIONS:
            raise BackendSpecError(f"{part!r}: unknown option {key!r}; known: {sorted(OPTIONS)}")
        try:
            options[key] = OPTIONS[key](value)
        except ValueError as error:
            raise BackendSpecError(f"{part!r}: option {key}={value!r} is not valid") from error
    if options.get("format", "columnar") not in ("columnar", "row"):
        raise BackendSpecError(f"{part!r}: format is columnar or row")
    return BackendSpec(name, url.scheme, url.hostname, port, url.path.strip("/"), options)


def inprocess_runtime(settings: Settings, version_dir: Path) -> Literal["litert", "tensorflow"]:
    """The runtime the in-process backend uses: the chosen one, TensorFlow when LiteRT's is
    chosen but the version has no LiteRT model (a warning says how to write it)."""
    if settings.inprocess_runtime == "litert" and not litert_model_path(version_dir).is_file():
        log.warning(
            "%s has no LiteRT model: TensorFlow serves it; `aistack models litert "
            "--model-dir %s --version %s` writes one",
            version_dir,
            version_dir.parent,
            version_dir.name,
        )
        return "tensorflow"
    return settings.inprocess_runtime


def build_engine(spec: BackendSpec, settings: Settings, version: int) -> InferenceEngine:
    """One backend's engine for ``version`` (imports only what that kind needs)."""
    version_dir = settings.model_dir / str(version)
    if spec.kind == "inprocess":
        from aistack.inference.batcher import MicroBatcher  # noqa: PLC0415

        engine: InferenceEngine
        if inprocess_runtime(settings, version_dir) == "litert":
            engine = LiteRtEngine(
                version_dir, concurrency=spec.concurrency, threads=settings.tf_intra_op_threads
            )
        else:
            from aistack.inference.savedmodel import (  # noqa: PLC0415 - imports TF
                SavedModelEngine,
                configure_threads,
            )

            configure_threads(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
            engine = SavedModelEngine(version_dir)
        if settings.max_batch_size > 1:
            engine = MicroBatcher(engine, settings.max_batch_size, settings.batch_timeout_ms)
        return engine
    info = model_info(version_dir)
    timeout_s = float(spec.options.get("timeout_s", settings.inference_deadline_s))  # type: ignore[arg-type]
    if spec.kind == "tfserving+http":
        from aistack.inference.tfserving.rest import TfServingRestEngine  # noqa: PLC0415

        return TfServingRestEngine(
            spec.name,
            f"http://{spec.host}:{spec.port}",
            spec.model,
            info,
            version=version,
            timeout_s=timeout_s,
            request_format=str(spec.options.get("format", "columnar")),  # type: ignore[arg-type]
            max_connections=spec.concurrency,
        )
    from aistack.inference.tfserving.grpc import TfServingGrpcEngine  # noqa: PLC0415

    return TfServingGrpcEngine(
        spec.name, f"{spec.host}:{spec.port}", spec.model, info, version=version,
        timeout_s=timeout_s,
    )  # fmt: skip


def build_router(settings: Settings, version: int) -> Router:
    """Every configured backend for ``version``, behind the configured policy."""
    backends = []
    for spec in parse_backends(settings.backends):
        engine = build_engine(spec, settings, version)
        engine.backend = spec.name  # metrics and records name the configured backend
        backends.append(
            Backend(
                spec.name,
                engine,
                Gate(spec.concurrency, spec.queue(settings.backend_queue)),
                CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
            )
        )
    return Router(
        backends,
        Policy(settings.routing),
        deadline_s=settings.inference_deadline_s,
        probe_interval_s=settings.probe_interval_s,
    )
