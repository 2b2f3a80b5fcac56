"""The IRIS container's files, checked without IRIS, Docker or the Web Gateway.

- ``iris/merge.cpf``: CPF sections, ``[Actions]`` lines ``Verb:Key=Value,...`` with known
  verbs, the AISTACK namespace enabled for interoperability on databases the file creates,
  ``%Service_CallIn`` enabled with OS authentication (irispython signs in through it).
- ``iris/iris.script``: the two lines of the installer contract, in order, in AISTACK, a
  failure that fails the image build, ``halt`` last.
- ``iris/webgateway/CSP.ini`` (configparser) and ``CSP.conf`` (Apache blocks): the server
  is the compose service ``iris`` on 1972, and every public path, one per web application
  the installer creates, is routed to it; administration stays off the public port.
- the Dockerfiles: ``FROM`` pinned (never ``latest``), the Web Gateway's version matching
  IRIS's, no password baked into ``ENV`` or ``ARG``; ``.env.example`` holds no password.
- the entrypoints and the health check run here, with doubles of ``iris-main``, of
  ``/startWebGateway`` and of IRIS's Python module.

Each checker is also run on a broken sample, so that it is known to fail.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from aistack.topology.haproxy import COMPOSE_READY_PATH

ROOT = Path(__file__).resolve().parents[2]
IRIS_DIR = ROOT / "iris"
GATEWAY_DIR = IRIS_DIR / "webgateway"
MERGE_CPF = IRIS_DIR / "merge.cpf"
IRIS_SCRIPT = IRIS_DIR / "iris.script"
CSP_INI = GATEWAY_DIR / "CSP.ini"
CSP_CONF = GATEWAY_DIR / "CSP.conf"
IRIS_DOCKERFILE = IRIS_DIR / "Dockerfile"
STANDALONE_DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INSTALLER = ROOT / "src" / "cls" / "AIStack" / "Installer.cls"

NAMESPACE = "AISTACK"
FHIR_NAMESPACE = "FHIRSERVER"
"""IRIS for Health's FHIR server lives in a Foundation namespace of its own."""
LOAD_LINE = 'do $system.OBJ.LoadDir("/opt/aistack/src/cls", "ck", , 1)'
RUN_LINE = "do ##class(AIStack.Installer).Run()"
KNOWN_VERBS = frozenset(
    {
        "CreateApplication",
        "CreateDatabase",
        "CreateMapGlobal",
        "CreateMapPackage",
        "CreateMapRoutine",
        "CreateNamespace",
        "CreateResource",
        "CreateRole",
        "CreateUser",
        "ModifyDatabase",
        "ModifyNamespace",
        "ModifyService",
        "ModifyUser",
    }
)
AUTHE_OS = 16
"""Security.Services AutheEnabled bit for operating-system authentication."""
SERVER = "LOCAL"
IRIS_HOST, SUPERSERVER_PORT, ADMIN_PORT = "iris", "1972", "52773"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|SIGNING_KEY", re.IGNORECASE)
PASSWORD = "Ab3$x\\y&z\"q'%n"
"""Printable, no spaces, with the characters shells and awk like to interpret."""


# --------------------------------------------------------------------------- merge.cpf


