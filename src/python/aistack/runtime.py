"""Wires the core together for the standalone runtime: engine, store, files, service, jobs,
and the ICU service (loaded on its first request, never holding up readiness). Both keep
their predictions' FHIR resources in the ``/fhir/r4`` facade's store (``fhir_store``).

Models load in a background thread so the process answers ``/healthz`` at once and
``/readyz`` turns ready when the default version is warm. Every version on disk is served
(a v2 request may name one); the default is the one ``versions.choose_version`` picks.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aistack.auth.keys import KeyStore
from aistack.auth.ratelimit import RateLimiter
from aistack.auth.signing import UrlSigner, load_or_create_secret
from aistack.config import Settings
from aistack.errors import ModelNotFound, NotReady
from aistack.fhir.bundle import conditional_query
from aistack.fhir.outbox import FhirPublishing
from aistack.fhir.resource_store import FHIR_BASE_PATH, ResourceStore
from aistack.fhir.transaction import Entry, PredictionRecorder, conditional, run_transaction
from aistack.inference.backends import build_router
from aistack.inference.engine import InferenceEngine
from aistack.inference.versions import available_versions, choose_version, read_labels
from aistack.metrics import BACKEND_UP
from aistack.store import PredictionStore
from aistack.store.jobs import JobStore
from aistack.xray.files import FileStore
from aistack.xray.jobs import JobRunner, JobSpool
from aistack.xray.links import FileLinks
from aistack.xray.plausibility import load_for_version
from aistack.xray.service import XrayPolicy, XrayService

if TYPE_CHECKING:
    from aistack.icu.service import IcuService

log = logging.getLogger(__name__)
ICU_RETRY_S = 30.0
"""After a failed ICU load, requests are refused (503) this long before it is tried again."""


class VersionState(StrEnum):
    """TF Serving's ModelVersionStatus states, which the model status routes report."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    END = "END"  # failed to load (``error`` says why)


