"""What the IRIS production adds per request: the in-process chain vs XrayService directly.

    .venv/bin/python -m benchmarks.interop_overhead --requests 200

(from the project root: it uses the test doubles of IRIS and TF Serving in tests/.)

Three paths classify the same X-ray with a heatmap on the same TF Serving (the REST double
serving the committed model, on loopback):

* ``direct``: ``XrayService.predict`` with the core's TF Serving REST engine;
* ``production``: ``XRayPredictService.on_process_input`` → XRayRouter → TfServingOperation,
  every message serialized by IoP as IRIS would (IRIS itself doubled, in this process);
* ``rest``: ``rest.handle("create_prediction", ...)``: the above plus reading the
  ``%CSP.Request`` JSON body and shaping the response JSON.

Paths alternate in blocks so that machine drift hits all alike; prints p50/p95 of each and
the differences to ``direct``. What IRIS's own queues and jobs add is not in this figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "xray" / "test" / "normal"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="per path")
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--image", type=Path, help="an X-ray (default: the first test normal)")
    args = parser.parse_args()
    image = args.image or sorted(DEFAULT_IMAGE.iterdir())[0]
    os.environ.update(
        AISTACK_VAR_DIR=tempfile.mkdtemp(prefix="interop-bench-"),
        AISTACK_MODEL_DIR=str(ROOT / "models" / "covid19"),
        AISTACK_AUTH="off",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    paths, stop = build_paths(image.read_bytes())
    try:
        times = measure(paths, args.requests, args.block)
    finally:
        stop()
    print(f"image {image.name}, heatmap on, {args.requests} requests per path")
    for name, values in times.items():
        p50, p95 = statistics.median(values), statistics.quantiles(values, n=20)[-1]
        print(f"{name:<10} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
    direct = times["direct"]
    for name in ("production", "rest"):
        p50 = statistics.median(times[name]) - statistics.median(direct)
        p95 = statistics.quantiles(times[name], n=20)[-1] - statistics.quantiles(direct, n=20)[-1]
        print(f"{name} overhead: p50 {p50:+.2f} ms  p95 {p95:+.2f} ms")


def build_paths(data: bytes) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    # Imported here: the doubles load TensorFlow and the model, after the environment is set.
    from iop.runtime import iris as iop_iris  # noqa: PLC0415
    from tests.doubles.servables import load_repository  # noqa: PLC0415
    from tests.doubles.tfserving_rest import TfServingRestDouble  # noqa: PLC0415
    from tests.interop.iris_double import (  # noqa: PLC0415
        CspRequestDouble,
        IrisDouble,
        ProductionDouble,
    )

    from aistack.inference.tfserving.rest import TfServingRestEngine  # noqa: PLC0415
    from aistack.interop import rest, wiring  # noqa: PLC0415
    from aistack.interop.messages import XrayPredictionRequest  # noqa: PLC0415
    from aistack.interop.settings import prod  # noqa: PLC0415
    from aistack.xray.plausibility import load_for_version  # noqa: PLC0415
    from aistack.xray.service import XrayPolicy, XrayService  # noqa: PLC0415

    tfserving = TfServingRestDouble(repository=load_repository(ROOT / "models" / "covid19"))
    tfserving.start()
    iris = IrisDouble()
    iop_iris.get_iris = lambda namespace=None: iris
    overrides = {
        "TfServingGpu": {"url": tfserving.url},
        "TfServingCpu": {"url": tfserving.url},
        "XRayRouter": {"probe_interval_s": "0"},
    }
    production = ProductionDouble(prod, iris, overrides=overrides)
    runtime = wiring.runtime()
    engine = TfServingRestEngine("gpu", tfserving.url, "covid19", runtime.model, timeout_s=10)
    direct = XrayService(
        engine,
        runtime.store,
        runtime.files,
        XrayPolicy.from_settings(runtime.settings),
        load_for_version(runtime.version_dir),
    )
    body = json.dumps({"image_b64": base64.b64encode(data).decode(), "heatmap": True}).encode()
    message = XrayPredictionRequest(image=data, heatmap=True, endpoint="v2")

    def through_production() -> object:
        service = iris.cls("IOP.Director").dispatchCreateBusinessService("XRayPredictService")
        reply = service.GetClass().on_process_input(message)
        assert reply.error is None, reply.error
        return reply

    def through_rest() -> object:
        request = CspRequestDouble("POST", "/api/v2/xray/predictions", "application/json", body)
        reply = rest.handle("create_prediction", request, "UnknownUser", "")
        assert reply.status == 201, reply.body
        return reply

    paths = {
        "direct": lambda: direct.predict(data, True, "v2"),
        "production": through_production,
        "rest": through_rest,
    }

    def stop() -> None:
        production.stop()
        engine.close()
        wiring.reset()
        tfserving.stop()

    return paths, stop


def measure(
    paths: dict[str, Callable[[], object]], requests: int, block: int
) -> dict[str, list[float]]:
    for call in paths.values():  # warm up: connections, first TF calls, caches
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for start in range(0, requests, block):
        turn = order[start // block % len(order) :] + order[: start // block % len(order)]
        for name in turn:
            for _ in range(min(block, requests - start)):
                started = time.perf_counter()
                paths[name]()
                times[name].append((time.perf_counter() - started) * 1000)
    return times


if __name__ == "__main__":
    main()
