"""Wires the core together for the standalone runtime: engine, store, files, service.

The model loads in a background thread so the process answers ``/healthz`` at once and
``/readyz`` turns ready when the model is warm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aistack.auth.keys import KeyStore
from aistack.auth.ratelimit import RateLimiter
from aistack.auth.signing import UrlSigner, load_or_create_secret
from aistack.config import Settings
from aistack.errors import NotReady
from aistack.inference.batcher import MicroBatcher
from aistack.inference.engine import InferenceEngine
from aistack.metrics import BACKEND_UP
from aistack.store import PredictionStore
from aistack.xray.files import FileStore
from aistack.xray.plausibility import load_for_version
from aistack.xray.service import XrayPolicy, XrayService

log = logging.getLogger(__name__)


def load_saved_model_engine(settings: Settings) -> InferenceEngine:
    """The committed SavedModel in-process, behind the micro-batcher unless batch size is 1."""
    from aistack.inference.savedmodel import SavedModelEngine  # noqa: PLC0415 - imports TF

    engine = SavedModelEngine.from_model_dir(settings.model_dir, settings.model_version)
    if settings.max_batch_size <= 1:
        return engine
    return MicroBatcher(engine, settings.max_batch_size, settings.batch_timeout_ms)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[Settings], InferenceEngine] = load_saved_model_engine,
    ) -> None:
        self.settings = settings
        self.engine_factory = engine_factory
        self.started_at = time.monotonic()
        self.ready_after_s: float | None = None
        self.load_error: str | None = None
        self.store = PredictionStore(settings.resolved_database_url)
        self.store.create_schema()
        self.keys = KeyStore(self.store.engine, cache_s=settings.key_cache_s)
        self.limiter = RateLimiter(settings.rate_limit)
        self.signer = UrlSigner(
            load_or_create_secret(settings.var_dir, settings.url_signing_key),
            settings.file_url_ttl_s,
        )
        self.files = FileStore(
            settings.var_dir / "static", retention_seconds=settings.file_retention_hours * 3600
        )
        self._service: XrayService | None = None
        self._loader: threading.Thread | None = None

    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self._loader.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self._service is not None

    def _load(self) -> None:
        try:
            engine = self.engine_factory(self.settings)
        except Exception as error:  # reported by /readyz, not a crash
            log.exception("model failed to load")
            self.load_error = f"{type(error).__name__}: {error}"
            BACKEND_UP.labels("inprocess").set(0)
            return
        BACKEND_UP.labels(engine.backend).set(1)
        policy = XrayPolicy(
            max_bytes=self.settings.max_body_bytes,
            max_pixels=self.settings.max_pixels,
            covid_threshold=self.settings.covid_threshold,
            heatmap_alpha=self.settings.heatmap_alpha,
            max_concurrent_decodes=self.settings.max_concurrent_decodes,
            low_confidence_margin=self.settings.low_confidence_margin,
        )
        input_check = load_for_version(self.settings.model_dir / str(engine.info.version))
        if input_check is None:
            log.warning("no input check for this model version: any picture will be classified")
        self._service = XrayService(engine, self.store, self.files, policy, input_check)
        swept = self._service.sweep_files()  # what a crash or a long stop left behind
        if swept:
            log.info("swept %d stored files (expired, or orphaned by a crash)", swept)
        self.ready_after_s = round(time.monotonic() - self.started_at, 2)
        info = engine.info
        log.info("model %s v%d ready after %.2f s", info.name, info.version, self.ready_after_s)

    @property
    def ready(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> XrayService:
        if self._service is None:
            if self.load_error:
                raise NotReady(f"model failed to load: {self.load_error}")
            raise NotReady("the model is still loading; retry shortly")
        return self._service

    def close(self) -> None:
        self.store.close()
