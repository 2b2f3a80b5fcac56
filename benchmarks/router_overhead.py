"""What the router costs per call: the in-process engine called directly vs through a Router.

    .venv/bin/python benchmarks/router_overhead.py --calls 400

Both paths run the same committed SavedModel on the same 224x224 input, alternating in
blocks so that machine drift hits both alike; prints p50/p95 of each and the difference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from aistack.inference.breaker import CircuitBreaker
from aistack.inference.gate import Gate
from aistack.inference.router import Backend, Router
from aistack.inference.savedmodel import SavedModelEngine

ROOT = Path(__file__).resolve().parents[1]


def timed(call, pixels: np.ndarray, heatmap: bool) -> float:
    started = time.perf_counter()
    call(pixels, heatmap)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=400, help="per path")
    parser.add_argument("--heatmap", action="store_true")
    args = parser.parse_args()
    engine = SavedModelEngine.from_model_dir(ROOT / "models" / "covid19")
    router = Router([Backend("inprocess", engine, Gate(2, 8), CircuitBreaker())])
    size = engine.info.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (1, size, size, 1), np.uint8)
    paths = {"direct": engine.infer, "router": router.infer}
    times: dict[str, list[float]] = {name: [] for name in paths}
    block = 20
    for start in range(0, args.calls, block):
        for name, call in paths.items() if start // block % 2 else reversed(paths.items()):
            times[name] += [timed(call, pixels, args.heatmap) for _ in range(block)]
    for name, values in times.items():
        p50, p95 = statistics.median(values), statistics.quantiles(values, n=20)[-1]
        print(f"{name:<7} p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  ({len(values)} calls)")
    difference = statistics.median(times["router"]) - statistics.median(times["direct"])
    print(f"router overhead at p50: {difference:+.3f} ms")
    print(f"router bookkeeping alone (an engine that returns at once): {bookkeeping_us():.1f} µs")


class InstantEngine:
    """Returns a precomputed answer: what remains of a call is the router's own work."""

    backend = "instant"

    def __init__(self, info, output) -> None:
        self.info, self.output = info, output

    def infer(self, pixels, heatmap):
        return self.output


def bookkeeping_us(calls: int = 20000) -> float:
    from aistack.inference.engine import EngineOutput, ModelInfo  # noqa: PLC0415

    info = ModelInfo("m", 1, 8, ("a", "b", "c"))
    engine = InstantEngine(info, EngineOutput(np.zeros((1, 3), np.float32), None))
    router = Router([Backend("instant", engine, Gate(2, 8), CircuitBreaker())])
    pixels = np.zeros((1, 8, 8, 1), np.uint8)
    started = time.perf_counter()
    for _ in range(calls):
        router.infer(pixels, False)
    return (time.perf_counter() - started) / calls * 1e6


if __name__ == "__main__":
    main()