def cpf_sections(text: str) -> dict[str, list[str]]:
    """CPF text as section -> its non-blank lines; a line before any section is an error."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"line {number} is outside any section: {line}")
        else:
            current.append(line)
    return sections


def cpf_action(line: str) -> tuple[str, dict[str, str]]:
    """``Verb:Key=Value,Key="a, b"`` -> (verb, {key: value}); commas inside quotes stay."""
    match = re.fullmatch(r"([A-Za-z]+):(.+)", line)
    if not match:
        raise ValueError(f"not an action: {line}")
    arguments: dict[str, str] = {}
    for item in re.findall(r'(?:[^,"]|"[^"]*")+', match[2]):
        key, equals, value = item.partition("=")
        if equals and re.fullmatch(r"[A-Za-z%_]+", key):
            arguments[key] = value.strip('"')
        elif arguments:  # a value with commas of its own (PasswordHash=hash,salt,...)
            last = next(reversed(arguments))
            arguments[last] += "," + item
        else:
            raise ValueError(f"not Key=Value: {item!r} in {line}")
    return match[1], arguments


def merge_problems(text: str) -> list[str]:
    try:
        sections = cpf_sections(text)
        actions = [cpf_action(line) for line in sections.get("Actions", [])]
    except ValueError as error:
        return [str(error)]
    problems = [f"unknown verb {verb}" for verb, _ in actions if verb not in KNOWN_VERBS]
    problems += [
        f"{verb} {args.get('Name')}: a password in the merge file"
        for verb, args in actions
        if {"Password", "PasswordHash"} & set(args)
    ]
    resources: set[str] = set()
    databases: set[str] = set()
    for verb, args in actions:
        if verb == "CreateResource":
            resources.add(args["Name"])
        elif verb == "CreateDatabase":
            databases.add(args["Name"])
            if args.get("Resource") not in resources:
                problems.append(f"database {args['Name']}: resource not created before it")
    namespaces = {a["Name"]: a for v, a in actions if v == "CreateNamespace"}
    for name in (NAMESPACE, FHIR_NAMESPACE):
        namespace = namespaces.get(name)
        if namespace is None:
            problems.append(f"no CreateNamespace {name}")
            continue
        if namespace.get("Interop") != "1":
            problems.append(f"{name}: Interop=1 missing")
        for role in ("Globals", "Routines"):
            if namespace.get(role) not in databases:
                problems.append(f"{name}: {role} is not a database created here")
    if len({namespaces.get(n, {}).get("Globals") for n in (NAMESPACE, FHIR_NAMESPACE)}) < 2:
        problems.append(f"{FHIR_NAMESPACE} shares its database with {NAMESPACE}")
    callin = [a for v, a in actions if v == "ModifyService" and a["Name"] == "%Service_CallIn"]
    if not callin or callin[-1].get("Enabled") != "1":
        problems.append("%Service_CallIn is not enabled")
    elif not int(callin[-1].get("AutheEnabled", "0")) & AUTHE_OS:
        problems.append("%Service_CallIn does not allow OS authentication")
    return problems


def test_merge_file_creates_the_interoperability_namespace_and_enables_callin():
    assert merge_problems(MERGE_CPF.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("Interop=1", "Interop=0"), "AISTACK: Interop=1 missing"),
        (("FHIRSERVER_CODE,Interop=1", "FHIRSERVER_CODE,Interop=0"), "FHIRSERVER: Interop=1"),
        (("Globals=FHIRSERVER_DATA", "Globals=AISTACK_DATA"), "FHIRSERVER shares its database"),
        (("Name=FHIRSERVER,", "Name=FHIR,"), "no CreateNamespace FHIRSERVER"),
        (("Globals=AISTACK_DATA", "Globals=NOWHERE"), "AISTACK: Globals is not a database"),
        (("CreateNamespace:", "CreateNamesapce:"), "unknown verb CreateNamesapce"),
        (("%Service_CallIn,Enabled=1", "%Service_CallIn,Enabled=0"), "is not enabled"),
        (("AutheEnabled=48", "AutheEnabled=32"), "does not allow OS authentication"),
        (("Interop=1", "Interop=1\nModifyUser:Name=SuperUser,PasswordHash=ab,cd,1,X"), "password"),
        (("[Actions]\n", "[Actions]\nCreateDatabase Name=X\n"), "not an action"),
        (("[Actions]\n", "Actions\n"), "outside any section"),
    ],
)
def test_merge_checker_catches(change: tuple[str, str], problem: str):
    broken = MERGE_CPF.read_text().replace(*change, 1)
    assert broken != MERGE_CPF.read_text()
    assert any(problem in p for p in merge_problems(broken)), merge_problems(broken)


def test_cpf_arguments_keep_commas_inside_quotes_and_values():
    verb, args = cpf_action('CreateResource:Name=%DB_X,Description="a, b"')
    assert (verb, args) == ("CreateResource", {"Name": "%DB_X", "Description": "a, b"})
    _, args = cpf_action("ModifyUser:Name=U,PasswordHash=h,s,10000,SHA512,ChangePassword=0")
    assert args == {"Name": "U", "PasswordHash": "h,s,10000,SHA512", "ChangePassword": "0"}
    with pytest.raises(ValueError, match="not Key=Value"):
        cpf_action("CreateDatabase:Directory")


# --------------------------------------------------------------------------- iris.script


def script_problems(text: str) -> list[str]:
    lines = [s for s in (raw.strip() for raw in text.splitlines()) if s and s[0] != ";"]
    problems = []
    for needed in (LOAD_LINE, RUN_LINE):
        if lines.count(needed) != 1:
            problems.append(f"not exactly once: {needed}")
    if not problems:
        load, run = lines.index(LOAD_LINE), lines.index(RUN_LINE)
        if run < load:
            problems.append("the installer runs before the classes are loaded")
        if f'zn "{NAMESPACE}"' not in lines[:load]:
            problems.append(f"the classes are not loaded in {NAMESPACE}")
        if not any("$system.Process.Terminate($job, 1)" in line for line in lines[run:]):
            problems.append("a failed installer would not fail the build")
    if not lines or lines[-1] != "halt":
        problems.append("does not end with halt")
    return problems


def test_iris_script_runs_the_installer_contract():
    assert script_problems(IRIS_SCRIPT.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ((RUN_LINE, RUN_LINE.replace("Run", "Setup")), "not exactly once"),
        ((' zn "AISTACK"\n', ""), "not loaded in AISTACK"),
        ((" halt\n", ""), "does not end with halt"),
        (("$system.Process.Terminate($job, 1)", "quit"), "would not fail the build"),
    ],
)
def test_script_checker_catches(change: tuple[str, str], problem: str):
    broken = IRIS_SCRIPT.read_text().replace(*change)
    assert broken != IRIS_SCRIPT.read_text()
    assert any(problem in p for p in script_problems(broken)), script_problems(broken)


def test_script_checker_catches_the_installer_before_the_load():
    text = IRIS_SCRIPT.read_text()
    swapped = text.replace(LOAD_LINE, "@@").replace(RUN_LINE, LOAD_LINE).replace("@@", RUN_LINE)
    assert "the installer runs before the classes are loaded" in script_problems(swapped)


def test_the_script_s_paths_and_installer_are_in_the_image():
    """LoadDir's folder is src/cls as the Dockerfile copies it; the installer has Run()."""
    dockerfile = IRIS_DOCKERFILE.read_text()
    assert re.search(r"^WORKDIR /opt/aistack$", dockerfile, re.M)
    assert re.search(r"^COPY \S+ src \./src$", dockerfile, re.M)
    assert re.search(r"^RUN iris start IRIS \\$", dockerfile, re.M)
    assert " && iris session IRIS < /opt/aistack/iris/iris.script \\" in dockerfile
    run = re.search(
        r'^ClassMethod Run\(namespace As %String = "(\w+)", settingsPath As %String = "(\S+)"\)',
        INSTALLER.read_text(),
        re.M,
    )
    assert run and run[1] == NAMESPACE
    settings = run[2].removeprefix("/opt/aistack/")
    assert settings != run[2] and (ROOT / settings).is_file()


