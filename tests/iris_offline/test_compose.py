"""docker-compose.yml, checked without Docker.

The Compose Specification schema (check-jsonschema's vendored copy) says the file is well
formed; the checkers below hold it to the stack's own rules: every long-running service has
a health check and a restart policy, dependencies wait for health, the gpu profile reserves
an NVIDIA device, no password is written in the file, data lives in named volumes, images
are pinned, administration ports stay on loopback, and HAProxy gets the shipped config.
Each checker is also run on a broken copy, so that it is known to fail. Last, the shipped
HAProxy config passes ``haproxy -c`` and its routing is run on loopback, with doubles of
the Web Gateway and of the standalone service behind it.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aistack.config import Settings
from aistack.icu.defaults import WORKBOOK_NAME
from aistack.interop.icu_setup import WORKBOOK_ENV
from aistack.topology.haproxy import (
    COMPOSE_HEALTH_URI,
    COMPOSE_READY_PATH,
    STATS_PASSWORD_ENV,
    STATS_USER_ENV,
    ComposeEndpoints,
    check_config,
    render_compose,
)
from aistack.topology.replicas import free_port
from tests.topology.helpers import require_haproxy, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SHIPPED_HAPROXY = ROOT / "haproxy" / "haproxy.cfg"
HAPROXY_TARGET = "/usr/local/etc/haproxy/haproxy.cfg"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|SIGNING_KEY", re.IGNORECASE)
SAFE_SECRET_VALUE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*|:?-)?\}$")
"""``${VAR}``, ``${VAR:?message}`` or ``${VAR:-}``: from the environment, no default value."""
RESTARTING = {"always", "unless-stopped"}
LOOPBACK_ONLY = {1972, 8404, 52773}
"""Container ports that must be published on 127.0.0.1 only: superserver, stats, portal."""
CONTRACT_ENV = {
    "AISTACK_DATABASE_URL": "iris+emb:///AISTACK",
    "AISTACK_TFSERVING_CPU_URL": "http://tfserving-cpu:8501",
}
PRODUCTION_ONLY_ENV = {"AISTACK_TFSERVING_CPU_URL", "AISTACK_TFSERVING_GPU_URL"}
"""Read by the production's settings.py (aistack.interop.settings), not by Settings."""
INSTALLER_ONLY_ENV = {WORKBOOK_ENV}
"""Read by the installer's ICU step (aistack.interop.icu_setup), not by Settings."""

Compose = dict[str, Any]


def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def compose() -> Compose:
    """A fresh copy for each test, which a test may break."""
    return load_compose()


# --------------------------------------------------------------------------- checkers


def schema_problems(path: Path) -> str | None:
    """check-jsonschema against the Compose Specification: None, or what it said."""
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return None if result.returncode == 0 else (result.stdout + result.stderr).strip()


def has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    test = check.get("test")
    return bool(test) and test not in ("NONE", ["NONE"]) and not check.get("disable")


def health_problems(compose: Compose) -> list[str]:
    """A service has a health check and restarts, or says why not (x-no-healthcheck) and
    does not restart: a one-shot that exits."""
    problems = []
    for name, service in compose["services"].items():
        if has_healthcheck(service):
            if service.get("restart") not in RESTARTING:
                problems.append(f"{name}: long-running without a restart policy")
        elif not service.get("x-no-healthcheck"):
            problems.append(f"{name}: no health check and no x-no-healthcheck reason")
        elif service.get("restart") != "no":
            problems.append(f"{name}: a one-shot must not restart")
    return problems


def dependency_problems(compose: Compose) -> list[str]:
    """Every dependency waits for health (or for a one-shot to succeed), never just a start."""
    services = compose["services"]
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on as a list waits for nothing")
            continue
        for other, rule in depends.items():
            wanted = (
                "service_healthy"
                if has_healthcheck(services.get(other, {}))
                else "service_completed_successfully"
            )
            if other not in services:
                problems.append(f"{name}: depends on unknown service {other}")
            elif rule.get("condition") != wanted:
                problems.append(f"{name}: waits for {other} with {rule.get('condition')}")
            elif services[other].get("profiles") and rule.get("required", True):
                problems.append(f"{name}: requires {other}, which only runs in a profile")
    return problems


