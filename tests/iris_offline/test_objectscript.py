"""The ObjectScript side of the IRIS runtime (src/cls), checked without IRIS.

Every class is parsed with tree-sitter-objectscript (UDL, the class-file syntax); an ERROR
or MISSING node anywhere fails, named by file and line. The parse tree then gives the
structure that IRIS would only reveal at run time: each UrlMap route calls a class method
that exists and hands its path arguments on, each route has a twin (path and method) in
the standalone service's OpenAPI document and passes Python that twin's operation, the
classes and aistack.interop.rest agree on the call and the reply, the installer creates a
web application for each dispatch class, the errors the classes write themselves use the
standalone's codes, the installer's Python method runs, and its ICU step calls Python that
exists.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_objectscript
from tree_sitter import Language, Node, Parser

from aistack.api.app import create_app
from aistack.api.errors import CODE_FOR_STATUS
from aistack.config import Settings
from aistack.interop import rest
from aistack.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
CLASS_DIR = ROOT / "src" / "cls"
CLASS_FILES = sorted(CLASS_DIR.rglob("*.cls"))
BASE = "AIStack.REST.Base"
INSTALLER = "AIStack.Installer"
STANDALONE_NAME = {
    "static_file": "get_stored_file",
    "oip_live": "oip_server_live",
    "oip_ready": "oip_server_ready",
}
"""The Python layer's names for the three routes whose standalone operation id differs;
every other route passes Python its standalone twin's operation id."""
IMAGE_ROOT = "/opt/aistack/"
"""Where the container holds the repository (iris/Dockerfile); the installer's default
settings path lies under it."""


# -- parsing -------------------------------------------------------------------------------

PARSER = Parser(Language(tree_sitter_objectscript.language_objectscript()))


@dataclass(frozen=True)
class SyntaxProblem:
    line: int
    column: int
    kind: str  # ERROR, or "missing <token>"
    text: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.kind} near {self.text!r}"


def parse(source: bytes) -> Node:
    return PARSER.parse(source).root_node


def syntax_problems(root: Node) -> list[SyntaxProblem]:
    """Every ERROR node and every token the parser had to invent (MISSING)."""
    found = []
    for node in walk(root):
        if node.type == "ERROR" or node.is_missing:
            kind = f"missing {node.type!r}" if node.is_missing else "ERROR"
            text = node.text.decode(errors="replace").splitlines()[0][:60] if node.text else ""
            found.append(
                SyntaxProblem(node.start_point.row + 1, node.start_point.column + 1, kind, text)
            )
    return found


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def first(node: Node, *types: str) -> Node | None:
    """The first descendant (depth first, the node itself included) of one of ``types``."""
    return next((n for n in walk(node) if n.type in types), None)


def text(node: Node | None) -> str:
    return node.text.decode() if node is not None and node.text is not None else ""


def literal(node: Node | None) -> str:
    """A string literal's value ("" doubles a quote in ObjectScript), or a number's text."""
    value = text(node)
    if node is not None and node.type == "string_literal":
        return value[1:-1].replace('""', '"')
    return value


# -- the class model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Argument:
    name: str
    default: str | None


@dataclass(frozen=True)
class Method:
    name: str
    arguments: tuple[Argument, ...]
    python: bool
    node: Node

    @property
    def line(self) -> int:
        return self.node.start_point.row + 1

    def body(self) -> str:
        """The code between the method's braces (a Python method's source)."""
        return text(first(self.node, "external_method_body_content"))


@dataclass(frozen=True)
class ClassDefinition:
    path: Path
    name: str
    superclasses: tuple[str, ...]
    parameters: dict[str, str]
    methods: dict[str, Method]
    xdata: dict[str, str]