# --------------------------------------------------------------------------- public paths


def public_paths() -> list[str]:
    """The path of every web application the installer creates (its dispatch classes'
    WEBAPP parameters, and the FHIR server's endpoint): what the Web Gateway must hand to
    IRIS."""
    installer = INSTALLER.read_text()
    classes = re.search(r'^Parameter DISPATCHCLASSES = "([^"]+)";', installer, re.M)
    assert classes, "the installer names no dispatch classes"
    fhir = re.search(r'^Parameter FHIRENDPOINT = "([^"]+)";', installer, re.M)
    assert fhir, "the installer names no FHIR endpoint"
    paths = [fhir[1]]
    for name in classes[1].split(","):
        source = ROOT / "src" / "cls" / (name.replace(".", "/") + ".cls")
        webapp = re.search(r'^Parameter WEBAPP = "([^"]+)";', source.read_text(), re.M)
        assert webapp, f"{name} names no WEBAPP"
        paths.append(webapp[1])
    return paths


def test_the_public_paths_are_the_standalone_ones_and_cover_the_health_checks():
    paths = public_paths()
    assert set(paths) == {
        "/covid19/api/v1",
        "/api/v2",
        "/static",
        "/v2/health",
        "/fhir/r4",
        "/icu/api/v1",
    }
    assert any(COMPOSE_READY_PATH.startswith(path + "/") for path in paths)
    gateway_check = str(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["webgateway"])
    checked = re.search(r"GET (\S+) HTTP", gateway_check)
    assert checked and any(checked[1].startswith(path + "/") for path in paths)


