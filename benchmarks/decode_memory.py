"""Peak server memory when worst-case images arrive at once, for several decode concurrencies.

    .venv/bin/python benchmarks/decode_memory.py --decodes 1 2 8 --out var/decode_memory

For each AISTACK_MAX_CONCURRENT_DECODES in ``--decodes`` and each worst-case image, a fresh
`aistack serve` (auth off) is started, its RSS read once ready and again after one ordinary
request (model warm), then ``--clients`` copies of the image are posted at once to the v1
heatmap route. Reported: peak RSS (VmHWM) over the server's life, each request's latency and
status, and RSS afterwards. Prints a table and writes ``<out>/decode_memory.json``.

The worst cases, both within the default 50-megapixel limit and a few hundred KB to send:

- PNG: 7070x7070, 16-bit RGBA, all zero (an RGBA16 decode is 400 MB);
- JPEG: 48,828x1,023 progressive 4:4:4 colour, EXIF-rotated. Progressive decoding keeps every
  DCT coefficient (2 bytes x 3 components a pixel) whatever the output scale, and a shorter
  side under 1,024 rules out DCT scaling, so the gray output is full size too.

Both are flat, so the service refuses them after decoding (422 not_a_chest_xray). A third
case, ``png_xray``, is the warm-up X-ray blown up to the PNG's size and format (~2.5 MB): it
takes the whole path, model and heatmap rendering included.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image

from aistack.bench.local_server import LocalServer, start_local_server

ROUTE = "/covid19/api/v1/predict/heatmap"
PNG_SIDE = 7070
JPEG_SIZE = (48_828, 1_023)  # width, height: 49,951,044 pixels
ORIENTATION_TAG = 0x0112
IMAGES = ("png", "jpeg", "png_xray")
DEFAULT_WARMUP = Path(__file__).resolve().parents[1].parent / "shared/data/xray/test/normal"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def worst_case_png(side: int = PNG_SIDE) -> bytes:
    """``side`` x ``side`` 16-bit RGBA of zeros: 8 bytes a pixel decoded, ~390 KB encoded."""
    packer = zlib.compressobj(9)
    row = bytes(1 + side * 8)  # filter byte, then RGBA at 16 bits a sample
    stream = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", stream)
        + _png_chunk(b"IEND", b"")
    )


def worst_case_jpeg(size: tuple[int, int] = JPEG_SIZE) -> bytes:
    """Progressive 4:4:4 colour of one flat tone, orientation 6 (rotated on decode)."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 120, 110)).save(
        buffer, "JPEG", quality=75, progressive=True, subsampling=0, exif=exif.tobytes()
    )
    return buffer.getvalue()


