"""Where a v1 heatmap request's CPU goes: each stage of the work alone, then the whole server.

    .venv/bin/python -m benchmarks.cpu_budget --images ../shared/data/xray/test --rounds 3

First, in this process and on one thread, the standalone runtime's own objects (built from
the default settings, as ``aistack serve`` builds them) run each stage of a v1 heatmap
request over every test image: parsing the 2020 form, decoding, preprocessing and the
plausibility check, the model with Grad-CAM, rendering the two JPEGs, writing the three
files, storing the FHIR resources and the prediction's row; then ``XrayService.predict`` as
a whole, alone and from two threads at once. CPU is ``time.process_time`` (every thread
of the process, the model runtime's too).

Then a served process (``--workers`` processes) takes the 2020 load (8 clients, every
image, ``--rounds`` times) and its CPU per image is read from ``/proc``, with the load
generator's own. What the server
spends beyond the stages is HTTP, ASGI, and hand-offs between threads. The last lines are
the ceilings the work and the load generator alone leave on two cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.client import encode_body
from aistack.bench.local_server import start_local_server
from aistack.config import Settings
from aistack.imaging.decode import decode_image
from aistack.imaging.overlay import encode_jpeg
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_model_input
from aistack.runtime import Runtime
from aistack.xray.files import HEATMAP, RESULT, SOURCE
from aistack.xray.request_body import v1_body
from aistack.xray.service import ModelRun, render_heatmaps, run_model

ENDPOINT = "v1-heatmap"
CORES = 2
RENDER = "render heatmap + overlay (2 JPEGs)"


def cpu_ms_per_call(call: Callable[[object], object], items: list, repeats: int) -> float:
    """CPU ms per call of ``call`` over ``items``, ``repeats`` times, after one warm pass."""
    for item in items:
        call(item)
    started = time.process_time()
    for _ in range(repeats):
        for item in items:
            call(item)
    return (time.process_time() - started) / (repeats * len(items)) * 1000


def stage_costs(images: list[Path], repeats: int) -> dict[str, float]:
    """CPU ms per image of each stage of the work, and of ``XrayService.predict`` whole."""
    with tempfile.TemporaryDirectory() as var_dir:
        runtime = Runtime(Settings(var_dir=Path(var_dir), rate_limit=""))
        runtime.start_loading()
        if not runtime.wait_ready(300):
            raise SystemExit(f"the model did not load: {runtime.load_error}")
        service = runtime.service
        policy, engine = service.policy, service.engine
        datas = [path.read_bytes() for path in images]
        bodies = [encode_body(ENDPOINT, data) for data in datas]
        pixels = [
            to_model_input(
                decode_image(data, policy.max_pixels, min_side=DECODE_MIN_SIDE).pixels,
                engine.info.image_size,
            )
            for data in datas
        ]
        runs = [
            run_model(engine, data, policy.max_pixels, True, policy.max_bytes, service.input_check)
            for data in datas
        ]

        def render(run: ModelRun) -> tuple[bytes, bytes]:
            colored, blended = render_heatmaps(run.image, run.heatmap, policy.heatmap_alpha)
            return encode_jpeg(colored), encode_jpeg(blended)

        rendered = [render(run) for run in runs]
        record = service.predict(datas[0], True, ENDPOINT)

        def decode(data: bytes) -> object:
            return decode_image(data, policy.max_pixels, min_side=DECODE_MIN_SIDE)

        def preprocess_and_check(data: bytes) -> None:
            image = decode(data)
            checked = to_model_input(image.pixels, engine.info.image_size)
            if service.input_check is not None:
                service.input_check.check(checked, image.width, image.height)

        def write_files(index: int) -> None:
            name = uuid.uuid4().hex
            service.files.write(SOURCE, f"{name}.jpg", datas[index])
            service.files.write(HEATMAP, f"{name}.jpg", rendered[index][0])
            service.files.write(RESULT, f"{name}.jpg", rendered[index][1])

        def new_record(_: object) -> object:
            return dataclasses.replace(record, id=uuid.uuid4().hex)

        indexes = list(range(len(datas)))
        decode_ms = cpu_ms_per_call(decode, datas, repeats)
        costs = {
            "parse the 2020 form (b64 field)": cpu_ms_per_call(
                lambda body: v1_body(body[1], body[0]), bodies, repeats
            ),
            "decode": decode_ms,
            "preprocess + plausibility check": cpu_ms_per_call(preprocess_and_check, datas, repeats)
            - decode_ms,
            "model + Grad-CAM": cpu_ms_per_call(
                lambda one: engine.infer(one[None], heatmap=True), pixels, repeats
            ),
            RENDER: cpu_ms_per_call(render, runs, repeats),
            "write 3 files": cpu_ms_per_call(write_files, indexes, repeats),
            "store FHIR resources": cpu_ms_per_call(
                lambda _: runtime.fhir_recorder(new_record(None)), indexes, repeats
            ),
            "store the prediction's row": cpu_ms_per_call(
                lambda _: service.store.add(new_record(None)), indexes, repeats
            ),
        }
        costs["XrayService.predict, whole"] = cpu_ms_per_call(
            lambda data: service.predict(data, True, ENDPOINT), datas, repeats
        )
        costs["XrayService.predict, two threads"], costs["predictions/s, two threads"] = (
            two_threads(lambda data: service.predict(data, True, ENDPOINT), datas, repeats)
        )
        runtime.close()
    return costs


def two_threads(call: Callable[[bytes], object], datas: list[bytes], repeats: int):
    """(CPU ms per call, calls/s) with two threads calling at once: both cores, no HTTP."""

    def work() -> None:
        for _ in range(repeats):
            for data in datas:
                call(data)

    threads = [threading.Thread(target=work) for _ in range(CORES)]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = CORES * repeats * len(datas)
    return (time.process_time() - cpu) / calls * 1000, calls / (time.perf_counter() - wall)


def served_costs(images: list[Path], rounds: int, workers: int) -> tuple[float, float, float]:
    """(images/s, server CPU ms per image, load generator CPU ms per image) under load."""
    env = {"AISTACK_RATE_LIMIT": "", "AISTACK_WORKERS": str(workers)}
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), env)
        try:
            for _ in range(2 * workers):  # every worker warm
                run_benchmark(server.url, images[:8], 8, ENDPOINT, api_key=server.api_key)
            server_before, client_before = server.cpu_s(), time.process_time()
            wall, requests = 0.0, 0
            for _ in range(rounds):
                run = run_benchmark(server.url, images, 8, ENDPOINT, api_key=server.api_key)
                summary = summarize(run)  # its wall clock: first request sent to last answer
                wall, requests = wall + summary["wall_seconds"], requests + summary["requests"]
            server_cpu = server.cpu_s() - server_before
            client_cpu = time.process_time() - client_before
        finally:
            server.stop()
    return requests / wall, server_cpu / requests * 1000, client_cpu / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images per stage")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the load on the server")
    parser.add_argument("--workers", type=int, default=1, help="AISTACK_WORKERS of the server")
    args = parser.parse_args()
    images = list_images(args.images)
    costs = stage_costs(images, args.repeats)
    whole = costs.pop("XrayService.predict, whole")
    both_ms = costs.pop("XrayService.predict, two threads")
    both_rate = costs.pop("predictions/s, two threads")
    print(f"{len(images)} images; CPU ms per image, one thread")
    for name, cost in costs.items():
        print(f"  {name:36} {cost:6.2f}")
    stages = sum(costs.values())
    print(f"  {'sum of the stages':36} {stages:6.2f}")
    print(f"  {'XrayService.predict, whole':36} {whole:6.2f}")
    print(f"  {'the same, two threads at once':36} {both_ms:6.2f}  ({both_rate:.1f} predictions/s)")
    rate, server_ms, client_ms = served_costs(images, args.rounds, args.workers)
    print(f"served, 8 clients, {args.workers} worker(s): {rate:.1f} images/s")
    print(f"  {'server CPU per image':36} {server_ms:6.2f}")
    print(f"  {'beyond the stages (HTTP, ASGI, threads)':36} {server_ms - stages:6.2f}")
    print(f"  {'load generator CPU per image':36} {client_ms:6.2f}")
    # Issue target: served throughput against 2 cores / CPU of decode + model + rendering.
    limit_ms = costs["decode"] + costs["model + Grad-CAM"] + costs[RENDER]
    limit = CORES * 1000 / limit_ms
    print(
        f"in-process limit, {CORES} x 1000 / (decode + model + render = {limit_ms:.2f} ms) = "
        f"{limit:.0f} images/s; served {rate:.1f} is {100 * rate / limit:.1f}% of it"
    )
    for name, work_ms in (("the stages", stages), ("XrayService.predict, two threads", both_ms)):
        ceiling = CORES * 1000 / (work_ms + client_ms)
        print(
            f"ceiling on {CORES} cores from {name} and the load generator, if HTTP cost "
            f"nothing: {CORES} x 1000 / ({work_ms:.2f} + {client_ms:.2f}) = {ceiling:.0f} images/s"
        )


if __name__ == "__main__":
    main()