# --------------------------------------------------------------------------- CSP.ini


def read_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(text)
    return parser


def gateway_ini_problems(text: str, paths: list[str]) -> list[str]:
    try:
        ini = read_ini(text)
    except configparser.Error as error:
        return [f"not an INI file: {error}"]
    problems = []
    server = ini[SERVER] if ini.has_section(SERVER) else {}
    if (server.get("Ip_Address"), server.get("TCP_Port")) != (IRIS_HOST, SUPERSERVER_PORT):
        problems.append(f"server {SERVER} is not {IRIS_HOST}:{SUPERSERVER_PORT}")
    if "Username" not in server:
        problems.append(f"server {SERVER} has no Username (the entrypoint adds its password)")
    if ini.get("SYSTEM_INDEX", SERVER, fallback="") != "Enabled":
        problems.append(f"server {SERVER} is not enabled")
    if "*" in ini.get("SYSTEM", "System_Manager", fallback="*"):
        problems.append("the gateway's management pages are open to every address")
    problems += [f"[{s}] holds a password" for s in ini.sections() if "Password" in ini[s]]
    index = ini["APP_PATH_INDEX"] if ini.has_section("APP_PATH_INDEX") else {}
    routed = {s.removeprefix("APP_PATH:") for s in ini.sections() if s.startswith("APP_PATH:")}
    problems += [f"{path}: indexed, no [APP_PATH:{path}]" for path in set(index) - routed]
    for path in paths:
        if index.get(path) != "Enabled":
            problems.append(f"{path}: not enabled in APP_PATH_INDEX")
        if ini.get(f"APP_PATH:{path}", "Default_Server", fallback=None) != SERVER:
            problems.append(f"{path}: not routed to {SERVER}")
    return problems


def test_gateway_routes_every_public_path_to_iris():
    assert gateway_ini_problems(CSP_INI.read_text(), public_paths()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("Ip_Address=iris", "Ip_Address=127.0.0.1"), "is not iris:1972"),
        (("/static=Enabled", "/static=Disabled"), "/static: not enabled"),
        (("[APP_PATH:/fhir/r4]\nDefault_Server=LOCAL", "[APP_PATH:/fhir/r4]"), "/fhir/r4: not"),
        (("[APP_PATH:/api/v2]\nDefault_Server=LOCAL", "[APP_PATH:/api/v2]"), "/api/v2: not routed"),
        (("Username=CSPSystem", "Username=CSPSystem\nPassword=SYS"), "[LOCAL] holds a password"),
        (("System_Manager=127.0.0.1", "System_Manager=*.*.*.*"), "open to every address"),
        (("[APP_PATH:/static]", "[APP_PATH:/statics]"), "indexed, no [APP_PATH:/static]"),
        (("[LOCAL]", "[SYSTEM]"), "not an INI file"),
    ],
)
def test_gateway_ini_checker_catches(change: tuple[str, str], problem: str):
    broken = CSP_INI.read_text().replace(*change, 1)
    assert broken != CSP_INI.read_text()
    problems = gateway_ini_problems(broken, public_paths())
    assert any(problem in p for p in problems), problems