def gpu_problems(compose: Compose) -> list[str]:
    """Services of the gpu profile reserve an NVIDIA GPU; the others do not, and one exists."""
    problems = []
    gpu_services = 0
    for name, service in compose["services"].items():
        devices = (
            service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        ) or []
        reserves = any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        )
        in_gpu_profile = "gpu" in service.get("profiles", [])
        gpu_services += in_gpu_profile
        if in_gpu_profile and not reserves:
            problems.append(f"{name}: in the gpu profile without an NVIDIA GPU reservation")
        if reserves and not in_gpu_profile:
            problems.append(f"{name}: reserves a GPU outside the gpu profile")
    if not gpu_services:
        problems.append("no service in the gpu profile")
    return problems


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def secret_problems(compose: Compose) -> list[str]:
    """Passwords and keys come from the environment, never as a value (or a default) here."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not SAFE_SECRET_VALUE.match(value):
                problems.append(f"{name}: {key} is given a value in the file")
        for argument in service.get("command") or []:
            if re.search(r"password", str(argument), re.IGNORECASE):
                problems.append(f"{name}: a password on the command line")
    for name, secret in (compose.get("secrets") or {}).items():
        if "environment" not in secret and not secret.get("external"):
            problems.append(f"secret {name}: not taken from the environment")
    return problems


VOLUME_SPEC = re.compile(r"^(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::(?P<options>.*))?$")


def split_volume(spec: str) -> tuple[str, str, str]:
    """Short volume syntax ``source:target[:options]``; the source may be ``${VAR:-default}``."""
    match = VOLUME_SPEC.match(spec)
    assert match, f"not a volume: {spec}"
    return match["source"], match["target"], match["options"] or ""


def volume_problems(compose: Compose) -> list[str]:
    """Data lives in named volumes that are declared; durable %SYS and models among them."""
    declared = set(compose.get("volumes") or {})
    problems = []
    mounts: dict[str, dict[str, str]] = {}
    for name, service in compose["services"].items():
        mounts[name] = {}
        for volume in service.get("volumes", []):
            source, target, _ = split_volume(volume)
            mounts[name][target] = source
            if not source.startswith((".", "/", "$")) and source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
    durable = environment(compose["services"]["iris"]).get("ISC_DATA_DIRECTORY", "")
    if not any(
        durable.startswith(target + "/") and mounts["iris"][target] in declared
        for target in mounts["iris"]
    ):
        problems.append("iris: ISC_DATA_DIRECTORY is not on a named volume")
    for name in ("tfserving-cpu", "tfserving-gpu"):
        if mounts.get(name, {}).get("/models") != "models":
            problems.append(f"{name}: /models is not the named volume models")
    return problems


def image_problems(compose: Compose) -> list[str]:
    """Pulled images name a version; only images built here may carry the tag local."""
    problems = []
    for name, service in compose["services"].items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if "build" in service:
            if image and tag != "local":
                problems.append(f"{name}: a built image is tagged {tag!r}, not local")
        elif not re.match(r"^\d", tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
    return problems


def port_problems(compose: Compose) -> list[str]:
    """Superserver, stats page and Management Portal are published on loopback only."""
    problems = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published, _, container = str(port).rpartition(":")
            if int(container) in LOOPBACK_ONLY and not published.startswith("127.0.0.1:"):
                problems.append(f"{name}: {container} is published beyond loopback")
    return problems


def haproxy_config_source(compose: Compose) -> Path | None:
    """The host file mounted read-only as HAProxy's configuration, if any."""
    for volume in compose["services"]["haproxy"].get("volumes", []):
        source, target, options = split_volume(volume)
        if target == HAPROXY_TARGET and "ro" in options.split(","):
            return (ROOT / source).resolve()
    return None


# --------------------------------------------------------------------------- the file


def test_compose_file_follows_the_compose_specification():
    problems = schema_problems(COMPOSE_FILE)
    assert problems is None, problems


def test_the_schema_check_catches_a_malformed_file(compose: Compose, tmp_path: Path):
    compose["services"]["iris"]["healthcheck"]["interval"] = 15  # a duration is a string
    compose["services"]["haproxy"]["restart_policy"] = "always"  # no such key
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    problems = schema_problems(broken)
    assert problems is not None and "restart_policy" in problems


