"""HAProxy configuration for aistack: one template, two renderings.

The docker-compose file (``haproxy/haproxy.cfg``) and the local topology of `aistack up`
are rendered from the same template, so health checks, timeouts and limits cannot drift
apart; a test compares the shipped file with a fresh rendering. Regenerate the shipped file
with ``python -m aistack.topology.haproxy > haproxy/haproxy.cfg``.

`aistack up` puts local replicas of `aistack serve` behind it. In docker-compose it is the
front door of the IRIS runtime (its Web Gateway, on :8088) and, on a second port (:8089),
of the standalone replicas (profile ``standalone``), so both runtimes can be compared side
by side through the same proxy rules (docs/IRIS.md).
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aistack.config import Settings
from aistack.errors import BUSY_MESSAGE, ServiceBusy

STATS_USER_ENV = "HAPROXY_STATS_USER"
STATS_PASSWORD_ENV = "HAPROXY_STATS_PASSWORD"
STATS_PATH = "/stats"
SBIN_DIRS = (Path("/usr/sbin"), Path("/usr/local/sbin"))
"""Debian installs haproxy in /usr/sbin, which is not on every user's PATH."""

REPLICAS_BACKEND = "replicas"
"""The backend of `aistack serve` replicas: the only one locally, the standalone one in compose."""

COMPOSE_SERVICE = "api"
COMPOSE_SLOTS = 4
"""Server slots the compose backend fills from DNS: `--scale api=N` works up to this N."""
COMPOSE_PORT = 8088
"""The front door: the IRIS runtime (its Web Gateway)."""
COMPOSE_STANDALONE_PORT = 8089
"""The standalone runtime (compose profile ``standalone``), beside the IRIS one."""
COMPOSE_STATS_PORT = 8404
COMPOSE_GATEWAY = "webgateway"
"""The compose service of the IRIS Web Gateway (Apache); HAProxy reaches its port 80, which
serves the application paths only."""
COMPOSE_GATEWAY_PORT = 80
COMPOSE_GATEWAY_BACKEND = "iris"
COMPOSE_READY_PATH = "/v2/health/ready"
"""Readiness of the IRIS runtime, through the gateway, down to its production."""
COMPOSE_HEALTH_URI = "/healthz"
"""Answered by HAProxy itself on the stats port: the container's own health check."""


class _Template(string.Template):
    delimiter = "@"  # HAProxy itself uses ${ENV}, %[fetch] and { acl }


TEMPLATE = _Template("""\
# HAProxy (2.6+) in front of aistack replicas; docs/SCALING.md explains every choice.
# @{origin}
# Check: HAPROXY_STATS_USER=u HAPROXY_STATS_PASSWORD=p haproxy -c -f <this file>

global
    log stdout format raw local0
    maxconn 4096
    # a soft stop (SIGUSR1) waits for open requests at most this long
    hard-stop-after 15s
    # Unset, both would expand to "" and HAProxy would open the stats page to empty
    # credentials: refuse to start instead.
.if !defined(HAPROXY_STATS_USER) || !defined(HAPROXY_STATS_PASSWORD)
    .alert "set HAPROXY_STATS_USER and HAPROXY_STATS_PASSWORD (stats page credentials)"
.endif
.if streq("$HAPROXY_STATS_USER","") || streq("$HAPROXY_STATS_PASSWORD","")
    .alert "HAPROXY_STATS_USER and HAPROXY_STATS_PASSWORD must not be empty"
.endif
.if streq("$HAPROXY_STATS_PASSWORD","admin")
    .alert "choose a real HAPROXY_STATS_PASSWORD, not admin"
.endif
.if streq("$HAPROXY_STATS_PASSWORD","$HAPROXY_STATS_USER")
    .alert "HAPROXY_STATS_PASSWORD must not be the user name"
.endif

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option log-health-checks
    timeout connect 2s
    # >= the service's body idle timeout (15 s), so that the service answers a stalled body
    timeout client 30s
    # a heatmap under full load takes well under a second; 60 s is for a saturated host
    timeout server 60s
    # the service's AISTACK_HEADER_TIMEOUT_S
    timeout http-request @{header_timeout}
    timeout http-keep-alive 5s
    # a request waiting for a free slot (maxconn per server) gets 503 after this
    timeout queue 10s
    timeout check 2s
    # connection refused or closed without an answer: try again, on another replica
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
@{resolvers}
frontend api
    bind @{api_bind}
@{extra_binds}    # Replaced, not appended: the replicas trust these headers from this proxy alone.
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
    # One request id in HAProxy's log line and the replica's (the service keeps a sane one).
    acl sane_id req.hdr(x-request-id) -m reg ^[A-Za-z0-9._:-]{1,64}$
    http-request set-header X-Request-ID %[uuid()] unless sane_id
    http-request capture req.hdr(x-request-id) len 64
    # Bodies over the service's AISTACK_MAX_BODY_BYTES are refused before they cross;
    # chunked bodies (no Content-Length) are counted and cut off by the service itself.
    acl too_large req.hdr_val(content-length) gt @{max_body_bytes}
    http-request deny deny_status 413 content-type application/json string @{too_large} if too_large
@{routing}    default_backend @{default_backend}

backend replicas
    # leastconn: requests differ in cost (heatmap or not, image size); the replica with
    # the fewest open requests is the least busy one. Ties go round robin.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    # Admission at the front door: a replica holds at most @{replica_slots} requests (its
    # AISTACK_MAX_CONCURRENT_DECODES running + AISTACK_MAX_QUEUED_PREDICTIONS waiting); a
    # prediction that finds every slot taken and others already queued here gets the
    # service's own 503 at once, from HAProxy, whose answer does not wait for cores the
    # predictions hold (docs/PERFORMANCE.md, overload).
@{admission}    default-server check inter 1s fall 2 rise 2 maxconn @{replica_slots}
@{servers}
@{extra_backends}
frontend stats
    bind @{stats_bind}
@{stats_extra}    stats enable
    stats uri @{stats_path}
    stats refresh 5s
    stats show-legends
    stats hide-version
    stats realm aistack-haproxy
    stats auth "${HAPROXY_STATS_USER}:${HAPROXY_STATS_PASSWORD}"
""")