# --------------------------------------------------------------------------- CSP.conf


@dataclass
class ApacheBlock:
    """One ``<Tag argument>`` block with the directives directly inside it."""

    tag: str
    argument: str
    parent: ApacheBlock | None
    directives: list[str]


def apache_blocks(text: str) -> tuple[list[str], list[ApacheBlock]]:
    """(top-level directives, every block); unbalanced tags raise ValueError."""
    top: list[str] = []
    blocks: list[ApacheBlock] = []
    stack: list[ApacheBlock] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if opening := re.fullmatch(r"<(\w+)\s*(.*?)>", line):
            block = ApacheBlock(opening[1], opening[2].strip('"'), stack[-1] if stack else None, [])
            blocks.append(block)
            stack.append(block)
        elif closing := re.fullmatch(r"</(\w+)>", line):
            if not stack or stack.pop().tag != closing[1]:
                raise ValueError(f"unbalanced </{closing[1]}>")
        else:
            (stack[-1].directives if stack else top).append(line)
    if stack:
        raise ValueError(f"<{stack[-1].tag}> is never closed")
    return top, blocks


def csp_on(block: ApacheBlock) -> bool:
    return any(re.fullmatch(r"CSP\s+On", d, re.IGNORECASE) for d in block.directives)


def apache_problems(text: str, paths: list[str]) -> list[str]:
    try:
        top, blocks = apache_blocks(text)
    except ValueError as error:
        return [str(error)]
    problems = [
        f"{name} missing"
        for name in ("CSPModulePath", "CSPConfigPath")
        if not any(d.startswith(name + " ") for d in top)
    ]
    public = {b.argument for b in blocks if b.tag == "Location" and b.parent is None and csp_on(b)}
    problems += [f"{path}: not handed to the gateway" for path in paths if path not in public]
    if "/" in public:
        problems.append("every path of the public port goes to IRIS (the portal included)")
    admin = [
        b
        for b in blocks
        if b.tag == "Location"
        and b.argument == "/"
        and b.parent is not None
        and b.parent.tag == "VirtualHost"
        and b.parent.argument == f"*:{ADMIN_PORT}"
        and csp_on(b)
    ]
    if f"Listen {ADMIN_PORT}" not in top or not admin:
        problems.append(f"no administration host on {ADMIN_PORT}")
    return problems


def test_apache_hands_the_public_paths_to_the_gateway_and_the_rest_to_the_admin_port():
    assert apache_problems(CSP_CONF.read_text(), public_paths()) == []
    ports = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["webgateway"]["ports"]
    assert [p.rpartition(":")[2] for p in ports] == [ADMIN_PORT]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('<Location "/static">', '<Location "/statics">'), "/static: not handed"),
        (('<Location "/fhir/r4">', '<Location "/fhir">'), "/fhir/r4: not handed"),
        (('<Location "/api/v2">\n    CSP On', '<Location "/api/v2">\n    CSP Off'), "/api/v2"),
        (('<Location "/v2/health">', '<Location "/">'), "the portal included"),
        (("Listen 52773\n", ""), "no administration host"),
        (("</VirtualHost>\n", ""), "never closed"),
        (('CSPModulePath "', '# CSPModulePath "'), "CSPModulePath missing"),
    ],
)
def test_apache_checker_catches(change: tuple[str, str], problem: str):
    broken = CSP_CONF.read_text().replace(*change, 1)
    assert broken != CSP_CONF.read_text()
    problems = apache_problems(broken, public_paths())
    assert any(problem in p for p in problems), problems