def xray_png(source: Path, side: int = PNG_SIDE) -> bytes:
    """A real X-ray as ``side`` x ``side`` 16-bit RGBA (nearest-neighbour, so it packs well)."""
    gray = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(gray, (side, side), interpolation=cv2.INTER_NEAREST).astype(np.uint16) * 257
    rgba = np.empty((side, side, 4), np.uint16)
    rgba[..., :3] = big[..., np.newaxis]
    rgba[..., 3] = 65535
    ok, buffer = cv2.imencode(".png", rgba, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("OpenCV could not encode the X-ray PNG")
    return buffer.tobytes()


def build_images(names: list[str], warmup: Path) -> dict[str, bytes]:
    builders = {
        "png": worst_case_png,
        "jpeg": worst_case_jpeg,
        "png_xray": lambda: xray_png(warmup),
    }
    return {name: builders[name]() for name in names}


@dataclass(frozen=True)
class Answer:
    status: int
    latency_ms: float
    json: bool
    code: str | None  # the error code of a 4xx/5xx JSON answer


def post_image(url: str, data: bytes, timeout_s: float = 300) -> Answer:
    """POST one image as the v1 form field ``b64``; never raises for an HTTP status."""
    started = time.perf_counter()
    response = httpx.post(
        f"{url}{ROUTE}", data={"b64": base64.b64encode(data).decode()}, timeout=timeout_s
    )
    latency = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        return Answer(response.status_code, latency, False, None)
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return Answer(response.status_code, latency, True, code)


def burst(url: str, data: bytes, clients: int) -> list[Answer]:
    """``clients`` identical requests released together from a barrier."""
    answers: list[Answer | None] = [None] * clients
    gate = threading.Barrier(clients)

    def send(index: int) -> None:
        gate.wait()
        answers[index] = post_image(url, data)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [a for a in answers if a is not None]


@dataclass(frozen=True)
class Run:
    image: str
    image_bytes: int
    decodes: int
    clients: int
    rss_ready_mb: float
    rss_warm_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    answers: list[Answer]

    @property
    def latencies(self) -> list[float]:
        return [a.latency_ms for a in self.answers]

    def row(self) -> str:
        answers = (f"{a.status} {a.code or ''}".strip() for a in self.answers)
        statuses = ", ".join(f"{n}x {s}" for s, n in _counts(answers))
        return (
            f"{self.image:<9}{self.decodes:>8}{self.image_bytes / 1024:>9.0f}"
            f"{self.rss_ready_mb:>9.0f}{self.rss_warm_mb:>9.0f}{self.rss_peak_mb:>9.0f}"
            f"{self.rss_peak_mb - self.rss_warm_mb:>8.0f}{self.rss_after_mb:>9.0f}"
            f"{statistics.median(self.latencies):>9.0f}{max(self.latencies):>9.0f}  {statuses}"
        )


HEADER = (
    f"{'image':<9}{'decodes':>8}{'KB':>9}{'ready':>9}{'warm':>9}{'peak':>9}{'+peak':>8}"
    f"{'after':>9}{'p50 ms':>9}{'max ms':>9}  statuses      (RSS in MB)"
)


def _counts(values: Iterable[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts.items())


def measure(
    server: LocalServer, name: str, data: bytes, clients: int, warmup: bytes, decodes: int
) -> Run:
    """One burst against a started server; RSS read before, at peak and after."""
    ready = server.rss_mb()
    warm_answer = post_image(server.url, warmup)
    if warm_answer.status != 200:
        raise RuntimeError(f"the warm-up image got HTTP {warm_answer.status}")
    warm = server.rss_mb()
    answers = burst(server.url, data, clients)
    return Run(
        name, len(data), decodes, clients, ready, warm, server.rss_mb(peak=True),
        server.rss_mb(), answers,
    )  # fmt: skip


def run_one(name: str, data: bytes, decodes: int, clients: int, warmup: bytes) -> Run:
    """A fresh server, so VmHWM is this burst's peak and nothing else's."""
    env = {"AISTACK_AUTH": "off", "AISTACK_MAX_CONCURRENT_DECODES": str(decodes)}
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), env)
        try:
            return measure(server, name, data, clients, warmup, decodes)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decodes", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument(
        "--images", nargs="+", choices=IMAGES, default=list(IMAGES), help="worst cases to send"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=Path, default=DEFAULT_WARMUP, help="image or folder")
    parser.add_argument("--out", type=Path, default=Path("var/decode_memory"))
    args = parser.parse_args()
    warmup_path = min(args.warmup.iterdir()) if args.warmup.is_dir() else args.warmup
    images = build_images(args.images, warmup_path)
    runs = []
    print(HEADER)
    for decodes in args.decodes:
        for name, data in images.items():
            run = run_one(name, data, decodes, args.clients, warmup_path.read_bytes())
            print(run.row(), flush=True)
            runs.append(run)
    args.out.mkdir(parents=True, exist_ok=True)
    report = [{**asdict(r), "latencies_ms": r.latencies} for r in runs]
    (args.out / "decode_memory.json").write_text(json.dumps(report, indent=2))
    print(f"written {args.out / 'decode_memory.json'}")


if __name__ == "__main__":
    main()
