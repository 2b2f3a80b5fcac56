"""DICOM decode + window of a real 1955x1841 chest radiograph: p50 and p95 per stage.

.venv/bin/python benchmarks/dicom_decode.py --runs 200

The files are pydicom-data's RG1 (MONOCHROME1, 15 bits stored): uncompressed and JPEG 2000
lossless. "decode_image" is what a request pays, from bytes to the 8-bit gray image the
model input and overlays are made from; the other rows split it up. The last row applies
pydicom's modality and VOI functions to every pixel instead of building one table from them,
for comparison.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from aistack.imaging.decode import decode_image
from aistack.imaging.dicom import _decode_pixels, display_table, read_dicom_header

MAX_PIXELS = 50_000_000
FILES = {"uncompressed": "RG1_UNCR.dcm", "JPEG 2000 lossless": "RG1_J2KR.dcm"}
TARGET_MS = 60.0
"""What the uncompressed radiograph's decode + window may cost at p50."""


def percentiles_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(p50, p95) wall milliseconds of ``fn`` over ``runs`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95)


def pixel_by_pixel(data: bytes) -> np.ndarray:
    dataset = dcmread(io.BytesIO(data))
    return apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)


def stages(data: bytes) -> dict[str, Callable[[], object]]:
    header = read_dicom_header(data)
    dataset = dcmread(io.BytesIO(data))
    stored = _decode_pixels(dataset, header)
    table = display_table(dataset, stored)
    return {
        "decode_image (what a request pays)": lambda: decode_image(data, MAX_PIXELS),
        "  header: file meta + dataset, no pixels": lambda: read_dicom_header(data),
        "  dataset with Pixel Data": lambda: dcmread(io.BytesIO(data)),
        "  pixels: stored values": lambda: _decode_pixels(dataset, header),
        "  display table (65,536 values)": lambda: display_table(dataset, stored),
        "  table lookup": lambda: table[stored],
        "pydicom chain on every pixel (comparison)": lambda: pixel_by_pixel(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs per uncompressed stage")
    parser.add_argument(
        "--jpeg2000-runs", type=int, default=20, help="runs per JPEG 2000 stage (~0.5 s each)"
    )
    args = parser.parse_args()
    print(f"{'stage':<46}{'p50':>10}{'p95':>10}")
    for label, name in FILES.items():
        data = Path(get_testdata_file(name)).read_bytes()
        runs = args.runs if label == "uncompressed" else args.jpeg2000_runs
        image = decode_image(data, MAX_PIXELS)
        print(f"{name} ({label}, {len(data):,} bytes, {image.width}x{image.height}), {runs} runs")
        results = {stage: percentiles_ms(fn, runs) for stage, fn in stages(data).items()}
        for stage, (p50, p95) in results.items():
            print(f"  {stage:<44}{p50:>7.1f} ms{p95:>7.1f} ms")
        if label == "uncompressed":
            p50 = results["decode_image (what a request pays)"][0]
            verdict = "within" if p50 <= TARGET_MS else "OVER"
            print(f"  p50 {p50:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