# --------------------------------------------------------------------------- Dockerfiles


def base_images(dockerfile: str) -> list[str]:
    """The image of each FROM, with ARG defaults substituted."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))
    images = []
    for image in re.findall(r"^FROM\s+(?:--\S+\s+)?(\S+)", dockerfile, re.M):
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), image))
    return images


def pin_problems(dockerfile: str) -> list[str]:
    problems = []
    images = base_images(dockerfile)
    if not images:
        problems.append("no FROM")
    for image in images:
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if "$" in image:
            problems.append(f"{image}: an ARG without a default")
        elif not re.match(r"\d", tag):
            problems.append(f"{image}: not pinned to a version")
    return problems


def baked_secret_problems(dockerfile: str) -> list[str]:
    """ENV values stay in the image and ARG values in its history: no password in either."""
    return [
        f"{kind} {name}"
        for kind, body in re.findall(r"^(ENV|ARG)\s+(.+?)(?<!\\)$", dockerfile, re.M | re.S)
        for name in re.findall(r"(?:^|\s)([A-Za-z_]\w*)(?=[=\s]|$)", body)
        if SECRET_NAME.search(name)
    ]


@pytest.mark.parametrize("dockerfile", [IRIS_DOCKERFILE, STANDALONE_DOCKERFILE], ids=str)
def test_dockerfiles_are_pinned_and_bake_no_password(dockerfile: Path):
    text = dockerfile.read_text()
    assert pin_problems(text) == []
    assert baked_secret_problems(text) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("FROM python:latest\n", "not pinned"),
        ("FROM python\n", "not pinned"),
        ("ARG IMAGE\nFROM ${IMAGE}\n", "an ARG without a default"),
        ("ARG IMAGE=repo/iris:latest-em\nFROM ${IMAGE}\n", "not pinned"),
    ],
)
def test_pin_checker_catches(text: str, problem: str):
    assert any(problem in p for p in pin_problems(text)), pin_problems(text)


def test_secret_checker_catches_a_baked_password():
    text = "FROM x:1\nENV IRISNAMESPACE=AISTACK \\\n    IRISPASSWORD=SYS\nARG DB_SECRET\n"
    assert baked_secret_problems(text) == ["ENV IRISPASSWORD", "ARG DB_SECRET"]


def test_web_gateway_version_matches_iris():
    (iris_image,) = base_images(IRIS_DOCKERFILE.read_text())
    gateway = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["webgateway"]["image"]
    assert re.search(r"/irishealth-community:\d{4}\.\d+$", iris_image), iris_image
    assert gateway.rpartition(":")[2] == iris_image.rpartition(":")[2]


def test_iris_image_installs_the_package_and_merges_the_cpf():
    text = IRIS_DOCKERFILE.read_text()
    assert 'pip install --target /usr/irissys/mgr/python ".[iris]"' in text
    # IntegratedML's AutoML provider, in the same resolution (TRAIN MODEL needs it)
    assert re.search(
        r'"\.\[iris\]" \\\n\s+--extra-index-url \S+ intersystems-iris-automl$', text, re.M
    )
    assert "ISC_CPF_MERGE_FILE=/opt/aistack/iris/merge.cpf" in text
    assert re.search(r"^COPY \S+ iris \./iris$", text, re.M)
    assert 'ENTRYPOINT ["/bin/bash", "/opt/aistack/iris/entrypoint.sh"]' in text


@pytest.mark.parametrize("dockerfile", [IRIS_DOCKERFILE, STANDALONE_DOCKERFILE], ids=str)
def test_build_contexts_hold_what_the_dockerfile_copies_and_no_more(dockerfile: Path):
    """The context is the repository root: its own ignore file keeps .venv and data out."""
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything out, then back in by name
    kept = [line[1:] for line in ignore if line.startswith("!")]
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile.read_text(), re.M):
        for item in source.split():
            assert any(k == item or k.startswith(item + "/") for k in kept), item


# --------------------------------------------------------------------------- .env.example


def env_example_problems(text: str, compose_text: str) -> list[str]:
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", text, re.M))
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", compose_text))
    used |= set(re.findall(r"^\s+environment: ([A-Z_][A-Z0-9_]*)$", compose_text, re.M))
    problems = [f"{k} has a value" for k, v in values.items() if SECRET_NAME.search(k) and v]
    problems += [f"{name} is not in .env.example" for name in sorted(used - set(values))]
    problems += [f"{name} is used nowhere" for name in sorted(set(values) - used)]
    return problems


def test_env_example_lists_every_setting_and_no_password():
    assert env_example_problems(ENV_EXAMPLE.read_text(), COMPOSE_FILE.read_text()) == []


def test_env_example_checker_catches():
    text = ENV_EXAMPLE.read_text().replace("IRIS_PASSWORD=\n", "IRIS_PASSWORD=SYS\nSTALE=1\n")
    compose = COMPOSE_FILE.read_text() + "\n# ${NEW_SETTING}\n"
    assert env_example_problems(text, compose) == [
        "IRIS_PASSWORD has a value",
        "NEW_SETTING is not in .env.example",
        "STALE is used nowhere",
    ]


# --------------------------------------------------------------------------- entrypoints


def double(path: Path, body: str) -> Path:
    """An executable shell script standing in for a program of the image."""
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def run_entrypoint(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), "--check-caps", "false"],
        env={"PATH": os.environ["PATH"], "TMPDIR": env.pop("TMPDIR"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def iris_main(tmp_path: Path) -> tuple[Path, Path]:
    """A double of /iris-main recording its arguments, the password file's content and mode."""
    record = tmp_path / "iris-main.record"
    program = double(
        tmp_path / "iris-main",
        f"""\
        printf '%s\\n' "$@" > {record}
        stat -c %a "$2" >> {record}
        cat "$2" >> {record}
        """,
    )
    return program, record


