"""The production graph: IoP's strict offline validation passes, and catches a misspelling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aistack.interop import settings

SETTINGS = Path(settings.__file__)
IOP = Path(sys.executable).parent / "iop"


def migrate_dry_run(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IOP), "--migrate", str(path), "--dry-run", "--strict-production-validation"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_strict_dry_run_migration_passes():
    result = migrate_dry_run(SETTINGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AISTACK.Production" in result.stdout


@pytest.mark.parametrize(
    ("right", "wrong", "says"),
    [
        ('"routing": "gpu-first"', '"routnig": "gpu-first"', "Unknown setting name"),
        ("QueueWaitAlert=5", "QueueWaitAlrt=5", "are not IRIS operation settings"),
    ],
)
def test_a_misspelt_setting_fails_the_migration(tmp_path: Path, right: str, wrong: str, says: str):
    source = SETTINGS.read_text()
    assert right in source
    (tmp_path / "settings.py").write_text(source.replace(right, wrong))
    result = migrate_dry_run(tmp_path / "settings.py")
    assert result.returncode != 0
    assert says in result.stdout + result.stderr


def test_the_graph_routes_services_to_the_router_and_the_router_to_both_backends():
    """And ICU requests from their service to the IntegratedML operation, which hands its
    RiskAssessments to the same FhirPublisher as the router."""
    graph = settings.prod
    edges = {(edge.source_item, edge.target) for edge in graph.graph().edges}
    assert edges == {
        ("XRayPredictService", "XRayRouter"),
        ("XRayJobService", "XRayRouter"),
        ("XRayRouter", "TfServingGpu"),
        ("XRayRouter", "TfServingCpu"),
        ("XRayRouter", "FhirPublisher"),
        ("IcuPredictService", "IntegratedML"),
        ("IntegratedML", "FhirPublisher"),
    }
    items = {item.name: item for item in graph.items}
    assert items["TfServingGpu"].host_settings["url"] == "http://tfserving-gpu:8501"
    assert items["TfServingCpu"].host_settings["url"] == "http://tfserving-cpu:8501"
    assert [items[name].pool_size for name in ("XRayPredictService", "XRayRouter")] == [0, 2]
    iris_settings = {s["@Name"]: s["#text"] for s in items["TfServingGpu"].other_settings}
    assert iris_settings == {
        "RetryInterval": "1",
        "FailureTimeout": "15",
        "AlertOnError": "1",
        "QueueWaitAlert": "5",
    }