COMPOSE_RESOLVERS = """
# Docker's embedded DNS: the service name resolves to one address per running replica.
resolvers docker
    nameserver dns 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 5s
    hold obsolete 5s
    accepted_payload_size 8192
"""


@dataclass(frozen=True)
class Server:
    """One replica as HAProxy names and reaches it."""

    name: str
    host: str
    port: int


def _duration(seconds: float) -> str:
    return f"{seconds:g}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def _too_large_body(max_body_bytes: int) -> str:
    """The service's own 413 body, single-quoted for HAProxy (no quote inside)."""
    message = f"request body exceeds the limit of {max_body_bytes:,} bytes"
    error = {"error": {"code": "payload_too_large", "message": message}}
    return "'" + json.dumps(error, separators=(",", ":")) + "'"


PREDICTION_PATHS = (
    "/covid19/api/v1/predict/",
    "/covid19/api/v1/predict/heatmap",
    "/api/v2/xray/predictions",
)
"""The routes that run the model: the ones refused at the front door when it is full."""


def replica_slots(settings: Settings) -> int:
    """Requests one replica holds at once: its running and waiting prediction places."""
    return max(1, settings.max_concurrent_decodes) + settings.max_queued_predictions


def admission_rules() -> str:
    """Backend rules: a prediction meeting a queue is refused with the service's 503."""
    body = json.dumps(
        {"error": {"code": ServiceBusy.code, "message": BUSY_MESSAGE}}, separators=(",", ":")
    )
    return (
        f"    acl prediction path {' '.join(PREDICTION_PATHS)}\n"
        "    http-request return status 503 content-type application/json "
        f"hdr Retry-After {ServiceBusy.retry_after_s} string '{body}' "
        "if METH_POST prediction { queue() ge 1 }\n"
    )


@dataclass(frozen=True)
class Routing:
    """What a rendering adds to the shared template; the defaults are `aistack up`'s."""

    extra_binds: str = ""
    rules: str = ""
    default_backend: str = REPLICAS_BACKEND
    extra_backends: str = ""
    stats: str = ""


@dataclass(frozen=True)
class ComposeEndpoints:
    """Where the compose configuration listens and what it reaches.

    The defaults are the compose services; tests point them at local doubles so that the
    shipped routing rules run on loopback.
    """

    port: int = COMPOSE_PORT
    standalone_port: int = COMPOSE_STANDALONE_PORT
    stats_port: int = COMPOSE_STATS_PORT
    bind_host: str = ""
    gateway: str = f"{COMPOSE_GATEWAY}:{COMPOSE_GATEWAY_PORT}"
    standalone: str = f"{COMPOSE_SERVICE}:8088"


