"""Concurrent load generator replaying the 2020 experiment: N clients each post every image.

All clients run as tasks in one asyncio loop and bodies are encoded before the clock starts,
so the generator takes little of the CPU it shares with a server on the same host. The HTTP
client is aiohttp: its C parser spends about a third of httpx's CPU per request
(benchmarks/load_generator.py), CPU the server under test would otherwise lose.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

FORM = "application/x-www-form-urlencoded"

ENDPOINTS: dict[str, str] = {
    "v1-heatmap": "/covid19/api/v1/predict/heatmap",
    "v1-predict": "/covid19/api/v1/predict/",
    "v2": "/api/v2/xray/predictions",
}
"""Benchmark endpoint name -> path below the server URL."""


@dataclass(frozen=True)
class RequestResult:
    """One request; ``status`` 0 means no HTTP answer and ``reason`` names the exception."""

    client: int
    image: str
    start_s: float
    latency_s: float
    status: int
    reason: str | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + self.latency_s

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class BenchmarkRun:
    """Everything measured; times are seconds from the moment the clients were released."""

    url: str
    endpoint: str
    clients: int
    images: tuple[str, ...]
    started_at: datetime
    results: tuple[RequestResult, ...]


@dataclass(frozen=True)
class _Body:
    name: str
    content: bytes
    content_type: str


def encode_body(endpoint: str, data: bytes) -> tuple[bytes, str]:
    """The exact body and content type a client of ``endpoint`` would send for ``data``.

    v1 matches python requests' ``data={'b64': ...}`` (urlencoded, ``+``/``/``/``=`` escaped).
    """
    b64 = base64.b64encode(data).decode("ascii")
    if endpoint == "v2":
        return json.dumps({"image_b64": b64, "heatmap": True}).encode(), "application/json"
    if endpoint in ENDPOINTS:
        # urlencode's output for base64 text, whose only characters to escape are these
        # three; urlencode quotes character by character in Python, ~30 ms per X-ray.
        escaped = b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        return f"b64={escaped}".encode("ascii"), FORM
    raise ValueError(f"unknown endpoint {endpoint!r}; choose from {', '.join(ENDPOINTS)}")


def endpoint_url(url: str, endpoint: str) -> str:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; choose from {', '.join(ENDPOINTS)}")
    return url.rstrip("/") + ENDPOINTS[endpoint]


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def failure_reason(error: Exception) -> str:
    """A short, stable name for a request that got no HTTP answer."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return "ConnectError"  # refused, unreachable, name not resolved
    if isinstance(error, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return "TimeoutError"
    return type(error).__name__


async def _post(
    http: aiohttp.ClientSession, target: str, body: _Body, client: int, t0: float
) -> RequestResult:
    start = time.perf_counter()
    try:
        async with http.post(
            target, data=body.content, headers={"Content-Type": body.content_type}
        ) as response:
            await response.read()  # the whole answer, and the connection back to the pool
            status = response.status
            reason = None if 200 <= status < 300 else response.reason
    except (aiohttp.ClientError, TimeoutError) as error:
        status, reason = 0, failure_reason(error)
    end = time.perf_counter()
    return RequestResult(client, body.name, start - t0, end - start, status, reason)


async def run_benchmark_async(
    url: str,
    images: Sequence[Path],
    clients: int,
    endpoint: str,
    timeout_s: float = 60,
    on_result: Callable[[RequestResult], None] | None = None,
    stagger: bool = False,
    api_key: str | None = None,
) -> BenchmarkRun:
    """Async form of :func:`run_benchmark`, for callers already inside an event loop."""
    if clients < 1:
        raise ValueError("clients must be at least 1")
    if not images:
        raise ValueError("no images to send")
    target = endpoint_url(url, endpoint)
    bodies = [_Body(p.name, *encode_body(endpoint, p.read_bytes())) for p in images]
    results: list[RequestResult] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=timeout_s),  # the whole request, body to answer
        headers=auth_headers(api_key),
    ) as http:

        async def one_client(index: int) -> None:
            shift = index % len(bodies) if stagger else 0
            for body in bodies[shift:] + bodies[:shift]:
                result = await _post(http, target, body, index, t0)
                results.append(result)
                if on_result is not None:
                    on_result(result)

        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))

    return BenchmarkRun(
        url=url,
        endpoint=endpoint,
        clients=clients,
        images=tuple(p.name for p in images),
        started_at=started_at,
        results=tuple(sorted(results, key=lambda r: r.start_s)),
    )


def run_benchmark(
    url: str,
    images: Sequence[Path],
    clients: int,
    endpoint: str,
    timeout_s: float = 60,
    on_result: Callable[[RequestResult], None] | None = None,
    stagger: bool = False,
    api_key: str | None = None,
) -> BenchmarkRun:
    """Post every image once per client, all clients at once; ``clients * len(images)`` requests.

    ``stagger`` starts client *i* at image *i* so clients do not send the same image in
    lockstep; the 2020 experiment had every client go through the folder in order.
    ``api_key`` is sent as a bearer token (servers with AISTACK_AUTH=on need one).
    """
    return asyncio.run(
        run_benchmark_async(url, images, clients, endpoint, timeout_s, on_result, stagger, api_key)
    )