def read_class(path: Path) -> ClassDefinition:
    root = parse(path.read_bytes())
    definition = first(root, "class_definition")
    assert definition is not None, f"{path}: no class definition"
    extends = next((c for c in definition.children if c.type == "class_extends"), None)
    superclasses = (
        tuple(text(n) for n in walk(extends) if n.type == "identifier") if extends else ()
    )
    body = next(c for c in definition.children if c.type == "class_body")
    parameters, methods, xdata = {}, {}, {}
    for statement in (c for c in body.children if c.type == "class_statement"):
        member = statement.children[0]
        if member.type == "parameter":
            value = next((c for c in member.children if c.type == "default_argument_value"), None)
            constant = first(value, "string_literal", "numeric_literal") if value else None
            parameters[text(first(member, "parameter_name"))] = literal(constant)
        elif member.type in ("classmethod", "method"):
            method = read_method(member)
            methods[method.name] = method
        elif member.type == "xdata":
            xdata[text(first(member, "xdata_name"))] = text(
                first(member, "external_method_body_content")
            )
    return ClassDefinition(
        path, text(first(definition, "class_name")), superclasses, parameters, methods, xdata
    )


def read_method(member: Node) -> Method:
    definition = first(member, "method_definition")
    assert definition is not None
    arguments = []
    signature = next((c for c in definition.children if c.type == "arguments"), None)
    for argument in (c for c in signature.children if c.type == "argument") if signature else ():
        default = next((c for c in argument.children if c.type == "default_argument_value"), None)
        constant = first(default, "string_literal", "numeric_literal") if default else None
        name = text(first(argument, "objectscript_identifier"))
        arguments.append(Argument(name, literal(constant) if constant else None))
    keywords = first(definition, "external_method_keywords")
    python = keywords is not None and "python" in text(keywords).lower()
    return Method(
        text(first(definition, "method_name")),
        tuple(arguments),
        python,
        member if member.type == "classmethod" else definition,
    )


@cache
def classes() -> dict[str, ClassDefinition]:
    return {c.name: c for c in map(read_class, CLASS_FILES)}


def ancestry(name: str) -> list[ClassDefinition]:
    """The class and its superclasses found under src/cls, nearest first."""
    chain, pending = [], [name]
    while pending:
        current = classes().get(pending.pop(0))
        if current is not None:
            chain.append(current)
            pending.extend(current.superclasses)
    return chain


def resolve_method(class_name: str, method: str) -> Method | None:
    return next((c.methods[method] for c in ancestry(class_name) if method in c.methods), None)


def resolve_parameter(class_name: str, parameter: str) -> str | None:
    return next(
        (c.parameters[parameter] for c in ancestry(class_name) if parameter in c.parameters), None
    )


def dispatch_classes() -> list[ClassDefinition]:
    """Classes that serve a web application: a WEBAPP path of their own."""
    return [c for c in classes().values() if c.parameters.get("WEBAPP")]


@dataclass(frozen=True)
class Route:
    owner: ClassDefinition
    url: str
    method: str
    call: str

    @property
    def public_path(self) -> str:
        return self.owner.parameters["WEBAPP"] + self.url

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r":([A-Za-z0-9_]+)", self.url)

    def __str__(self) -> str:
        return f"{self.owner.name}: {self.method} {self.url} -> {self.call}"


def routes() -> list[Route]:
    found = []
    for owner in dispatch_classes():
        urlmap = ElementTree.fromstring(owner.xdata["UrlMap"].strip())
        for route in urlmap.iter("Route"):
            found.append(
                Route(owner, route.get("Url", ""), route.get("Method", ""), route.get("Call", ""))
            )
    return found


@dataclass(frozen=True)
class PythonCall:
    operation: str
    passed: tuple[str, ...]  # the variables passed after the operation


def python_calls(method: Method) -> list[PythonCall]:
    """The method's calls of ..Answer(operation, path arguments...)."""
    calls = []
    for node in walk(method.node):
        if node.type != "relative_dot_method" or text(first(node, "method_name")) != "Answer":
            continue
        arguments = first(node, "method_args")
        values = [c for c in arguments.children if c.type == "method_arg"] if arguments else []
        operation = first(values[0], "string_literal") if values else None
        passed = tuple(text(first(v, "objectscript_identifier")) for v in values[1:])
        calls.append(PythonCall(literal(operation) if operation else "", passed))
    return calls


