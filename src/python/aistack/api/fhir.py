"""The FHIR R4 facade at ``/fhir/r4``: the resource store's read, search and transactions.

``application/fhir+json`` in and out. Every error under ``/fhir/`` is an OperationOutcome with
the status the rest of the service would answer: the service's own error handlers run first
and their answer is re-worded (:func:`install_fhir_errors`), and errors sent before routing
(body limits) are re-worded on their way out (:class:`FhirErrorBodies`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aistack import __version__
from aistack.api.deps import get_runtime
from aistack.api.openapi import STATUS_HEADERS, STATUS_TEXT
from aistack.api.security import authorize
from aistack.auth.keys import Permission, Principal
from aistack.errors import AistackError, InvalidJson, NotFound, UnsupportedMediaType
from aistack.fhir.capability import capability_statement
from aistack.fhir.r4 import FHIR_ID
from aistack.fhir.resource_store import FHIR_BASE_PATH, SearchPage, StoredResource
from aistack.fhir.search import (
    MAX_OFFSET,
    MAX_VALUE_CHARS,
    PARAMETERS,
    RESULT_PARAMETERS,
    SUPPORTED_TYPES,
    Parameter,
    SearchQuery,
    parse_search,
)
from aistack.fhir.transaction import (
    EntryResult,
    PreconditionFailed,
    etag,
    parse_transaction,
    run_transaction,
    transaction_response,
)
from aistack.logs import log_event
from aistack.runtime import Runtime
from aistack.xray.request_body import media_type

FHIR_JSON = "application/fhir+json"
ACCEPTED_BODIES = (FHIR_JSON, "application/json")
ERROR_SYSTEM = "urn:aistack:error"
"""The service's stable error code rides in OperationOutcome.issue.details."""
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    408: "timeout",
    412: "multiple-matches",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
    504: "timeout",
}
"""FHIR IssueType by HTTP status (anything else: ``exception``)."""

router = APIRouter(prefix=FHIR_BASE_PATH, tags=["fhir"])
may_read = authorize(Permission.READ_ALL, action="read FHIR resources")
may_write = authorize(Permission.ADMIN, action="write FHIR resources")
STARTED = datetime.now(UTC)


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def is_fhir_path(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


def base_url(runtime: Runtime) -> str:
    return runtime.links.url(FHIR_BASE_PATH)


# --- OperationOutcome -----------------------------------------------------------------------


def outcome_json(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": ISSUE_TYPES.get(status, "exception"),
                "details": {"coding": [{"system": ERROR_SYSTEM, "code": code}]},
                "diagnostics": message,
            }
        ],
    }


def as_outcome(response: Response) -> Response:
    """The service's error response ``{"error": {code, message}}`` as an OperationOutcome,
    with the same status and headers; any other response unchanged."""
    if response.status_code < 400 or response.media_type == FHIR_JSON:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return response
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("content-length", "content-type")
    }
    return FhirResponse(
        outcome_json(response.status_code, code, message), response.status_code, headers
    )


def install_fhir_errors(app: FastAPI) -> None:
    """Under ``/fhir/``, the service's error handlers answer in OperationOutcomes.

    Call after :func:`aistack.api.errors.install_error_handlers`: each of its handlers is
    wrapped, so statuses, codes, messages, headers and logs stay the same everywhere.
    """
    for kind in (AistackError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _scoped(app.exception_handlers[kind]))

    @app.exception_handler(PreconditionFailed)
    async def on_precondition_failed(request: Request, error: PreconditionFailed) -> Response:
        log_event("request_failed", path=request.url.path, status=412, code="precondition_failed")
        return FhirResponse(outcome_json(412, "precondition_failed", str(error)), 412)


def _scoped(handler: Any) -> Any:
    async def scoped(request: Request, error: Exception) -> Response:
        response = await handler(request, error)
        return as_outcome(response) if is_fhir_path(request.url.path) else response

    return scoped