@dataclass
class VersionSlot:
    """One model version the runtime serves, and how far it got."""

    version: int
    state: VersionState = VersionState.START
    error: str | None = None
    service: XrayService | None = None
    ready_after_s: float | None = None

    @property
    def available(self) -> bool:
        """Loaded, and (behind a router) some backend can take a call."""
        if self.service is None:
            return False
        return bool(getattr(self.service.engine, "available", True))


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[Settings, int], InferenceEngine] = build_router,
    ) -> None:
        self.settings = settings
        self.policy = XrayPolicy.from_settings(settings)
        self.engine_factory = engine_factory
        self.started_at = time.monotonic()
        self.load_error: str | None = None
        self.default_version: int | None = None
        self.slots: dict[int, VersionSlot] = {}
        self.store = PredictionStore(settings.resolved_database_url)
        self.store.create_schema()
        self.fhir_store = ResourceStore(
            self.store.engine, f"{settings.resolved_public_base_url}{FHIR_BASE_PATH}"
        )
        self.fhir_store.create_schema()
        self.keys = KeyStore(self.store.engine, cache_s=settings.key_cache_s)
        self.limiter = RateLimiter(settings.rate_limit)
        self.signer = UrlSigner(
            load_or_create_secret(settings.var_dir, settings.url_signing_key),
            settings.file_url_ttl_s,
        )
        self.links = FileLinks(settings.resolved_public_base_url, self.signer)
        self.fhir_recorder = PredictionRecorder(self.fhir_store, self.links, settings.model_dir)
        self.files = FileStore(
            settings.var_dir / "static", retention_seconds=settings.file_retention_hours * 3600
        )
        self.jobs = JobStore(self.store.engine)
        self.job_runner = JobRunner(
            self.jobs,
            JobSpool(settings.var_dir / "jobs"),
            self.loaded_service,
            workers=settings.job_workers,
            max_queued=settings.max_queued_jobs,
            lease_s=settings.job_lease_s,
        )
        # Set when AISTACK_FHIR_PUBLISH_URL is: from now on each stored prediction also
        # gets an outbox row, in the same transaction; its worker starts with the loader.
        self.fhir_publishing = FhirPublishing.from_settings(settings, self.store, self.files)
        self._loader: threading.Thread | None = None
        self._icu: IcuService | None = None
        self._icu_failure: tuple[str, float] | None = None
        self._icu_lock = threading.Lock()

    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self._loader.start()
        if self.fhir_publishing is not None:
            self.fhir_publishing.start()  # pending publishes of earlier runs resume too

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the loader (every version on disk) and say whether the default is served."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self.ready

    def _load(self) -> None:
        """The default version first (readiness waits for it), then the others on disk."""
        model_dir = self.settings.model_dir
        try:
            self.default_version = choose_version(model_dir, self.settings.model_version).version
        except (OSError, LookupError, ValueError) as error:
            log.error("no model version to serve: %s", error)
            self.load_error = f"{type(error).__name__}: {error}"
            BACKEND_UP.labels("inprocess").set(0)
            return
        others = [v for v in available_versions(model_dir) if v != self.default_version]
        for version in (self.default_version, *others):
            self.slots.setdefault(version, VersionSlot(version))
        for version in (self.default_version, *others):
            self._load_version(self.slots[version])
            if version == self.default_version:
                self.load_error = self.slots[version].error
                self._sweep()
        # TensorFlow leaves hundreds of thousands of long-lived Python objects; frozen, the
        # cyclic collector stops re-scanning them in every full collection (pauses of
        # hundreds of ms under load, docs/PERFORMANCE.md).
        gc.freeze()

    def _load_version(self, slot: VersionSlot) -> None:
        slot.state = VersionState.LOADING
        try:
            engine = self.engine_factory(self.settings, slot.version)
        except Exception as error:  # reported by /readyz and the status routes, not a crash
            log.exception("model version %d failed to load", slot.version)
            slot.error = f"{type(error).__name__}: {error}"
            slot.state = VersionState.END
            return
        input_check = load_for_version(self.settings.model_dir / str(slot.version))
        if input_check is None:
            log.warning("no input check for version %d: any picture is classified", slot.version)
        slot.service = XrayService(
            engine, self.store, self.files, self.policy, input_check, self.fhir_recorder
        )
        self.fhir_recorder.warm(slot.version)
        slot.ready_after_s = round(time.monotonic() - self.started_at, 2)
        slot.state = VersionState.AVAILABLE
        info = engine.info
        log.info("model %s v%d ready after %.2f s", info.name, info.version, slot.ready_after_s)

    def _sweep(self) -> None:
        slot = self.slots.get(self.default_version or -1)
        if slot is None or slot.service is None:
            return
        swept = slot.service.sweep_files()  # what a crash or a long stop left behind
        if swept:
            log.info("swept %d stored files (expired, or orphaned by a crash)", swept)

    @property
    def ready_after_s(self) -> float | None:
        slot = self.slots.get(self.default_version or -1)
        return slot.ready_after_s if slot else None

    def versions(self) -> list[VersionSlot]:
        """Served versions, ascending (TF Serving lists them newest first; routes decide)."""
        return [self.slots[v] for v in sorted(self.slots)]

    def version_for_label(self, label: str) -> int:
        """The version ``version_labels.json`` gives ``label``; 404 when none does."""
        version = read_labels(self.settings.model_dir).get(label)
        if version is None or version not in self.slots:
            raise ModelNotFound(f"no served model version is labelled {label!r}")
        return version

    def service_for(self, version: int | None = None) -> XrayService:
        """The service of ``version`` (the default one when None): 404 unknown, 503 loading."""
        if version is None:
            return self.service
        slot = self.slots.get(version)
        if slot is None:
            served = ", ".join(map(str, sorted(self.slots))) or "none yet"
            raise ModelNotFound(f"model version {version} is not served (served: {served})")
        if slot.service is None:
            if slot.error:
                raise NotReady(f"model version {version} failed to load: {slot.error}")
            raise NotReady(f"model version {version} is still loading; retry shortly")
        return slot.service

    def loaded_service(self, version: int | None = None) -> XrayService:
        """:meth:`service_for` once loading has ended: what background jobs wait for."""
        self.wait_ready()
        return self.service_for(version)

    @property
    def ready(self) -> bool:
        slot = self.slots.get(self.default_version or -1)
        return slot is not None and slot.available

    @property
    def service(self) -> XrayService:
        """The default version's service; 503 while it loads, or when it failed to."""
        slot = self.slots.get(self.default_version or -1)
        if slot is None or slot.service is None:
            if self.load_error:
                raise NotReady(f"model failed to load: {self.load_error}")
            raise NotReady("the model is still loading; retry shortly")
        return slot.service

    def icu_service(self) -> IcuService:
        """The ICU service, loaded on first use (the X-ray readiness never waits for it).

        A load that fails is a 503 on the ICU routes only, with the reason; it is tried
        again on a request after ``ICU_RETRY_S`` (IRIS may have come up since).
        """
        if self._icu is not None:
            return self._icu
        with self._icu_lock:
            if self._icu is not None:
                return self._icu
            if self._icu_failure and time.monotonic() - self._icu_failure[1] < ICU_RETRY_S:
                raise NotReady(f"the ICU model failed to load: {self._icu_failure[0]}")
            from aistack.icu.service import IcuService  # noqa: PLC0415 - numpy, LightGBM

            try:
                self._icu = IcuService.from_settings(self.settings, record_risk=self.record_risk)
            except Exception as error:  # reported on the ICU routes, not a crash
                log.exception("the ICU model failed to load")
                self._icu_failure = (f"{type(error).__name__}: {error}", time.monotonic())
                raise NotReady(f"the ICU model failed to load: {self._icu_failure[0]}") from error
            self._icu_failure = None
            meta = self._icu.predictor.metadata
            log.info("ICU model %s v%s loaded", meta.backend, meta.version)
            return self._icu

    def record_risk(self, resource: dict[str, Any]) -> None:
        """Store an ICU prediction's RiskAssessment in the FHIR facade, under its own id.

        A conditional create on its prediction identifier, as a publish to a FHIR server
        would be: however often it arrives, it is stored once. The ICU service logs a failure.
        """
        condition = conditional(resource["resourceType"], conditional_query(resource))
        run_transaction(self.fhir_store, [Entry(resource, None, condition, keep_id=True)])

    def close(self) -> None:
        self.job_runner.stop(self.settings.shutdown_grace_s)  # the running jobs finish first
        if self.fhir_publishing is not None:
            self.fhir_publishing.stop(self.settings.shutdown_grace_s)  # unpublished stay pending
        for slot in self.slots.values():
            close = getattr(slot.service.engine if slot.service else None, "close", None)
            if callable(close):
                close()
        connection = getattr(self._icu.predictor if self._icu else None, "connection", None)
        if connection is not None:
            connection.close()  # IntegratedML's DB-API connection
        self.store.close()