def template(path: str) -> str:
    """A path with its parameters unnamed: /x/:id and /x/{job_id} both give /x/{}."""
    return re.sub(r"\{[^}/]+\}", "{}", re.sub(r":[A-Za-z0-9_]+", "{}", path))


@pytest.fixture(scope="module")
def standalone_operations(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """(METHOD, path template) → operationId, from the standalone app's own document."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("openapi"))
    document = create_app(settings, Runtime(settings)).openapi()
    return {
        (method.upper(), template(path)): operation["operationId"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


# -- syntax ----------------------------------------------------------------------------------


def test_the_classes_of_the_iris_runtime_are_all_there():
    assert {BASE, INSTALLER, "AIStack.REST.V1", "AIStack.REST.V2"} <= set(classes())
    for definition in classes().values():
        relative = definition.path.relative_to(CLASS_DIR).with_suffix("")
        assert definition.name == ".".join(relative.parts), (
            f"{definition.path}: class {definition.name} must live at its package path"
        )


@pytest.mark.parametrize("path", CLASS_FILES, ids=lambda p: str(p.relative_to(CLASS_DIR)))
def test_class_parses_without_errors(path: Path):
    problems = syntax_problems(parse(path.read_bytes()))
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(map(str, problems))


VALID = """Class Demo.Valid Extends %CSP.REST
{{

ClassMethod Ping(name As %String = "") As %Status
{{
{body}
}}

}}
"""


@pytest.mark.parametrize(
    ("body", "line", "kind"),
    [
        ("    sett reply = 1\n    quit $$$OK", 6, "ERROR"),
        ('    set reply = ..Answer("v1_predict"\n    quit $$$OK', 7, "missing ')'"),
        ('    write "unterminated\n    quit $$$OK', 6, "ERROR"),
        ('    set body = {"error": }\n    quit $$$OK', 6, "ERROR"),
        ("    set reply = 1 }\n    quit $$$OK", 6, "ERROR"),
    ],
    ids=["unknown-command", "unclosed-call", "unterminated-string", "bad-json", "stray-brace"],
)
def test_the_syntax_check_reports_broken_code_with_its_line(body: str, line: int, kind: str):
    problems = syntax_problems(parse(VALID.format(body=body).encode()))
    assert any(p.line == line and p.kind == kind for p in problems), [str(p) for p in problems]


def test_the_syntax_check_reports_a_misspelt_class_member():
    source = b"Class Demo.Typo\n{\n\nClasMethod Ping() As %Status\n{\n    quit 1\n}\n\n}\n"
    assert 4 in [p.line for p in syntax_problems(parse(source))]


def test_the_syntax_check_passes_the_same_method_written_correctly():
    body = '    set reply = "pong"_name\n    if name = "" {\n        set name = "world"\n    }\n'
    assert syntax_problems(parse(VALID.format(body=body + "    quit $$$OK").encode())) == []


# -- routes ------------------------------------------------------------------------------------


def test_the_dispatch_classes_extend_the_base_and_keep_its_http_settings():
    settings = {
        "HandleCorsRequest": "0",
        "UseSession": "0",
        "CHARSET": "utf-8",
        "CONTENTTYPE": "application/json",
        "CONVERTINPUTSTREAM": "0",
        "HANDLER": "aistack.interop.rest",
    }
    base = classes()[BASE]
    assert {k: base.parameters.get(k) for k in settings} == settings
    assert base.superclasses == ("%CSP.REST",)
    assert len(dispatch_classes()) >= 4
    for owner in dispatch_classes():
        assert BASE in [c.name for c in ancestry(owner.name)], owner.name
        assert {k: resolve_parameter(owner.name, k) for k in settings} == settings, owner.name
        assert "UrlMap" in owner.xdata, owner.name


def test_every_route_calls_a_class_method_that_hands_its_path_arguments_to_python():
    assert routes()
    for route in routes():
        method = resolve_method(route.owner.name, route.call)
        assert method is not None, f"{route}: no method {route.call} in the class or its base"
        assert method.node.type == "classmethod", f"{route}: {route.call} must be a ClassMethod"
        assert [a.name for a in method.arguments] == route.path_parameters, (
            f"{route}: the method's arguments must be the URL's parameters, in order"
        )
        calls = python_calls(method)
        assert len(calls) == 1, f"{route}: {route.call} must call ..Answer once, not {len(calls)}"
        assert calls[0].passed == tuple(route.path_parameters), (
            f"{route}: pass every path argument to Python, in order"
        )


def test_every_route_has_a_twin_in_the_standalone_service(standalone_operations):
    for route in routes():
        key = (route.method.upper(), template(route.public_path))
        assert key in standalone_operations, (
            f"{route}: the standalone service has no {key[0]} {route.public_path}"
        )
        operation = python_calls(resolve_method(route.owner.name, route.call))[0].operation
        assert STANDALONE_NAME.get(operation, operation) == standalone_operations[key], (
            f"{route}: passes {operation!r}, but the standalone twin is "
            f"{standalone_operations[key]!r}"
        )


def test_python_is_asked_only_for_the_operations_it_answers():
    used = [
        call.operation
        for owner in classes().values()
        for method in owner.methods.values()
        for call in python_calls(method)
    ]
    assert len(used) == len(set(used)), "each operation has one route"
    assert set(used) == set(rest.ROUTES)


def test_python_takes_the_arguments_and_gives_the_reply_the_classes_use():
    parameters = list(inspect.signature(rest.handle).parameters.values())
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["operation", "request", "username", "roles"]
    assert parameters[-1].kind is inspect.Parameter.VAR_POSITIONAL  # the path arguments
    send = classes()[BASE].methods["SendReply"]
    read = {
        text(first(segment, "identifier", "objectscript_identifier"))
        for chain in walk(send.node)
        if chain.type == "oref_chain_expr" and text(first(chain, "lvn")) == "reply"
        for segment in chain.children
        if segment.type == "oref_chain_segment"
    }
    assert read == {"status_line", "content_type", "headers_json", "body", "file_path"}
    reply = rest.Reply(201, headers={"Location": "/x"}, body="{}")
    assert {name: getattr(reply, name) for name in sorted(read)} == {
        "body": "{}",
        "content_type": "application/json",
        "file_path": "",
        "headers_json": '{"Location":"/x"}',
        "status_line": "201 Created",
    }


def test_no_two_routes_share_a_public_path_and_method():
    keys = [(r.method.upper(), template(r.public_path)) for r in routes()]
    assert len(keys) == len(set(keys))


# -- errors written by the classes themselves --------------------------------------------------


def test_errors_raised_by_iris_use_the_standalone_codes():
    method = classes()[BASE].methods["ErrorCodeFor"]
    case = first(method.node, "system_defined_function")
    assert case is not None and text(case).lower().startswith("$case(")
    table = {
        int(text(first(pair.children[0], "numeric_literal"))): literal(
            first(pair.children[2], "string_literal")
        )
        for pair in case.children
        if pair.type == "dollar_arg_pair" and pair.children[0].type == "expression"
    }
    assert table == CODE_FOR_STATUS
    fallback = text(case.children[-2])
    assert '"bad_request"' in fallback and '"internal_error"' in fallback


def test_the_internal_error_message_is_the_standalone_one():
    assert classes()[BASE].parameters["INTERNALMESSAGE"] == "internal error; see the server log"


# -- the installer -------------------------------------------------------------------------


def test_the_installer_creates_one_web_application_per_dispatch_class():
    installer = classes()[INSTALLER]
    listed = installer.parameters["DISPATCHCLASSES"].split(",")
    assert sorted(listed) == sorted(c.name for c in dispatch_classes())
    paths = [c.parameters["WEBAPP"] for c in dispatch_classes()]
    assert len(paths) == len(set(paths))
    assert all(p.startswith("/") and not p.endswith("/") for p in paths), paths
    # Password (32) and Unauthenticated (64): the classes, not IRIS, answer 401.
    assert installer.parameters["AUTHENTICATION"] == "96"


def test_the_installer_runs_with_the_documented_defaults():
    run = classes()[INSTALLER].methods["Run"]
    assert [(a.name, a.default) for a in run.arguments] == [
        ("namespace", "AISTACK"),
        ("settingsPath", "/opt/aistack/src/python/aistack/interop/settings.py"),
    ]
    in_repository = ROOT / run.arguments[1].default.removeprefix(IMAGE_ROOT)
    assert in_repository.is_file(), f"the default settings path has no file {in_repository}"


def test_the_installer_reads_roles_the_python_layer_knows():
    from aistack.interop.rest import IRIS_ROLES  # noqa: PLC0415 - the layer under test's peer

    roles = classes()[INSTALLER].parameters["USERROLES"].split(",")
    assert set(roles) == set(IRIS_ROLES)


def python_method(owner: str, name: str) -> Any:
    """A method written in Python, as a function of its arguments (as IRIS runs it)."""
    method = classes()[owner].methods[name]
    assert method.python, f"{owner}.{name} is not a Python method"
    source = f"def {name}({', '.join(a.name for a in method.arguments)}):\n"
    source += textwrap.indent(textwrap.dedent(method.body()).strip("\n"), "    ") + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"{owner}.{name}", "exec"), namespace)
    return namespace[name]


def test_every_python_method_compiles():
    compiled = [
        python_method(owner.name, method.name)
        for owner in classes().values()
        for method in owner.methods.values()
        if method.python
    ]
    assert compiled, "the installer reads settings.py in Python"


def test_production_names_reads_typed_and_legacy_settings(tmp_path):
    production_names = python_method(INSTALLER, "ProductionNames")
    typed = tmp_path / "typed" / "settings.py"
    typed.parent.mkdir()
    (typed.parent / "helpers.py").write_text("NAME = 'Demo.Production'\n")
    typed.write_text(
        "from helpers import NAME  # beside settings.py, as IoP imports it\n"
        "from iop import Production\n"
        "PRODUCTIONS = [Production(NAME), Production('Demo.Other')]\n"
    )
    assert production_names(str(typed)) == "Demo.Production,Demo.Other"
    legacy = tmp_path / "legacy.py"
    legacy.write_text("PRODUCTIONS = [{'Legacy.Production': {'Item': []}}]\n")
    assert production_names(str(legacy)) == "Legacy.Production"
    (tmp_path / "none.py").write_text("CLASSES = {}\n")
    assert production_names(str(tmp_path / "none.py")) == ""


def test_the_production_set_to_start_is_the_one_settings_py_declares():
    from aistack.interop import settings  # noqa: PLC0415 - IoP's graph, imported offline

    default = classes()[INSTALLER].methods["Run"].arguments[1].default
    path = ROOT / default.removeprefix(IMAGE_ROOT)
    names = python_method(INSTALLER, "ProductionNames")(str(path)).split(",")
    assert names[0] == settings.PRODUCTIONS[0].name


def test_the_installer_trains_the_icu_model_through_python_it_can_import():
    """EnsureIcuModel (run by Run, and by docker-compose.yml after each start) calls a Python
    function that exists, reads only what it returns, and can be called from outside."""
    installer = classes()[INSTALLER]
    method = installer.methods["EnsureIcuModel"]
    assert [(a.name, a.default) for a in method.arguments] == [("namespace", "AISTACK")]
    source = text(method.node)
    assert "[ Private ]" not in source.splitlines()[0], "iris-main -a calls it from outside"
    module = re.search(r'##class\(%SYS\.Python\)\.Import\("([\w.]+)"\)', source)
    function = re.search(r'set result = setup\."(\w+)"\(\)', source)
    assert module and function
    ensure = getattr(importlib.import_module(module[1]), function[1])
    read = set(re.findall(r"result\.([A-Za-z]+)", source))
    assert read == {"status", "message"}
    result = ensure(workbook="")  # no workbook: the step that runs while the image is built
    assert read <= {f.name for f in fields(result)} and result.status == "skipped"
    assert "..EnsureIcuModel(namespace)" in text(installer.methods["Run"].node)
