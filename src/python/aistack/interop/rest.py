"""The IRIS REST front's Python side: what the ``%CSP.REST`` dispatch class calls.

    handle(operation, request, username, roles, *path_args) -> Reply

``operation`` is the standalone route's ``operation_id``; ``request`` is IRIS's
``%CSP.Request``, read only through its documented members (``Method``, ``ContentType``,
``Content``, ``Get``/``Next`` for form and query values, ``GetMimeData``/``NextMimeData`` for
multipart file parts, ``GetCgiEnv``). IRIS has authenticated the user already; their IRIS
roles become the project's roles. Predictions enter the production through its business
services; answers are shaped by :mod:`aistack.xray.schemas` (X-ray) and by the core's
``IcuService`` in the ``IntegratedML`` operation (ICU), so each route answers with the
standalone runtime's JSON, errors included. Nothing raises out of :func:`handle`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from iop.runtime.director import create_python_business_service
from pydantic import Field, TypeAdapter, ValidationError

from aistack.auth.keys import (
    AUTH_OFF,
    OPEN_V1,
    PERMISSION_ACTIONS,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
)
from aistack.errors import (
    AistackError,
    BadRequest,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    NotReady,
    Unauthorized,
)
from aistack.http_contract import (
    BACKEND_HEADER,
    COMMON_HEADERS,
    RECORD_ID,
    REQUEST_ID_HEADER,
    SANE_REQUEST_ID,
    UNAVAILABLE_TEXT,
    VERSION_QUERY_PARAMETERS,
)
from aistack.interop import wiring
from aistack.interop.icu import ICU_SERVICE
from aistack.interop.messages import (
    IcuCall,
    IcuReply,
    IcuRequest,
    JobStatusReply,
    JobSubmission,
    ReadinessQuery,
    ReadinessReply,
    XrayPredictionRequest,
    XrayPredictionResponse,
)
from aistack.interop.services import JOB_SERVICE, PREDICT_SERVICE
from aistack.logs import log_event, request_id
from aistack.store import PredictionRecord
from aistack.store.jobs import JobRecord, JobStatus
from aistack.xray import request_body, schemas
from aistack.xray.files import FILE_HEADERS, FILE_NAME, MEDIA_TYPES, FileKind

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
ANONYMOUS_USER = "UnknownUser"
"""The user IRIS names a request that came without credentials."""
IRIS_ROLES = {"AIStackPredict": Role.PREDICT, "AIStackRead": Role.READ, "AIStackAdmin": Role.ADMIN}
ROLE_RANK = (Role.PREDICT, Role.READ, Role.ADMIN)
CHALLENGE = 'Basic realm="aistack"'
PREDICTIONS_PATH = "/api/v2/xray/predictions"
JOBS_PATH = "/api/v2/xray/jobs"
READ_CHUNK = 32_000
"""Characters per ``Read`` of an IRIS stream (below the 3.6 MB string limit)."""
MAX_VALUES_PER_NAME = 100
_MISSING = "\x00aistack:missing\x00"
"""A default no form value can be: tells "no such index" apart from an empty value."""


@dataclass
class Reply:
    """One HTTP answer, for the ObjectScript side to send as it is."""

    status: int
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    file_path: str = ""
    """A stored file to stream (``static_file``); the body is empty then."""

    @property
    def status_line(self) -> str:
        """``201 Created``: what ``%response.Status`` takes."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    @property
    def headers_json(self) -> str:
        return json.dumps(self.headers, separators=(",", ":"))