class FhirErrorBodies:
    """Re-words errors that middleware sent before routing (413, 408, 503) on FHIR paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def reword(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                content_type = MutableHeaders(raw=message["headers"]).get("content-type", "")
                if message["status"] >= 400 and content_type.startswith("application/json"):
                    held = message  # an error in the service's JSON: wait for its body
                    return
            elif held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                original = Response(b"".join(chunks), held["status"], media_type=None)
                original.raw_headers = list(held["headers"])
                reworded = as_outcome(original)
                await send(
                    {
                        "type": "http.response.start",
                        "status": reworded.status_code,
                        "headers": reworded.raw_headers,
                    }
                )
                await send({"type": "http.response.body", "body": bytes(reworded.body)})
                return
            await send(message)

        await self.app(scope, receive, reword)


# --- What the OpenAPI document says ---------------------------------------------------------
# Shapes for the document only (responses are built as FHIR JSON); names are FHIR's elements.


class Coding(BaseModel):
    system: str
    code: str


class IssueDetails(BaseModel):
    coding: list[Coding]


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR IssueType: invalid, login, forbidden, not-found...")
    details: IssueDetails = Field(description=f"the service's error code ({ERROR_SYSTEM})")
    diagnostics: str


class OperationOutcome(BaseModel):
    """Every error under /fhir/r4 (FHIR R4 OperationOutcome)."""

    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue] = Field(min_length=1)


class ResourceMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    versionId: str
    lastUpdated: str


class FhirResource(BaseModel):
    """A stored FHIR R4 resource, as it was created (with id and meta)."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal[SUPPORTED_TYPES]
    id: str
    meta: ResourceMeta


class BundleLink(BaseModel):
    relation: Literal["self", "next", "previous"]
    url: str


class EntrySearch(BaseModel):
    mode: Literal["match"]


class SearchEntry(BaseModel):
    fullUrl: str
    resource: FhirResource
    search: EntrySearch


class SearchsetBundle(BaseModel):
    """A page of search results: ``total`` counts all pages; follow ``link`` next/previous."""

    resourceType: Literal["Bundle"]
    type: Literal["searchset"]
    total: int
    link: list[BundleLink]
    entry: list[SearchEntry] | None = Field(None, description="absent on an empty page")


class EntryResponse(BaseModel):
    status: Literal["201 Created", "200 OK"] = Field(
        description="201: created; 200: ifNoneExist found it, nothing was created"
    )
    location: str
    etag: str
    lastModified: str


class TransactionResponseEntry(BaseModel):
    response: EntryResponse


class TransactionResponseBundle(BaseModel):
    """One entry per request entry, in the same order."""

    resourceType: Literal["Bundle"]
    type: Literal["transaction-response"]
    entry: list[TransactionResponseEntry] | None = None


class CapabilityStatement(BaseModel):
    """FHIR R4 CapabilityStatement of this facade."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["CapabilityStatement"]
    fhirVersion: Literal["4.0.1"]


TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"const": "transaction"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["fullUrl", "resource", "request"],
                "properties": {
                    "fullUrl": {"type": "string", "description": "urn:uuid:... for references"},
                    "resource": {
                        "type": "object",
                        "required": ["resourceType"],
                        "properties": {"resourceType": {"enum": list(SUPPORTED_TYPES)}},
                        "description": "a valid FHIR R4 resource passing the project's checks",
                    },
                    "request": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"const": "POST"},
                            "url": {"enum": list(SUPPORTED_TYPES)},
                            "ifNoneExist": {
                                "type": "string",
                                "description": "search query, e.g. identifier=system|value",
                            },
                        },
                    },
                },
            },
        },
    },
}
FHIR_STATUS_TEXT = {
    **STATUS_TEXT,
    400: "malformed request: unknown search parameter (search is strict), invalid value, "
    "not JSON, not a transaction Bundle",
    404: "no such resource type or id",
    412: "an ifNoneExist query matched several resources",
    415: f"the body is not {' or '.join(ACCEPTED_BODIES)}",
    422: "a well-formed Bundle the store cannot take: invalid R4 resource, unsupported entry",
}


def outcome_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``statuses`` as OperationOutcomes."""
    return {
        status: {
            "model": OperationOutcome,
            "description": FHIR_STATUS_TEXT[status],
            **({"headers": STATUS_HEADERS[status]} if status in STATUS_HEADERS else {}),
        }
        for status in statuses
    }