def test_every_service_has_a_health_check_or_says_why_not(compose: Compose):
    assert health_problems(compose) == []
    one_shots = {n for n, s in compose["services"].items() if not has_healthcheck(s)}
    assert one_shots == {"models", "bench"}


def test_health_checker_catches_a_missing_check(compose: Compose):
    del compose["services"]["iris"]["healthcheck"]
    compose["services"]["webgateway"]["restart"] = "no"
    compose["services"]["bench"]["restart"] = "on-failure"
    assert health_problems(compose) == [
        "iris: no health check and no x-no-healthcheck reason",
        "webgateway: long-running without a restart policy",
        "bench: a one-shot must not restart",
    ]


def test_dependencies_wait_for_health(compose: Compose):
    assert dependency_problems(compose) == []
    iris = compose["services"]["iris"]["depends_on"]
    assert iris["tfserving-gpu"] == {"condition": "service_healthy", "required": False}


def test_dependency_checker_catches_waiting_for_a_start_only(compose: Compose):
    compose["services"]["webgateway"]["depends_on"]["iris"]["condition"] = "service_started"
    del compose["services"]["iris"]["depends_on"]["tfserving-gpu"]["required"]
    compose["services"]["bench"]["depends_on"] = ["haproxy"]
    assert dependency_problems(compose) == [
        "iris: requires tfserving-gpu, which only runs in a profile",
        "webgateway: waits for iris with service_started",
        "bench: depends_on as a list waits for nothing",
    ]


def test_gpu_profile_reserves_an_nvidia_gpu(compose: Compose):
    assert gpu_problems(compose) == []


def test_gpu_checker_catches_a_missing_reservation(compose: Compose):
    gpu = compose["services"]["tfserving-gpu"]
    compose["services"]["tfserving-cpu"]["deploy"] = copy.deepcopy(gpu["deploy"])
    gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] = "amd"
    assert gpu_problems(compose) == [
        "tfserving-cpu: reserves a GPU outside the gpu profile",
        "tfserving-gpu: in the gpu profile without an NVIDIA GPU reservation",
    ]


def test_no_password_is_written_in_the_file(compose: Compose):
    assert secret_problems(compose) == []
    assert compose["secrets"]["iris_password"] == {"environment": "IRIS_PASSWORD"}
    for name in ("iris", "webgateway"):
        assert compose["services"][name]["secrets"] == ["iris_password"]


@pytest.mark.parametrize(
    "value", ["admin", "${HAPROXY_STATS_PASSWORD:-admin}", "${HAPROXY_STATS_PASSWORD-s3cret}"]
)
def test_secret_checker_catches_a_password_or_a_default(compose: Compose, value: str):
    compose["services"]["haproxy"]["environment"]["HAPROXY_STATS_PASSWORD"] = value
    compose["secrets"]["iris_password"] = {"file": "./iris-password.txt"}
    assert secret_problems(compose) == [
        "haproxy: HAPROXY_STATS_PASSWORD is given a value in the file",
        "secret iris_password: not taken from the environment",
    ]


def test_data_lives_in_named_volumes(compose: Compose):
    assert volume_problems(compose) == []
    assert {"iris-durable", "models", "iris-var"} <= set(compose["volumes"])


def test_volume_checker_catches_durable_sys_in_the_container(compose: Compose):
    compose["services"]["iris"]["environment"]["ISC_DATA_DIRECTORY"] = "/usr/irissys/durable"
    compose["services"]["tfserving-cpu"]["volumes"][0] = "./models:/models:ro"
    compose["services"]["api"]["volumes"][0] = "undeclared:/var/lib/aistack"
    assert volume_problems(compose) == [
        "api: volume undeclared is not declared",
        "iris: ISC_DATA_DIRECTORY is not on a named volume",
        "tfserving-cpu: /models is not the named volume models",
    ]


def test_images_are_pinned(compose: Compose):
    assert image_problems(compose) == []


def test_image_checker_catches_latest_and_untagged(compose: Compose):
    compose["services"]["haproxy"]["image"] = "haproxy:latest"
    compose["services"]["tfserving-cpu"]["image"] = "tensorflow/serving"
    compose["services"]["api"]["image"] = "aistack:2"
    assert image_problems(compose) == [
        "tfserving-cpu: image 'tensorflow/serving' is not pinned to a version",
        "haproxy: image 'haproxy:latest' is not pinned to a version",
        "api: a built image is tagged '2', not local",
    ]


