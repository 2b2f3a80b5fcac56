"""The IRIS runtime's wiring builds the standalone runtime's pieces from the same settings."""

from __future__ import annotations

from aistack.config import Settings
from aistack.interop import wiring
from aistack.interop.process import OperationEngine
from aistack.runtime import Runtime
from aistack.xray.service import XrayPolicy

POLICY_ENV = {
    "AISTACK_MAX_BODY_BYTES": "1234567",
    "AISTACK_MAX_PIXELS": "7654321",
    "AISTACK_COVID_THRESHOLD": "0.8",
    "AISTACK_HEATMAP_ALPHA": "0.3",
    "AISTACK_MAX_CONCURRENT_DECODES": "3",
    "AISTACK_LOW_CONFIDENCE_MARGIN": "0.1",
    "AISTACK_MAX_QUEUED_PREDICTIONS": "5",
}


def test_both_runtimes_take_the_service_policy_from_the_same_settings(var_dir, monkeypatch):
    for name, value in POLICY_ENV.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    expected = XrayPolicy(
        max_bytes=1234567,
        max_pixels=7654321,
        covid_threshold=0.8,
        heatmap_alpha=0.3,
        max_concurrent_decodes=3,
        low_confidence_margin=0.1,
        max_queued_predictions=5,
    )
    iris = wiring.runtime()
    engine = OperationEngine("gpu", "TfServingGpu", iris.model, timeout_s=1)
    assert iris.xray_service({"gpu": engine}, "gpu-first").policy == expected
    standalone = Runtime(Settings())
    try:
        assert standalone.policy == expected
    finally:
        standalone.close()
