"""A test double of IRIS for Health's FHIR R4 endpoint (``/fhir/r4``): what cannot run here.

It answers the two interactions the production's ``FhirPublisher`` and its tests use, as
FHIR R4 defines them (http://hl7.org/fhir/R4/http.html):

* ``POST [base]`` with a ``transaction`` Bundle of creates: every resource is validated as
  R4 (fhir.resources), else ``400`` with an OperationOutcome, as a FHIR server refuses an
  invalid resource; a conditional create (``ifNoneExist: identifier=system|value``) makes
  nothing when one resource matches (``200 OK`` and its location), creates otherwise
  (``201 Created``, a new server-assigned id), and fails the whole transaction when several
  match (``412``). Conditions are evaluated before anything is created, all under one lock.
* ``GET [base]/[type]?identifier=system|value``: a ``searchset`` Bundle of the matches.

HTTP Basic credentials are required when given (IRIS signs the publisher in as an IRIS
user): ``401`` otherwise. What it does not do: references between entries (the one-entry
transactions sent to it have none), other search parameters, updates, history.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from tests.doubles.helpers import free_port, serve_http, stop_http

BASE_PATH = "/fhir/r4"
FHIR_JSON = "application/fhir+json"


class Refused(Exception):
    """An answer other than success: its status and an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }


@dataclass
class FhirServerDouble:
    user: str | None = None
    password: str | None = None
    port: int = field(default_factory=free_port)
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """What was created, by type, then by the server's id."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir_url(self) -> str:
        return self.url + BASE_PATH

    def matching(self, resource_type: str, token: str) -> list[dict[str, Any]]:
        """The stored resources of the type whose identifier is ``system|value``."""
        system, _, value = token.partition("|")
        return [
            resource
            for resource in self.resources.get(resource_type, {}).values()
            if any(
                i.get("system") == system and i.get("value") == value
                for i in resource.get("identifier", [])
            )
        ]

    # -- the server --------------------------------------------------------------------------

    def start(self) -> FhirServerDouble:
        self._server = serve_http(self.port, self._handle)
        return self

    def close(self) -> None:
        stop_http(self._server)
        self._server = None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        url = urlsplit(request.path)
        try:
            self._authorize(request.headers.get("Authorization", ""))
            if request.command == "POST" and url.path == BASE_PATH:
                status, answer = 200, self._transaction(_json(body))
            elif request.command == "GET" and url.path.startswith(BASE_PATH + "/"):
                status, answer = 200, self._search(url.path, parse_qsl(url.query))
            else:
                raise Refused(404, "not-supported", f"{request.command} {url.path}")
        except Refused as refused:
            status, answer = refused.status, refused.outcome
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", FHIR_JSON)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _authorize(self, header: str) -> None:
        if self.user is None:
            return
        expected = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        if header != f"Basic {expected}":
            raise Refused(401, "login", "sign in as an IRIS user")

    def _transaction(self, bundle: Any) -> dict[str, Any]:
        if not (isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle"):
            raise Refused(400, "invalid", "the body is not a Bundle")
        if bundle.get("type") != "transaction":
            raise Refused(400, "invalid", f"Bundle.type {bundle.get('type')!r} is not transaction")
        entries = bundle.get("entry", [])
        for index, entry in enumerate(entries):
            _check_create(index, entry)
        with self._lock:
            existing = [self._condition(entry) for entry in entries]  # before any create
            responses = [
                {"status": "200 OK", "location": _location(found)}
                if found is not None
                else {"status": "201 Created", "location": _location(self._create(entry))}
                for entry, found in zip(entries, existing, strict=True)
            ]
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": response} for response in responses],
        }

    def _condition(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        query = entry["request"].get("ifNoneExist")
        if query is None:
            return None
        criteria = parse_qsl(query)
        if [name for name, _ in criteria] != ["identifier"]:
            raise Refused(400, "not-supported", f"ifNoneExist {query!r}: identifier only")
        found = self.matching(entry["request"]["url"], criteria[0][1])
        if len(found) > 1:
            raise Refused(412, "duplicate", f"ifNoneExist {query!r} matches {len(found)}")
        return found[0] if found else None

    def _create(self, entry: dict[str, Any]) -> dict[str, Any]:
        sent = entry["resource"]
        meta = {**sent.get("meta", {}), "versionId": "1"}
        resource = {**sent, "id": uuid.uuid4().hex, "meta": meta}
        self.resources.setdefault(resource["resourceType"], {})[resource["id"]] = resource
        return resource

    def _search(self, path: str, parameters: list[tuple[str, str]]) -> dict[str, Any]:
        resource_type = path.removeprefix(BASE_PATH + "/")
        if [name for name, _ in parameters] != ["identifier"]:
            raise Refused(400, "not-supported", "search by identifier only")
        with self._lock:
            found = self.matching(resource_type, parameters[0][1])
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"fullUrl": _location(r), "resource": r} for r in found],
        }


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise Refused(400, "structure", f"not JSON: {error}") from None


def _check_create(index: int, entry: Any) -> None:
    """A create of a valid R4 resource, or the transaction is refused."""
    request = entry.get("request") if isinstance(entry, dict) else None
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(request, dict) or not isinstance(resource, dict):
        raise Refused(400, "invalid", f"entry {index} needs a request and a resource")
    kind = resource.get("resourceType")
    if request.get("method") != "POST" or request.get("url") != kind:
        raise Refused(400, "not-supported", f"entry {index}: only POST [type] (create)")
    try:
        get_fhir_model_class(str(kind)).model_validate(resource)
    except (KeyError, ValueError, ValidationError) as error:
        raise Refused(400, "invalid", f"entry {index}: not a valid {kind}: {error}") from None


def _location(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}/_history/1"