def render(
    servers: str,
    api_bind: str,
    stats_bind: str,
    settings: Settings,
    resolvers: str = "",
    origin: str = "rendered by aistack.topology.haproxy",
    routing: Routing = Routing(),
) -> str:
    """The configuration text; values the service also enforces come from ``settings``."""
    return TEMPLATE.substitute(
        origin=origin,
        header_timeout=_duration(settings.header_timeout_s),
        max_body_bytes=settings.max_body_bytes,
        too_large=_too_large_body(settings.max_body_bytes),
        resolvers=resolvers,
        api_bind=api_bind,
        stats_bind=stats_bind,
        stats_path=STATS_PATH,
        servers=servers,
        replica_slots=replica_slots(settings),
        admission=admission_rules(),
        extra_binds=routing.extra_binds,
        routing=routing.rules,
        default_backend=routing.default_backend,
        extra_backends=routing.extra_backends,
        stats_extra=routing.stats,
    )


def render_local(
    servers: Sequence[Server], api_bind: str, stats_bind: str, settings: Settings
) -> str:
    """For `aistack up`: explicit servers on loopback ports."""
    lines = "\n".join(f"    server {s.name} {s.host}:{s.port}" for s in servers)
    return render(lines, api_bind, stats_bind, settings, origin="rendered by `aistack up`")


def _compose_routing(endpoints: ComposeEndpoints) -> Routing:
    """The IRIS runtime by default; the standalone one on its own port."""
    gateway = (
        f"{COMPOSE_GATEWAY} {endpoints.gateway} "
        "resolvers docker resolve-prefer ipv4 init-addr libc,none"
    )
    gateway_backend = f"""
backend {COMPOSE_GATEWAY_BACKEND}
    # The IRIS runtime: the Web Gateway (Apache) hands the application paths to IRIS.
    # In rotation once IRIS's production answers readiness through the gateway.
    option httpchk GET {COMPOSE_READY_PATH}
    http-check expect status 200
    # Admission as for the replicas; 32 requests at once is the gateway's share of IRIS.
{admission_rules()}    default-server check inter 1s fall 2 rise 2 maxconn 32
    server {gateway}
"""
    return Routing(
        extra_binds=f"    bind {endpoints.bind_host}:{endpoints.standalone_port}\n",
        rules=(
            "    # The standalone runtime (compose profile standalone) on its own port, beside\n"
            "    # the IRIS one: the same rules in front of both (docs/IRIS.md).\n"
            f"    use_backend {REPLICAS_BACKEND} if {{ dst_port {endpoints.standalone_port} }}\n"
        ),
        default_backend=COMPOSE_GATEWAY_BACKEND,
        extra_backends=gateway_backend,
        stats=(
            "    # The container's health check (docker-compose.yml): 200 while HAProxy runs.\n"
            f"    monitor-uri {COMPOSE_HEALTH_URI}\n"
        ),
    )


def render_compose(
    settings: Settings | None = None, endpoints: ComposeEndpoints = ComposeEndpoints()
) -> str:
    """For docker-compose: the Web Gateway, and slots filled from the ``api`` service's DNS."""
    settings = settings or Settings.model_construct()  # defaults, not this shell's env
    servers = (
        f"    server-template {COMPOSE_SERVICE} {COMPOSE_SLOTS} {endpoints.standalone} "
        "resolvers docker resolve-prefer ipv4 init-addr libc,none"
    )
    origin = "generated by `python -m aistack.topology.haproxy`: edit the template there"
    host = endpoints.bind_host
    return render(
        servers,
        f"{host}:{endpoints.port}",
        f"{host}:{endpoints.stats_port}",
        settings,
        COMPOSE_RESOLVERS,
        origin,
        _compose_routing(endpoints),
    )


def find_haproxy(explicit: Path | None = None) -> Path | None:
    """``explicit`` if it is an executable, else haproxy on PATH or in an sbin folder."""
    if explicit is not None:
        return explicit if explicit.is_file() and os.access(explicit, os.X_OK) else None
    found = shutil.which("haproxy")
    if found:
        return Path(found)
    for folder in SBIN_DIRS:
        candidate = folder / "haproxy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_config(binary: Path, config: Path, env: Mapping[str, str]) -> tuple[bool, str]:
    """``haproxy -c``: (valid, what HAProxy said)."""
    result = subprocess.run(
        [str(binary), "-c", "-f", str(config)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


if __name__ == "__main__":
    print(render_compose(), end="")