AUTH_ERRORS = (401, 403, 429)


def search_parameters(resource_type: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a type's search: the patterns and bounds
    :mod:`aistack.fhir.search` checks values against, so that the two cannot disagree."""
    documented = [_documented(parameter) for parameter in PARAMETERS[resource_type].values()]
    documented += [
        {
            "name": "_count",
            "in": "query",
            "required": False,
            "description": "entries per page (default 20; above 100 gives 100; 0: total only)",
            "schema": {"type": "integer", "minimum": 0},
        },
        {
            "name": "_offset",
            "in": "query",
            "required": False,
            "description": "entries to skip (the next and previous links carry it)",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        },
    ]
    return documented


def _documented(parameter: Parameter) -> dict[str, Any]:
    value = {"type": "string", "maxLength": MAX_VALUE_CHARS, "pattern": f"^{parameter.pattern}$"}
    documented: dict[str, Any] = {
        "name": parameter.name,
        "in": "query",
        "required": False,
        "description": parameter.documentation,
        "schema": value,
    }
    if parameter.max_repeats > 1:
        documented["description"] += f" (at most {parameter.max_repeats}: all must match)"
        documented["schema"] = {"type": "array", "maxItems": parameter.max_repeats, "items": value}
        documented |= {"style": "form", "explode": True}
    return documented


# --- Routes ---------------------------------------------------------------------------------


@router.get(
    "/metadata",
    operation_id="fhir_capabilities",
    response_class=FhirResponse,
    responses={200: {"model": CapabilityStatement, "description": "what the facade supports"}},
)
async def capabilities(runtime: Runtime = Depends(get_runtime)) -> FhirResponse:
    """The CapabilityStatement: resource types, interactions, search parameters (open)."""
    return FhirResponse(capability_statement(base_url(runtime), __version__, STARTED))


@router.post(
    "",
    operation_id="fhir_transaction",
    response_class=FhirResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {kind: {"schema": TRANSACTION_SCHEMA} for kind in ACCEPTED_BODIES},
        }
    },
    responses={200: {"model": TransactionResponseBundle, "description": "all stored"}}
    | outcome_responses(*AUTH_ERRORS, 400, 408, 412, 413, 415, 422, 503),
)
async def transaction(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_write),
) -> FhirResponse:
    """A transaction Bundle of creates (conditional with ``ifNoneExist``): all or nothing;
    references between entries become the stored ids. Repeating it creates nothing new."""
    if media_type(request.headers.get("content-type", "")) not in ACCEPTED_BODIES:
        raise UnsupportedMediaType(f"send the Bundle as {' or '.join(ACCEPTED_BODIES)}")
    try:
        body = json.loads(await request.body(), parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidJson(f"the body is not JSON: {str(error)[:120]}") from None
    base = base_url(runtime)
    results = await run_in_threadpool(_run, runtime, body, base)
    return FhirResponse(transaction_response(results, base))


def _run(runtime: Runtime, body: Any, base: str) -> list[EntryResult]:
    try:
        return run_transaction(runtime.fhir_store, parse_transaction(body, base))
    except RecursionError:  # JSON nested nearly as deep as the parser allows
        raise InvalidJson("the Bundle is nested too deeply") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


READ_PARAMETERS = [
    {
        "name": "resource_type",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(SUPPORTED_TYPES)},
    },
    {
        "name": "resource_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{FHIR_ID}$"},
    },
]
"""Read from the path, not declared to FastAPI: any text is a 404 if nothing has it, never a
422 (a type or id that cannot exist is simply not found)."""


@router.get(
    "/{resource_type}/{resource_id}",
    operation_id="fhir_read",
    response_class=FhirResponse,
    responses={
        200: {
            "model": FhirResource,
            "description": "the resource",
            "headers": {
                "ETag": {"description": 'W/"<versionId>"', "schema": {"type": "string"}},
                "Last-Modified": {"description": "meta.lastUpdated", "schema": {"type": "string"}},
            },
        }
    }
    | outcome_responses(*AUTH_ERRORS, 404),
    openapi_extra={"parameters": READ_PARAMETERS},
)
async def read(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_read),
) -> FhirResponse:
    """One resource by type and id."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"resource type {resource_type[:40]!r} is not served here")
    stored = await run_in_threadpool(runtime.fhir_store.read, resource_type, resource_id)
    if stored is None:
        raise NotFound(f"no {resource_type} with id {resource_id[:64]!r}")
    headers = {
        "ETag": etag(stored),
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }
    return FhirResponse(stored.json(), headers=headers)


def _search_route(resource_type: str) -> None:
    async def search(
        request: Request,
        runtime: Runtime = Depends(get_runtime),
        caller: Principal = Depends(may_read),
    ) -> FhirResponse:
        pairs = request.query_params.multi_items()
        base = base_url(runtime)
        query = parse_search(resource_type, pairs, base)
        page = await run_in_threadpool(runtime.fhir_store.search, query)
        return FhirResponse(searchset(base, query, pairs, page))

    search.__doc__ = (
        f"Search {resource_type} resources: every criterion must hold; a parameter not "
        "listed here is a 400 (strict)."
    )
    router.add_api_route(
        f"/{resource_type}",
        search,
        methods=["GET"],
        name=f"fhir_search_{resource_type.lower()}",
        operation_id=f"fhir_search_{resource_type.lower()}",
        response_class=FhirResponse,
        openapi_extra={"parameters": search_parameters(resource_type)},
        responses={200: {"model": SearchsetBundle, "description": "one page of matches"}}
        | outcome_responses(*AUTH_ERRORS, 400),
    )


for _type in SUPPORTED_TYPES:
    _search_route(_type)


@router.get("/{path:path}", include_in_schema=False)
async def unknown(path: str) -> None:
    """Any other GET under the base: say what is served rather than a bare "Not Found"."""
    raise NotFound(
        f"nothing at {FHIR_BASE_PATH}/{path[:60]}: served are metadata, and read and search "
        f"of {', '.join(SUPPORTED_TYPES)}"
    )


def searchset(
    base: str, query: SearchQuery, pairs: list[tuple[str, str]], page: SearchPage
) -> dict[str, Any]:
    """The searchset Bundle of one page, with self/next/previous links that keep the
    criteria and move ``_offset`` (a stable position: results come in storage order)."""
    criteria = [(name, value) for name, value in pairs if name not in RESULT_PARAMETERS]

    def link(relation: str, offset: int) -> dict[str, str]:
        paging = [("_count", str(query.count)), ("_offset", str(offset))]
        return {
            "relation": relation,
            "url": f"{base}/{query.resource_type}?{urlencode(criteria + paging)}",
        }

    links = [link("self", query.offset)]
    if query.count and query.offset + query.count < page.total:
        links.append(link("next", query.offset + query.count))
    if query.count and query.offset > 0:
        links.append(link("previous", max(0, query.offset - query.count)))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
    }
    if page.resources:
        bundle["entry"] = [_entry(base, stored) for stored in page.resources]
    return bundle


def _entry(base: str, stored: StoredResource) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{stored.reference}",
        "resource": stored.json(),
        "search": {"mode": "match"},
    }


def mount(app: FastAPI) -> None:
    """Serve the facade: its routes, its error wording, and its middleware.

    Call after the body-limit middleware is added (so that this one wraps it) and after
    the service's error handlers are installed (so that these wrap them).
    """
    install_fhir_errors(app)
    app.add_middleware(FhirErrorBodies)
    app.include_router(router)