def test_administration_ports_stay_on_loopback(compose: Compose):
    assert port_problems(compose) == []


def test_port_checker_catches_a_public_portal(compose: Compose):
    compose["services"]["webgateway"]["ports"] = ["52773:52773"]
    assert port_problems(compose) == ["webgateway: 52773 is published beyond loopback"]


def test_haproxy_gets_the_shipped_config(compose: Compose):
    assert haproxy_config_source(compose) == SHIPPED_HAPROXY
    compose["services"]["haproxy"]["volumes"] = ["./my.cfg:" + HAPROXY_TARGET]
    assert haproxy_config_source(compose) is None


def test_iris_gets_the_settings_the_production_reads(compose: Compose):
    """The contract with the production, and no AISTACK_ name that Settings would ignore."""
    iris = environment(compose["services"]["iris"])
    assert {key: iris[key] for key in CONTRACT_ENV} == CONTRACT_ENV
    assert {"AISTACK_TFSERVING_GPU_URL", "AISTACK_VAR_DIR", "AISTACK_V1_OPEN"} <= set(iris)
    fields = {f"AISTACK_{name.upper()}" for name in Settings.model_fields}
    for name in ("iris", "api"):
        names = {k for k in environment(compose["services"][name]) if k.startswith("AISTACK_")}
        assert names - fields - PRODUCTION_ONLY_ENV - INSTALLER_ONLY_ENV == set(), name


def icu_workbook_problems(compose: Compose) -> list[str]:
    """The ICU workbook reaches iris from a read-only bind mount (never the image), and the
    container runs the installer's ICU step after IRIS starts (iris-main -a)."""
    iris = compose["services"]["iris"]
    workbook = environment(iris).get(WORKBOOK_ENV, "")
    problems = (
        [] if workbook.endswith("/" + WORKBOOK_NAME) else [f"{WORKBOOK_ENV} names no workbook"]
    )
    mounts = [split_volume(v) for v in iris.get("volumes", [])]
    holding = [m for m in mounts if workbook.startswith(m[1].rstrip("/") + "/")]
    if not holding:
        problems.append(f"no volume holds {workbook}")
    elif not holding[0][0].startswith(("$", ".", "/")):
        problems.append(f"{holding[0][1]}: a named volume, not the host's folder")
    elif "ro" not in holding[0][2].split(","):
        problems.append(f"{holding[0][1]}: mounted read-write")
    command = iris.get("command") or []
    after = command[command.index("-a") + 1] if "-a" in command[:-1] else ""
    if "##class(AIStack.Installer).EnsureIcuModel()" not in after or "-U AISTACK" not in after:
        problems.append("iris-main does not run the installer's EnsureIcuModel in AISTACK (-a)")
    return problems


def test_iris_gets_the_icu_workbook_read_only_and_trains_after_start(compose: Compose):
    assert icu_workbook_problems(compose) == []


def test_icu_workbook_checker_catches(compose: Compose):
    iris = compose["services"]["iris"]
    iris["volumes"] = [v.replace("/data/icu:ro", "/data/icu") for v in iris["volumes"]]
    del iris["command"]
    assert icu_workbook_problems(compose) == [
        "/opt/aistack/data/icu: mounted read-write",
        "iris-main does not run the installer's EnsureIcuModel in AISTACK (-a)",
    ]
    iris["volumes"] = [v for v in iris["volumes"] if "/data/icu" not in v]
    assert f"no volume holds {iris['environment'][WORKBOOK_ENV]}" in icu_workbook_problems(compose)


# --------------------------------------------------------------------------- HAProxy


def test_the_mounted_haproxy_config_passes_haproxy_check():
    binary = require_haproxy()
    credentials = {STATS_USER_ENV: "ops", STATS_PASSWORD_ENV: "a-long-secret"}
    config = haproxy_config_source(load_compose())
    assert config is not None
    valid, output = check_config(binary, config, {**os.environ, **credentials})
    assert valid, output


