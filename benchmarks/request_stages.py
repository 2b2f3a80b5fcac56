"""Where the time of one X-ray request goes, stage by stage, on a folder of real images.

The model rows are measured in both in-process runtimes, TensorFlow and (when the version
has its ``assets.extra/model.tflite``) LiteRT; the whole request and the in-process limit
use the runtime the server would use with these settings (AISTACK_INPROCESS_RUNTIME).

.venv/bin/python benchmarks/request_stages.py --images ../shared/data/xray/test
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

from aistack.config import Settings
from aistack.imaging.decode import decode_image
from aistack.imaging.overlay import encode_jpeg
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_model_input
from aistack.inference.backends import inprocess_runtime
from aistack.inference.litert import LiteRtEngine, litert_model_path
from aistack.inference.savedmodel import SavedModelEngine, configure_threads
from aistack.inference.versions import resolve_version_dir
from aistack.xray.service import render_heatmaps

MAX_PIXELS = 50_000_000


def per_image_ms(fn, items, repeats: int) -> tuple[float, float]:
    """(wall ms, CPU ms of the whole process, all threads) per item, medians of repeats.

    CPU counts the runtime's worker threads too: what a core-bound server pays per image.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        walls.append((time.perf_counter() - started) / len(items))
        cpus.append((time.process_time() - cpu_started) / len(items))
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def whole_request(engine, data: bytes, size: int) -> None:
    """The in-process work of one v1 heatmap request: decode, model + Grad-CAM, render."""
    image = decode_image(data, MAX_PIXELS, DECODE_MIN_SIDE)
    output = engine.infer(to_model_input(image.pixels, size)[np.newaxis], heatmap=True)
    for rendered in render_heatmaps(image, output.heatmaps[0], 0.5):
        encode_jpeg(rendered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/covid19"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    files = sorted(
        p for p in args.images.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    datas = [p.read_bytes() for p in files]
    settings = Settings()  # the thread settings the server uses (AISTACK_*_THREADS)
    cv2.setNumThreads(settings.opencv_threads)
    configure_threads(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
    version_dir = resolve_version_dir(args.model_dir)
    engines = {"TensorFlow": SavedModelEngine(version_dir)}
    if litert_model_path(version_dir).is_file():
        engines["LiteRT"] = LiteRtEngine(
            version_dir, concurrency=1, threads=settings.tf_intra_op_threads
        )
    served = "LiteRT" if inprocess_runtime(settings, version_dir) == "litert" else "TensorFlow"
    engine = engines[served]
    size = engine.info.image_size
    images = [decode_image(d, MAX_PIXELS, DECODE_MIN_SIDE) for d in datas]
    pixels = [to_model_input(i.pixels, size)[np.newaxis] for i in images]
    cam = engine.infer(pixels[0], heatmap=True).heatmaps[0]
    batch8 = np.concatenate(pixels[:8])
    model_rows = {}
    for runtime, each in engines.items():
        model_rows[f"model, batch 1 ({runtime})"] = per_image_ms(
            lambda p, each=each: each.infer(p, heatmap=False), pixels, args.repeats
        )
        model_rows[f"model + Grad-CAM, batch 1 ({runtime})"] = per_image_ms(
            lambda p, each=each: each.infer(p, heatmap=True), pixels, args.repeats
        )
    tensorflow = engines["TensorFlow"]
    model_rows["model + Grad-CAM, batch 8 (per image, TensorFlow)"] = tuple(
        ms / 8
        for ms in per_image_ms(
            lambda b: tensorflow.infer(b, heatmap=True), [batch8], args.repeats * 5
        )
    )

    rows = {
        "decode, full size": per_image_ms(
            lambda d: decode_image(d, MAX_PIXELS), datas, args.repeats
        ),
        f"decode, reduced (min side {DECODE_MIN_SIDE})": per_image_ms(
            lambda d: decode_image(d, MAX_PIXELS, DECODE_MIN_SIDE), datas, args.repeats
        ),
        f"preprocess to {size}x{size}": per_image_ms(
            lambda i: to_model_input(i.pixels, size), images, args.repeats
        ),
        **model_rows,
        "render heatmap + overlay, 2 JPEG encodes": per_image_ms(
            lambda i: [encode_jpeg(x) for x in render_heatmaps(i, cam, 0.5)], images, args.repeats
        ),
        f"decode + model + Grad-CAM + render (one request, {served})": per_image_ms(
            lambda d: whole_request(engine, d, size), datas, args.repeats
        ),
    }
    print(
        f"{len(files)} images from {args.images}, model {engine.info.name} v{engine.info.version}"
        f", threads: {settings.tf_intra_op_threads or 'auto'} per model call, "
        f"OpenCV {settings.opencv_threads}; the server would run {served} "
        f"(AISTACK_INPROCESS_RUNTIME={settings.inprocess_runtime})"
    )
    print(f"{'stage':<62}{'wall':>9}{'CPU':>9}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:<62}{wall:>6.2f} ms{cpu:>6.2f} ms")
    cores = os.cpu_count() or 1
    _, request_cpu = rows[f"decode + model + Grad-CAM + render (one request, {served})"]
    print(
        f"in-process limit with {served} on {cores} cores: {cores} / {request_cpu:.1f} ms CPU "
        f"= {cores * 1000 / request_cpu:.0f} images/s"
    )


if __name__ == "__main__":
    main()
