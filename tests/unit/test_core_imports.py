"""The core and the IRIS runtime import no web framework.

The IRIS runtime answers HTTP through IRIS's Web Gateway and ``%CSP.REST``; only the
standalone runtime (``aistack.api``) runs on FastAPI. Each check imports modules in a fresh
interpreter (this test process has imported FastAPI long since) and names the files on the
way to any framework that got imported, so a failure says who dragged it in.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
IRIS_RUNTIME = (
    "aistack.interop.rest",
    "aistack.interop.settings",
    "aistack.interop.services",
    "aistack.interop.process",
    "aistack.interop.operations",
    "aistack.interop.wiring",
    "aistack.interop.fhir_operation",
    "aistack.interop.icu",
    "aistack.interop.icu_setup",
)
CORE = (
    "aistack.xray.service",
    "aistack.xray.schemas",
    "aistack.xray.request_body",
    "aistack.xray.files",
    "aistack.store.jobs",
    "aistack.inference.router",
    "aistack.auth.keys",
    "aistack.http_contract",
    "aistack.imaging.dicom",
    "aistack.fhir.resources",
    "aistack.fhir.publish",
    "aistack.fhir.transaction",
    "aistack.fhir.search",
    "aistack.icu.predictor",
    "aistack.icu.service",
    "aistack.icu.bodies",
    "aistack.icu.columns",
    "aistack.fhir.risk",
)

WITNESS = """
import importlib, json, sys, traceback

watched, modules = sys.argv[1].split(","), sys.argv[2:]
first_asked_by = {}


class Witness:
    # Notes who first imports a watched package, and lets the import go on.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in watched and top not in first_asked_by:
            stack = traceback.extract_stack()[:-1]
            first_asked_by[top] = [
                f"{frame.filename.rsplit('/aistack/', 1)[1]}:{frame.lineno}"
                for frame in stack
                if "/aistack/" in frame.filename
            ]
        return None


sys.meta_path.insert(0, Witness())
for module in modules:
    importlib.import_module(module)
print(json.dumps({name: first_asked_by.get(name) for name in watched if name in sys.modules}))
"""


def frameworks_imported_by(*modules: str) -> dict[str, list[str]]:
    """Web frameworks in ``sys.modules`` after importing ``modules`` in a new interpreter,
    each with the aistack files (``path:line``) on the way to it, outermost first."""
    done = subprocess.run(
        [sys.executable, "-c", WITNESS, ",".join(WEB_FRAMEWORKS), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", IRIS_RUNTIME + CORE)
def test_importing_imports_no_web_framework(module):
    assert frameworks_imported_by(module) == {}


def test_the_check_sees_a_framework_and_who_imported_it():
    found = frameworks_imported_by("aistack.api.context")
    assert set(found) == {"starlette"}
    assert found["starlette"][-1].startswith("api/context.py:")
    assert {"fastapi", "starlette"} <= set(frameworks_imported_by("aistack.api.app"))