@dataclass
class HttpDouble:
    """Stands in for a service HAProxy routes to: answers every GET with its name, and
    ``ready_path`` with ``ready_status``; records the paths it was asked for."""

    name: str
    ready_path: str
    ready_status: int = 200
    paths: list[str] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                double.paths.append(self.path)
                status = double.ready_status if self.path == double.ready_path else 200
                body = double.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass
class RunningProxy:
    endpoints: ComposeEndpoints
    gateway: HttpDouble
    standalone: HttpDouble
    auth: tuple[str, str] = ("ops", "a-long-secret")

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def backend_states(self) -> dict[str, str]:
        """(backend/server) -> HAProxy's status, from the stats page's CSV."""
        response = httpx.get(
            f"{self.url(self.endpoints.stats_port)}/stats;csv", auth=self.auth, timeout=5
        )
        response.raise_for_status()
        rows = csv.DictReader(io.StringIO(response.text.lstrip("# ")))
        return {f"{r['pxname']}/{r['svname']}": r["status"] for r in rows}

    def gateway_state(self) -> str:
        """The gateway's status; "" while HAProxy is not listening yet."""
        try:
            return self.backend_states().get("iris/webgateway", "")
        except httpx.TransportError:
            return ""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """The shipped compose rendering on loopback ports, in front of two doubles."""
    binary = require_haproxy()
    gateway = HttpDouble("gateway", COMPOSE_READY_PATH)
    standalone = HttpDouble("standalone", "/readyz")
    servers = [gateway.serve(), standalone.serve()]
    endpoints = ComposeEndpoints(
        port=free_port(),
        standalone_port=free_port(),
        stats_port=free_port(),
        bind_host="127.0.0.1",
        gateway=f"127.0.0.1:{servers[0].server_address[1]}",
        standalone=f"127.0.0.1:{servers[1].server_address[1]}",
    )
    config = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    config.write_text(render_compose(endpoints=endpoints))
    running = RunningProxy(endpoints, gateway, standalone)
    env = {**os.environ, STATS_USER_ENV: running.auth[0], STATS_PASSWORD_ENV: running.auth[1]}
    process = subprocess.Popen(
        [str(binary), "-db", "-f", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: running.gateway_state() == "UP", 10)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in servers:
            server.shutdown()


def test_front_port_reaches_the_gateway_the_second_port_the_standalone(proxy: RunningProxy):
    front = httpx.get(f"{proxy.url(proxy.endpoints.port)}/covid19/api/v1/healthcheck")
    side = httpx.get(f"{proxy.url(proxy.endpoints.standalone_port)}/covid19/api/v1/healthcheck")
    assert (front.status_code, front.text) == (200, "gateway")
    assert (side.status_code, side.text) == (200, "standalone")
    assert "/covid19/api/v1/healthcheck" in proxy.gateway.paths


def test_gateway_is_checked_on_the_iris_readiness_path(proxy: RunningProxy):
    assert COMPOSE_READY_PATH in proxy.gateway.paths
    assert "/readyz" in proxy.standalone.paths


def test_an_unready_iris_leaves_rotation_and_rejoins(proxy: RunningProxy):
    front = f"{proxy.url(proxy.endpoints.port)}/api/v2/models"
    proxy.gateway.ready_status = 503
    try:
        wait_for(lambda: proxy.gateway_state().startswith("DOWN"), 10)
        assert httpx.get(front).status_code == 503
    finally:
        proxy.gateway.ready_status = 200
    wait_for(lambda: proxy.gateway_state() == "UP", 10)
    assert httpx.get(front).text == "gateway"


def test_container_health_uri_needs_no_credentials_the_stats_page_does(proxy: RunningProxy):
    stats = proxy.url(proxy.endpoints.stats_port)
    assert httpx.get(stats + COMPOSE_HEALTH_URI).status_code == 200
    assert httpx.get(stats + "/stats").status_code == 401


def test_bodies_over_the_limit_are_refused_before_the_gateway(proxy: RunningProxy):
    declared = Settings.model_construct().max_body_bytes + 1
    address = ("127.0.0.1", proxy.endpoints.port)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            f"POST /covid19/api/v1/predict/ HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"code":"payload_too_large"' in answer
    assert not any(path.startswith("/covid19/api/v1/predict") for path in proxy.gateway.paths)
