"""Settings from the environment (``AISTACK_*``), in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Settings(BaseSettings):
    """Everything a deployment may change; defaults suit `make run` from a clone."""

    model_config = SettingsConfigDict(env_prefix="AISTACK_", env_file=None)

    model_dir: Path = Field(PROJECT_ROOT / "models" / "covid19", description="TF Serving layout")
    model_name: str = "covid19"
    model_version: int | None = Field(
        None, description="version to serve; None: the 'stable' label, else the only version"
    )
    var_dir: Path = Field(PROJECT_ROOT / "var", description="images, heatmaps and the database")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in var")
    file_retention_hours: float = Field(
        168, description="uploaded images and heatmaps older than this are deleted"
    )
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    covid_threshold: float = 0.65
    heatmap_alpha: float = 0.5
    max_batch_size: int = Field(
        1,
        description="above 1, concurrent requests share model calls (inference.batcher); "
        "off by default: no gain measured for the committed model on 2 cores",
    )
    batch_timeout_ms: float = 2.0
    inprocess_runtime: Literal["litert", "tensorflow"] = Field(
        "litert",
        description="what runs the model in-process: litert, the version's assets.extra/"
        "model.tflite (`aistack models litert` writes it), measured at 5.7-6.2 ms CPU per "
        "image with Grad-CAM against TensorFlow's 6.7-8.0 ms (benchmarks/request_stages.py), "
        "on the calling thread, and without loading TensorFlow (a server of ~280 MB instead "
        "of ~890 MB, ready in ~1 s instead of ~6 s); tensorflow, the SavedModel. A version "
        "without the file is served by TensorFlow, with a warning",
    )
    tf_intra_op_threads: int = Field(
        1,
        ge=0,
        description="threads per model call of either in-process runtime (TensorFlow's "
        "intra-op pool, LiteRT's interpreter); 0: the runtime's default, one per core. One "
        "serves more images/s: concurrent requests already fill the cores (PERFORMANCE.md)",
    )
    opencv_threads: int = Field(
        1,
        ge=0,
        description="OpenCV threads per call; concurrent requests already use the cores, so "
        "one spares the hand-offs (0 or 1: single-threaded, as OpenCV counts)",
    )
    tf_inter_op_threads: int = Field(
        0,
        ge=0,
        description="TensorFlow calls run side by side (the in-process TensorFlow runtime); "
        "0: its default",
    )
    # Serving at scale (docs/SCALING.md, inference.backends)
    backends: str = Field(
        "",
        description="inference backends, e.g. 'gpu=tfserving+grpc://tfs-gpu:8500/covid19,"
        "cpu=tfserving+http://tfs-cpu:8501/covid19'; empty: the model in this process",
    )
    routing: Literal["gpu-first", "round-robin", "least-outstanding"] = Field(
        "gpu-first", description="how the router picks among healthy backends"
    )
    inference_deadline_s: float = Field(
        10.0, gt=0, description="a request's inference, queueing and retries included"
    )
    backend_queue: int = Field(
        8, ge=0, description="calls that may wait per backend beyond its concurrency; then 503"
    )
    breaker_failures: int = Field(3, ge=1, description="failures in a row that open a circuit")
    breaker_cooldown_s: float = Field(
        5.0, gt=0, description="an open circuit lets a trial call through after this"
    )
    probe_interval_s: float = Field(
        2.0, ge=0, description="health probes of remote backends (model AVAILABLE); 0: off"
    )
    max_queued_predictions: int = Field(
        8,
        ge=0,
        description="predictions that may wait for a decode slot; beyond, 503 at once",
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="on SIGTERM, requests and jobs in flight get this long to finish"
    )
    # Asynchronous prediction jobs (POST /api/v2/xray/jobs)
    job_workers: int = Field(1, ge=1, description="jobs run at once by this process")
    max_queued_jobs: int = Field(
        100, ge=1, description="accepted jobs that may wait for a worker; beyond, 503 at once"
    )
    job_lease_s: float = Field(
        60.0,
        gt=0,
        description="a job still running this long lost its process and is run again; "
        "keep it well above the longest prediction",
    )
    host: str = "127.0.0.1"
    port: int = 8088
    workers: int = Field(
        1,
        ge=1,
        le=32,
        description="server processes sharing the port, each with its own model, limits and "
        "budgets (docs/SCALING.md)",
    )

    # Security (docs/SECURITY.md)
    auth: bool = Field(
        True, description="on: API keys are required (AISTACK_AUTH=on|off; `make run` turns it off)"
    )
    v1_open: bool = Field(
        False, description="let the 2020 v1 prediction routes through without a key (old clients)"
    )
    public_base_url: str | None = Field(
        None, description="base of URLs in responses (default http://HOST:PORT), not Host"
    )
    trusted_proxies: str = Field(
        "", description="comma-separated addresses whose X-Forwarded-* headers are believed"
    )
    url_signing_key: str | None = Field(
        None, description="secret signing stored-file URLs; default generated once in VAR_DIR"
    )
    file_url_ttl_s: int = Field(3600, description="how long a signed stored-file URL stays valid")
    rate_limit: str = Field(
        "100/second", description="per key (or per address without one); '' turns it off"
    )
    key_cache_s: float = Field(5.0, description="verified keys are trusted this long (revocation)")

    # Slow or hostile clients (docs/RELIABILITY.md)
    header_timeout_s: float = Field(10.0, description="request line and headers must arrive within")
    body_idle_timeout_s: float = Field(15.0, description="longest pause between body chunks")
    body_timeout_s: float = Field(120.0, description="a whole request body must arrive within")
    max_body_bytes_in_flight: int = Field(
        128 * 1024 * 1024, description="request bodies buffered at once; beyond it 503 at once"
    )
    linger_s: float = Field(
        5.0, description="after an early error, unread body is drained this long before close"
    )
    malloc_mmap_threshold_bytes: int = Field(
        8 * 1024 * 1024,
        description="glibc allocations from this size are mapped, so freed bodies leave; 0: "
        "glibc's default",
    )
    max_concurrent_decodes: int = Field(
        2, description="images decoded and rendered at once; bounds decode memory"
    )
    low_confidence_margin: float = Field(
        0.2, description="a prediction is low-confidence when its top two classes are closer"
    )

    # Publishing each stored prediction to a FHIR server (docs/IRIS.md, "Publishing to a
    # FHIR server"); credentials come from the environment, never from a file of the project
    fhir_publish_url: str | None = Field(
        None,
        description="FHIR R4 base URL each stored prediction is published to as a transaction "
        "Bundle; None: predictions are not published",
    )
    fhir_publish_token: SecretStr | None = Field(
        None, description="bearer token for the FHIR server (an aistack key with the admin role)"
    )
    fhir_publish_user: str | None = Field(
        None, description="HTTP Basic user for the FHIR server (an IRIS user for IRIS for Health)"
    )
    fhir_publish_password: SecretStr | None = Field(None, description="that user's password")
    fhir_publish_timeout_s: float = Field(
        30.0, gt=0, description="longest wait for the FHIR server's answer to one publish"
    )
    fhir_publish_retry_s: float = Field(
        5.0, gt=0, description="a publish that failed is retried after this, then twice as long"
    )
    fhir_publish_max_retry_s: float = Field(
        300.0, gt=0, description="the longest wait between two publishes of one prediction"
    )

    # ICU-admission predictor (docs/ICU.md, routes under /icu/api/v1)
    icu_backend: Literal["local", "integratedml"] = Field(
        "local",
        description="who answers ICU predictions: the local tree model in this process, or "
        "IRIS IntegratedML over AISTACK_IRIS_DSN",
    )
    icu_model_dir: Path = Field(
        PROJECT_ROOT / "models" / "icu",
        description="version folders of the local ICU model (aistack.icu.defaults."
        "DEFAULT_MODEL_DIR)",
    )
    icu_model_version: int | None = Field(
        None, description="local ICU model version; None: the 'stable' label, else the highest"
    )
    iris_dsn: str | None = Field(
        None,
        description="IRIS for IntegratedML, iris://user:password@host:1972/NAMESPACE (also the "
        "CLI's --dsn default); from the environment only, never from a file of the project",
    )
    icu_max_batch_rows: int = Field(
        10_000, ge=1, description="rows one ICU batch request may hold; beyond, 413"
    )

    @property
    def resolved_public_base_url(self) -> str:
        """Where clients reach this service; a wildcard bind address is no such place."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'aistack.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
