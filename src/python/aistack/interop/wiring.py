"""Wires the core together for the IRIS runtime: the twin of ``aistack.runtime``.

The same pieces as the standalone runtime (settings from ``AISTACK_*``, prediction store,
file store, job store, signed links, the X-ray service behind the core's router), with two
differences: the store is IRIS's own database (``AISTACK_DATABASE_URL=iris+emb:///AISTACK``
inside IRIS) and inference is a message to a TF Serving business operation.

IRIS runs each production component in jobs of their own, and makes a new business-process
object for every message it hands one. What must outlive a message (database pool, circuit
breakers, the admission gate) is therefore built once per job and kept here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aistack.auth.signing import UrlSigner, load_or_create_secret
from aistack.config import Settings
from aistack.errors import ModelNotFound
from aistack.inference.backends import model_info
from aistack.inference.breaker import CircuitBreaker
from aistack.inference.engine import InferenceEngine, ModelInfo
from aistack.inference.gate import Gate
from aistack.inference.router import Backend, Policy, Router
from aistack.inference.versions import choose_version, read_labels
from aistack.store import PredictionStore
from aistack.store.jobs import JobStore
from aistack.xray.files import FileStore
from aistack.xray.links import FileLinks
from aistack.xray.plausibility import load_for_version
from aistack.xray.service import XrayPolicy, XrayService

BACKEND_CONCURRENCY = 8
"""Calls in flight per backend from one job (as for a TF Serving backend standalone)."""


@dataclass
class IrisRuntime:
    """What every component of one IRIS job shares; cheap pieces first, the model on demand."""

    settings: Settings

    @cached_property
    def store(self) -> PredictionStore:
        store = PredictionStore(self.settings.resolved_database_url)
        store.create_schema()
        return store

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.store.engine)

    @cached_property
    def files(self) -> FileStore:
        return FileStore(
            self.settings.var_dir / "static",
            retention_seconds=self.settings.file_retention_hours * 3600,
        )

    @cached_property
    def signer(self) -> UrlSigner:
        secret = load_or_create_secret(self.settings.var_dir, self.settings.url_signing_key)
        return UrlSigner(secret, self.settings.file_url_ttl_s)

    @cached_property
    def links(self) -> FileLinks:
        return FileLinks(self.settings.resolved_public_base_url, self.signer)

    @cached_property
    def served_version(self) -> int:
        """The default version (``AISTACK_MODEL_VERSION``, else the ``stable`` label)."""
        return choose_version(self.settings.model_dir, self.settings.model_version).version

    @property
    def version_dir(self) -> Path:
        return self.settings.model_dir / str(self.served_version)

    @cached_property
    def model(self) -> ModelInfo:
        """Name, version, classes and input size of the served version (its model folder)."""
        return model_info(self.version_dir)

    def check_version(self, version: int | None) -> None:
        """404 for a version this runtime does not serve (TF Serving serves one version)."""
        if version is not None and version != self.served_version:
            raise ModelNotFound(
                f"model version {version} is not served (served: {self.served_version})"
            )

    def version_for_label(self, label: str) -> int:
        version = read_labels(self.settings.model_dir).get(label)
        if version is None or version != self.served_version:
            raise ModelNotFound(f"no served model version is labelled {label!r}")
        return version

    def xray_service(self, engines: dict[str, InferenceEngine], routing: str) -> XrayService:
        """The core's X-ray service behind the core's router over ``engines`` (by name).

        Built once per set of engines and policy: breakers and gates must see every call.
        """
        key = (
            tuple(sorted((n, str(getattr(e, "address", n))) for n, e in engines.items())),
            routing,
        )
        with _lock:
            service = self._services.get(key)
            if service is None:
                service = XrayService(
                    self._router(engines, routing),
                    self.store,
                    self.files,
                    XrayPolicy.from_settings(self.settings),
                    load_for_version(self.version_dir),
                )
                self._services[key] = service
        return service

    def _router(self, engines: dict[str, InferenceEngine], routing: str) -> Router:
        backends = [
            Backend(
                name,
                engine,
                Gate(BACKEND_CONCURRENCY, self.settings.backend_queue),
                CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_cooldown_s),
            )
            for name, engine in engines.items()
        ]
        # No probe thread: a thread of its own may not call into IRIS. The business
        # process probes on its message's thread instead (process.XRayRouter).
        return Router(
            backends,
            Policy(routing),
            deadline_s=self.settings.inference_deadline_s,
            probe_interval_s=0,
        )

    @cached_property
    def _services(self) -> dict[tuple, XrayService]:
        return {}

    @cached_property
    def probed_at(self) -> dict[int, float]:
        """When each router's backends were last probed (``time.monotonic``), by id."""
        return {}

    def close(self) -> None:
        for service in self._services.values():
            service.engine.close()
        if "store" in self.__dict__:
            self.store.close()


_lock = threading.RLock()
_current: IrisRuntime | None = None
SettingsFactory = Callable[[], Settings]


def runtime(settings_factory: SettingsFactory = Settings) -> IrisRuntime:
    """This job's runtime, built on first use from the environment (``AISTACK_*``)."""
    global _current
    with _lock:
        if _current is None:
            _current = IrisRuntime(settings_factory())
        return _current


def reset() -> None:
    """Forget this job's runtime (closing it): the next use builds it anew, as after a
    restart of the job. Tests use it to change settings."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