def json_text(value: Any) -> str:
    """JSON as FastAPI's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def error_reply(error: AistackError) -> Reply:
    body = {"error": {"code": error.code, "message": error.message}}
    return Reply(error.status, headers=dict(error.headers), body=json_text(body))


# -- the request, through %CSP.Request's documented members -----------------------------------


def read_stream(stream: Any) -> bytes:
    """All of an IRIS stream: ``Rewind``, ``Read`` until ``AtEnd``; characters 0-255 are
    bytes."""
    if stream is None or isinstance(stream, str | bytes):
        return _as_bytes(stream or b"")
    rewind = getattr(stream, "Rewind", None)
    if callable(rewind):  # read from the start, however often it is read
        rewind()
    chunks = []
    while not stream.AtEnd:
        chunk = stream.Read(READ_CHUNK)
        if not chunk:
            break
        chunks.append(_as_bytes(chunk))
    return b"".join(chunks)


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")  # a binary stream: one character per byte
    except UnicodeEncodeError:
        return value.encode("utf-8")  # a character stream holding text


def _as_text(value: Any) -> str:
    """A form value: a string, or a stream when longer than an IRIS string may be."""
    if isinstance(value, str):
        return value
    return read_stream(value).decode("latin-1")


@dataclass
class CspRequest:
    """What a route needs of a ``%CSP.Request``, read once."""

    raw: Any

    @property
    def content_type(self) -> str:
        return str(self.raw.ContentType or "")

    @property
    def media_type(self) -> str:
        return request_body.media_type(self.content_type)

    def cgi(self, name: str) -> str:
        return str(self.raw.GetCgiEnv(name, "") or "")

    def header(self, name: str) -> str:
        """A request header, from the CGI variable it arrives in (``HTTP_X_REQUEST_ID``)."""
        return self.cgi("HTTP_" + name.upper().replace("-", "_"))

    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.cgi("QUERY_STRING"), keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        values = [value for key, value in self.query() if key == name]
        return values[-1] if values else None

    def body(self) -> bytes:
        """The raw body: what CSP did not parse itself (JSON, anything but a form)."""
        return read_stream(self.raw.Content)

    def body_as_sent(self) -> tuple[bytes, str]:
        """(body, Content-Type) as the client sent them, for the core to read itself.

        CSP parses a multipart body into its parts and keeps no copy of the bytes: the body
        is written again from the parts (names, file names, types and bytes; a new
        boundary), which the core then parses as the standalone runtime parses the original.
        """
        if self.media_type != request_body.MULTIPART:
            return self.body(), self.content_type
        in_query = Counter(name for name, _ in self.query())
        parts: list[tuple[str, Any]] = []
        for name in self._names(self.raw.Next):
            values = self._values(self.raw.Get, name, first_index=in_query[name] + 1)
            parts += [(name, value) for value in values]
        for name in self._names(self.raw.NextMimeData):
            parts += [(name, v) for v in self._values(self.raw.GetMimeData, name, first_index=1)]
        return multipart_body(parts)

    def form(self) -> tuple[dict[str, str], dict[str, bytes]]:
        """(fields, file parts) CSP parsed from a url-encoded or multipart body.

        CSP puts query parameters and form fields in one collection (query first, so a
        name in both has the form's value at a later index) and file parts apart.
        """
        in_query = Counter(name for name, _ in self.query())
        fields: dict[str, str] = {}
        for name in self._names(self.raw.Next):
            values = self._values(self.raw.Get, name, first_index=in_query[name] + 1)
            if values:
                fields[name] = _as_text(values[-1])  # a repeated name keeps its last value
        files: dict[str, bytes] = {}
        for name in self._names(self.raw.NextMimeData):
            parts = self._values(self.raw.GetMimeData, name, first_index=1)
            if not parts:
                continue
            part = parts[-1]
            if getattr(part, "FileName", None) == "":  # a text part CSP kept as a stream
                fields[name] = _as_text(part)
            else:
                files[name] = read_stream(part)
        self._check_counts(fields, files)
        return fields, files

    @staticmethod
    def _names(next_name: Callable[[str], Any]) -> list[str]:
        names: list[str] = []
        name = str(next_name("") or "")
        while name and len(names) <= request_body.MAX_FORM_FIELDS:
            names.append(name)
            name = str(next_name(name) or "")
        return names

    @staticmethod
    def _values(get: Callable[..., Any], name: str, first_index: int) -> list[Any]:
        values = []
        for index in range(first_index, first_index + MAX_VALUES_PER_NAME):
            value = get(name, _MISSING, index)
            if isinstance(value, str) and value == _MISSING:
                break
            values.append(value)
        return values

    def _check_counts(self, fields: dict[str, str], files: dict[str, bytes]) -> None:
        """The form limits of :mod:`aistack.xray.request_body`, with its messages."""
        limit = request_body.MAX_FORM_FIELDS
        if self.media_type == request_body.URLENCODED:
            if len(fields) > limit:
                raise BadRequest(f"too many form fields: at most {limit}")
            return
        if len(files) > request_body.MAX_FORM_FILES:
            most = request_body.MAX_FORM_FILES
            raise BadRequest(f"Too many files. Maximum number of files is {most}.")
        if len(fields) > limit:
            raise BadRequest(f"Too many fields. Maximum number of fields is {limit}.")


def multipart_body(parts: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """``multipart/form-data`` from (name, value) parts: a value is text, or a CSP stream
    (its ``FileName`` and ``ContentType``, when CSP kept them, go into the part's headers)."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in parts:
        disposition = f'form-data; name="{_quoted(name)}"'
        file_name = getattr(value, "FileName", None)
        if isinstance(file_name, str) and file_name:
            disposition += f'; filename="{_quoted(file_name)}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        part_type = getattr(value, "ContentType", None)
        if isinstance(part_type, str) and part_type:
            head += f"Content-Type: {part_type}\r\n"
        data = _as_bytes(value) if isinstance(value, str) else read_stream(value)
        chunks += [head.encode("utf-8"), b"\r\n", data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"{request_body.MULTIPART}; boundary={boundary}"


def _quoted(text: str) -> str:
    """A header parameter value as browsers send it (RFC 7578: quotes and line breaks
    percent-encoded)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def v1_image(request: CspRequest) -> bytes:
    if request.media_type in request_body.FORM_TYPES:
        return request_body.image_from_form(*request.form())[0]
    return request_body.v1_body(request.content_type, request.body())


def v2_image(request: CspRequest) -> tuple[bytes, bool]:
    """(image, heatmap): JSON, a form, or a raw DICOM body with ``?heatmap=``."""
    heatmap_query = validated(HeatmapQuery, request.query_value(HEATMAP), f"query.{HEATMAP}")
    if request.media_type in request_body.FORM_TYPES:
        if heatmap_query is not None:  # the body says it: the same 422 as the standalone
            return request_body.v2_body(request.content_type, b"", heatmap_query)
        fields, files = request.form()
        data, others = request_body.image_from_form(fields, files, frozenset({HEATMAP}))
        return data, request_body.parse_form_bool(others.get(HEATMAP, "true"))
    return request_body.v2_body(request.content_type, request.body(), heatmap_query)


def validated(kind: Any, value: Any, where: str) -> Any:
    """``value`` as FastAPI validates a path or query parameter, with its 422 message."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as error:
        described = "; ".join(f"{where}: {problem['msg']}" for problem in error.errors())
        raise InvalidRequest(described) from error


RecordId = Annotated[str, Field(pattern=RECORD_ID)]
FileName = Annotated[str, Field(pattern=FILE_NAME)]
Limit = Annotated[int, Field(ge=1, le=500)]
Version = Annotated[int | None, Field(ge=0)]
Label = Annotated[str | None, Field(min_length=1)]
HeatmapQuery = Literal["true", "false"] | None
HEATMAP = request_body.HEATMAP_QUERY


# -- who is calling ---------------------------------------------------------------------------


def principal(username: str, roles: str, auth: bool) -> Principal | None:
    """The caller from IRIS's authentication; None for a request without credentials."""
    if not auth:
        return AUTH_OFF
    if not username or username == ANONYMOUS_USER:
        return None
    granted = {IRIS_ROLES[name] for name in roles.split(",") if name.strip() in IRIS_ROLES}
    permissions = frozenset().union(*(ROLE_PERMISSIONS[role] for role in granted))
    strongest = max(granted, key=ROLE_RANK.index) if granted else None
    return Principal(username, permissions, strongest, key_id=username)


@dataclass
class Call:
    """One REST call: the request, the caller, and this job's runtime."""

    request: CspRequest
    caller: Principal | None
    runtime: wiring.IrisRuntime
    path_args: tuple[str, ...]

    def authorize(self, permission: Permission, v1_open: bool = False) -> Principal:
        caller = self.caller
        if caller is None:
            if not v1_open:
                raise Unauthorized(
                    "credentials are required: send HTTP Basic authentication of a user "
                    "with an AIStack role",
                    {"WWW-Authenticate": CHALLENGE},
                )
            caller = OPEN_V1
        if not caller.can(permission):
            action = PERMISSION_ACTIONS[permission]
            raise Forbidden(f"the user {caller.name!r} (role {caller.role}) may not {action}")
        return caller

    def json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, headers=dict(headers or {}), body=json_text(value))

    def requested_version(self) -> int | None:
        """``?version=`` / ``?label=`` as the standalone's v2 routes read them."""
        version = validated(Version, self.request.query_value("version"), "query.version")
        label = validated(Label, self.request.query_value("label"), "query.label")
        names = {name for name, _ in self.request.query()}
        unknown = sorted(names - VERSION_QUERY_PARAMETERS - {HEATMAP})
        if unknown:
            raise BadRequest(
                f"unexpected query parameter {unknown[0][:40]!r}; expected version or label"
            )
        if label is not None:
            labelled = self.runtime.version_for_label(label)
            if version is not None and version != labelled:
                raise ModelNotFound(f"label {label[:32]!r} names version {labelled}, not {version}")
            version = labelled
        self.runtime.check_version(version)
        return version

    def predict(self, data: bytes, heatmap: bool, endpoint: str, caller: Principal,
                version: int | None = None) -> PredictionRecord:  # fmt: skip
        message = XrayPredictionRequest(
            image=data,
            heatmap=heatmap,
            endpoint=endpoint,
            client=caller.client,
            version=version,
            request_id=request_id.get(),
        )
        reply = create_python_business_service(PREDICT_SERVICE).on_process_input(message)
        if not isinstance(reply, XrayPredictionResponse):
            raise NotReady("the production gave no prediction answer")
        if reply.error is not None:
            raise reply.error.to_error()
        return reply.prediction.to_record()

    def icu(self, call: IcuCall, caller: Principal, body: bytes = b"",
            content_type: str | None = None) -> Reply:  # fmt: skip
        """An ICU route's answer from the production's IntegratedML operation (200)."""
        message = IcuRequest(
            call=call,
            body=body,
            content_type=content_type,
            client=caller.client,
            request_id=request_id.get(),
        )
        reply = create_python_business_service(ICU_SERVICE).on_process_input(message)
        if not isinstance(reply, IcuReply):
            raise NotReady("the production gave no ICU answer")
        if reply.error is not None:
            raise reply.error.to_error()
        return self.json(200, reply.answer)

    def prediction(self, record: PredictionRecord) -> schemas.Prediction:
        margin = self.runtime.settings.low_confidence_margin
        return schemas.v2_prediction(record, self.runtime.links, margin)


def backend_header(record: PredictionRecord) -> dict[str, str]:
    return {BACKEND_HEADER: record.backend} if record.backend else {}


# -- the routes, by the standalone's operation_id ---------------------------------------------


def v1_healthcheck(call: Call) -> Reply:
    return call.json(200, schemas.HEALTHCHECK_TEXT)


def v1_predict(call: Call, heatmap: bool = False) -> Reply:
    caller = call.authorize(Permission.PREDICT, v1_open=call.runtime.settings.v1_open)
    data = v1_image(call.request)
    endpoint = "v1-heatmap" if heatmap else "v1-predict"
    record = call.predict(data, heatmap, endpoint, caller)
    if heatmap:
        shaped = schemas.v1_heatmap_prediction(record, call.runtime.links)
    else:
        shaped = schemas.v1_prediction(record)
    return call.json(200, schemas.to_json(shaped), backend_header(record))


def v1_predict_heatmap(call: Call) -> Reply:
    return v1_predict(call, heatmap=True)


def create_prediction(call: Call) -> Reply:
    caller = call.authorize(Permission.PREDICT)
    version = call.requested_version()
    data, heatmap = v2_image(call.request)
    record = call.predict(data, heatmap, "v2", caller, version)
    location = {"Location": call.runtime.links.url(f"{PREDICTIONS_PATH}/{record.id}")}
    headers = location | backend_header(record)
    return call.json(201, schemas.to_json(call.prediction(record)), headers)


def get_prediction(call: Call) -> Reply:
    caller = call.authorize(Permission.READ_OWN)
    prediction_id = validated(RecordId, _arg(call, 0), "path.prediction_id")
    record = call.runtime.store.get(prediction_id)
    if not caller.can_read(record):
        raise NotFound(f"no prediction with id {prediction_id!r}")
    return call.json(200, schemas.to_json(call.prediction(record)))


def list_predictions(call: Call) -> Reply:
    caller = call.authorize(Permission.READ_OWN)
    limit = validated(Limit, call.request.query_value("limit") or "50", "query.limit")
    client = None if caller.can(Permission.READ_ALL) else caller.name
    records = call.runtime.store.recent(limit, client)
    return call.json(200, [schemas.to_json(call.prediction(record)) for record in records])


def create_job(call: Call) -> Reply:
    caller = call.authorize(Permission.PREDICT)
    version = call.requested_version()
    data, heatmap = v2_image(call.request)
    submission = JobSubmission(
        image=data,
        heatmap=heatmap,
        client=caller.client,
        version=version,
        request_id=request_id.get(),
    )
    reply = create_python_business_service(JOB_SERVICE).on_process_input(submission)
    if not isinstance(reply, JobStatusReply):
        raise NotReady("the production did not accept the job")
    if reply.error is not None:
        raise reply.error.to_error()
    job = call.runtime.jobs.get(reply.job_id)
    location = {"Location": call.runtime.links.url(f"{JOBS_PATH}/{reply.job_id}")}
    return call.json(202, schemas.to_json(schemas.job_view(job, None)), location)


def get_job(call: Call) -> Reply:
    caller = call.authorize(Permission.READ_OWN)
    job_id = validated(RecordId, _arg(call, 0), "path.job_id")
    job = call.runtime.jobs.get(job_id)
    if not caller.can_read(job):
        raise NotFound(f"no job with id {job_id!r}")
    return call.json(200, schemas.to_json(schemas.job_view(job, _job_prediction(call, job))))


def _job_prediction(call: Call, job: JobRecord) -> schemas.Prediction | None:
    if job.status != JobStatus.SUCCEEDED or job.prediction_id is None:
        return None
    record = call.runtime.store.get(job.prediction_id)
    return None if record is None else call.prediction(record)


def static_file(call: Call) -> Reply:
    """An upload, overlay or heatmap: signed URL (``?token=``), or a user who may read it."""
    kind = validated(FileKind, _arg(call, 0), "path.kind").value
    name = validated(FileName, _arg(call, 1), "path.name")
    runtime = call.runtime
    if not runtime.signer.valid(f"{kind}/{name}", call.request.query_value("token")):
        caller = call.authorize(Permission.READ_OWN)
        record = runtime.store.get(name.split(".")[0])
        if not caller.can_read(record):
            raise NotFound(f"no stored file {kind}/{name}")
    path = runtime.files.path(kind, name)
    if not path.is_file():
        raise NotFound(f"no stored file {kind}/{name} (it may have been swept)")
    media = MEDIA_TYPES[name.rsplit(".", 1)[1]]
    return Reply(200, content_type=media, headers=dict(FILE_HEADERS), file_path=str(path))


def oip_live(call: Call) -> Reply:
    return call.json(200, {"live": True})


def oip_ready(call: Call) -> Reply:
    """Ready when the production can reach a backend serving the default version."""
    reply = create_python_business_service(PREDICT_SERVICE).on_process_input(ReadinessQuery())
    if isinstance(reply, ReadinessReply) and reply.ready:
        return call.json(200, {"ready": True})
    raise NotReady(f"model version {call.runtime.served_version} is {UNAVAILABLE_TEXT}")


def icu_model(call: Call) -> Reply:
    return call.icu("model", call.authorize(Permission.READ_OWN))


def icu_predict(call: Call) -> Reply:
    caller = call.authorize(Permission.PREDICT)
    return call.icu("predict", caller, *call.request.body_as_sent())


def icu_predict_batch(call: Call) -> Reply:
    caller = call.authorize(Permission.PREDICT)
    return call.icu("predict_batch", caller, *call.request.body_as_sent())


def _arg(call: Call, index: int) -> str:
    return call.path_args[index] if index < len(call.path_args) else ""


ROUTES: dict[str, Callable[[Call], Reply]] = {
    "v1_healthcheck": v1_healthcheck,
    "v1_healthcheck_post": v1_healthcheck,
    "v1_predict": v1_predict,
    "v1_predict_heatmap": v1_predict_heatmap,
    "create_prediction": create_prediction,
    "get_prediction": get_prediction,
    "list_predictions": list_predictions,
    "create_job": create_job,
    "get_job": get_job,
    "static_file": static_file,
    "oip_live": oip_live,
    "oip_ready": oip_ready,
    "icu_model": icu_model,
    "icu_predict": icu_predict,
    "icu_predict_batch": icu_predict_batch,
}


def handle(operation: str, request: Any, username: str, roles: str, *path_args: str) -> Reply:
    """Answer one REST call; every failure is a JSON error reply, never an exception."""
    csp = CspRequest(request)
    incoming = csp.header(REQUEST_ID_HEADER)
    current = incoming if SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = request_id.set(current)
    try:
        reply = _answer(operation, csp, username, roles, path_args)
    finally:
        request_id.reset(token)
    reply.headers.setdefault(REQUEST_ID_HEADER, current)
    for name, value in COMMON_HEADERS.items():
        reply.headers.setdefault(name, value)
    return reply


def _answer(
    operation: str, request: CspRequest, username: str, roles: str, path_args: tuple[str, ...]
) -> Reply:
    route = ROUTES.get(operation)
    try:
        if route is None:
            raise NotFound(f"no route {operation[:64]!r}")
        runtime = wiring.runtime()
        caller = principal(username, roles, runtime.settings.auth)
        return route(Call(request, caller, runtime, tuple(path_args)))
    except AistackError as error:
        if error.status >= 500:
            log_event("request_failed", logging.WARNING, operation=operation, code=error.code)
        return error_reply(error)
    except Exception:
        log.exception("unexpected error in %s", operation)
        return error_reply(AistackError("internal error; see the server log"))
