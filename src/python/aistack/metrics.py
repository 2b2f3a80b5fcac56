"""Prometheus metrics, in one place: what both runtimes count and time.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms). Routes
are labelled by their template (``/api/v2/xray/predictions/{prediction_id}``), never by the
raw path, so that label values stay few.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

REGISTRY = CollectorRegistry(auto_describe=True)
"""The service's own registry (not the library's global one): tests and embedders get
exactly these series."""

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""Set before a worker process starts (``aistack.api.workers``), prometheus-client keeps
every value in a file of that folder, one per process, and ``exposition`` sums them."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

HTTP_REQUESTS = Counter(
    "aistack_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "aistack_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route, method and "
    "status (fast refusals apart from served requests)",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
INFERENCE_DURATION = Histogram(
    "aistack_inference_duration_seconds",
    "One model call (probabilities, and Grad-CAM when asked), by backend",
    ["backend", "heatmap"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PREDICTIONS = Counter(
    "aistack_predictions_total",
    "Predictions stored, by predicted label and endpoint",
    ["label", "endpoint"],
    registry=REGISTRY,
)
ICU_PREDICTIONS = Counter(
    "aistack_icu_predictions_total",
    "ICU-admission rows scored, by backend and predicted label (1: admission predicted)",
    ["backend", "label"],
    registry=REGISTRY,
)
ICU_SCORING_DURATION = Histogram(
    "aistack_icu_scoring_duration_seconds",
    "Scoring and explaining one ICU request's rows, by backend and route (predict, batch)",
    ["backend", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "aistack_batch_size",
    "Images per model call made by the micro-batcher",
    ["backend"],
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "aistack_queue_depth",
    "Requests waiting in front of a backend",
    ["backend"],
    registry=REGISTRY,
    multiprocess_mode="livesum",  # with several workers: waiting in all of them
)
BACKEND_UP = Gauge(
    "aistack_backend_up",
    "1 when the backend is loaded and answering, else 0",
    ["backend"],
    registry=REGISTRY,
    multiprocess_mode="livemin",  # with several workers: 1 only if up in every one
)

BACKEND_FAILURES = Counter(
    "aistack_backend_failures_total",
    "Inference calls a backend failed, by reason (unavailable, error, timeout)",
    ["backend", "reason"],
    registry=REGISTRY,
)

REJECTED = Counter(
    "aistack_rejected_total",
    "Requests refused at once because a bounded queue was full, by where",
    ["stage"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The text ``/metrics`` answers: this process's series, or every worker's summed."""
    if not os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)


def process_exiting() -> None:
    """A worker's live gauges leave the sums with it (no-op in a single process)."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        mark_process_dead(os.getpid())