def secret_file(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "iris_password"
    path.write_text(value)
    return path


def test_iris_entrypoint_hands_iris_main_a_private_copy_of_the_password(
    tmp_path: Path, iris_main: tuple[Path, Path]
):
    program, record = iris_main
    secret = secret_file(tmp_path, PASSWORD)
    result = run_entrypoint(
        IRIS_DIR / "entrypoint.sh",
        {
            "AISTACK_IRIS_PASSWORD_FILE": str(secret),
            "AISTACK_IRIS_MAIN": str(program),
            "TMPDIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    flag, copy, *passed, mode, content = record.read_text().split("\n", 5)
    assert (flag, passed) == ("--password-file", ["--check-caps", "false"])
    assert Path(copy).parent == tmp_path and Path(copy) != secret
    assert (mode, content) == ("600", PASSWORD)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "no IRIS password"),
        ("", "IRIS_PASSWORD is empty"),
        ("SYS", "not be IRIS's default password"),
        ("short7!", "8 to 32 printable characters"),
        ("has spaces in it", "8 to 32 printable characters"),
        ("x" * 33, "8 to 32 printable characters"),
    ],
)
def test_iris_entrypoint_refuses_a_missing_or_weak_password(
    tmp_path: Path, iris_main: tuple[Path, Path], value: str | None, says: str
):
    program, record = iris_main
    secret = tmp_path / "absent" if value is None else secret_file(tmp_path, value)
    result = run_entrypoint(
        IRIS_DIR / "entrypoint.sh",
        {
            "AISTACK_IRIS_PASSWORD_FILE": str(secret),
            "AISTACK_IRIS_MAIN": str(program),
            "TMPDIR": str(tmp_path),
        },
    )
    assert result.returncode == 64
    assert says in result.stderr
    assert not record.exists()


def gateway_env(tmp_path: Path, secret: Path) -> dict[str, str]:
    staged_copy = tmp_path / "started-with.ini"
    start = double(
        tmp_path / "startWebGateway",
        f"""\
        stat -c %a "$ISC_CSP_INI_FILE" > {tmp_path / "mode"}
        cp "$ISC_CSP_INI_FILE" {staged_copy}
        """,
    )
    return {
        "AISTACK_IRIS_PASSWORD_FILE": str(secret),
        "AISTACK_WEBGATEWAY_START": str(start),
        "AISTACK_CSP_STAGE_DIR": str(tmp_path / "stage"),
        "TMPDIR": str(tmp_path),
    }


def test_gateway_entrypoint_adds_the_password_to_the_iris_server_only(tmp_path: Path):
    secret = secret_file(tmp_path, PASSWORD)
    result = run_entrypoint(GATEWAY_DIR / "entrypoint.sh", gateway_env(tmp_path, secret))
    assert result.returncode == 0, result.stderr
    staged = (tmp_path / "started-with.ini").read_text()
    ini = read_ini(staged)
    assert ini[SERVER]["Password"] == PASSWORD
    assert [s for s in ini.sections() if "Password" in ini[s]] == [SERVER]
    without = [line for line in staged.splitlines() if not line.startswith("Password=")]
    assert without == CSP_INI.read_text().splitlines()
    assert (tmp_path / "mode").read_text().strip() == "600"


def test_gateway_entrypoint_refuses_to_start_without_a_password(tmp_path: Path):
    env = gateway_env(tmp_path, tmp_path / "absent")
    result = run_entrypoint(GATEWAY_DIR / "entrypoint.sh", env)
    assert result.returncode == 64
    assert "no IRIS password" in result.stderr
    assert not (tmp_path / "started-with.ini").exists()


# --------------------------------------------------------------------------- health check

IRIS_MODULE_DOUBLE = '''\
"""Double of IRIS's embedded-Python module: the calls iris/healthcheck.py makes.

ByRef arguments are iris.ref objects; methods return a %Status (1 is OK, else "0 ...").
IRIS_DOUBLE_STATE is the production state Ens.Director reports; IRIS_DOUBLE_ERROR an error.
"""
import os


class ref:
    def __init__(self, value=None):
        self.value = value


class _Director:
    @staticmethod
    def GetProductionStatus(name, state):
        if os.environ.get("IRIS_DOUBLE_ERROR"):
            return "0 " + os.environ["IRIS_DOUBLE_ERROR"]
        name.value, state.value = "AISTACK.Production", int(os.environ["IRIS_DOUBLE_STATE"])
        return 1


class _Status:
    @staticmethod
    def IsOK(status):
        return status == 1

    @staticmethod
    def GetErrorText(status):
        return "ERROR: " + status[2:]


def cls(name):
    return {"Ens.Director": _Director, "%SYSTEM.Status": _Status}[name]
'''


@pytest.mark.parametrize(
    ("state", "error", "code", "says"),
    [
        ("1", "", 0, "production AISTACK.Production is running"),
        ("2", "", 1, "is not running (state 2)"),
        ("4", "", 1, "is not running (state 4)"),
        ("1", "namespace AISTACK does not exist", 1, "ERROR: namespace AISTACK"),
    ],
)
def test_health_check_is_healthy_only_while_the_production_runs(
    tmp_path: Path, state: str, error: str, code: int, says: str
):
    (tmp_path / "iris.py").write_text(IRIS_MODULE_DOUBLE)
    result = subprocess.run(
        [sys.executable, str(IRIS_DIR / "healthcheck.py")],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "IRIS_DOUBLE_STATE": state}
        | ({"IRIS_DOUBLE_ERROR": error} if error else {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert says in result.stdout
