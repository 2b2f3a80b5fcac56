"""A test double of TensorFlow Serving's REST API (``:8501``), serving the real SavedModel.

It answers the documented endpoints (tensorflow_serving/g3doc/api_rest.md) the way
TF Serving's HTTP handler does:

* ``GET /v1/models/{m}[/versions/{v}|/labels/{l}]`` → ``{"model_version_status": [...]}``;
  like TF Serving, a label is ignored there (every version is listed);
* ``GET .../metadata`` → ``{"model_spec": ..., "metadata": {"signature_def": ...}}`` with the
  SavedModel's own SignatureDefs;
* ``POST ...:predict`` in row or columnar format, run through the real signatures;
* errors as ``{"error": "..."}`` with TF Serving's status mapping (INVALID_ARGUMENT and
  FAILED_PRECONDITION 400, NOT_FOUND 404, UNAVAILABLE 503, ...). A version that is not
  AVAILABLE cannot be found, exactly as in TF Serving: 404 "Servable not found".

Faults a test may set while it runs: ``delay_s``, ``fail_status`` (+ ``fail_message``),
``state``, ``drop_connections``, ``raw_predict_reply``; counters ``predict_calls`` and
``connections_opened``. Manual use::

    python -m tests.doubles.tfserving_rest --model-dir models/covid19 --port 8501
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from google.protobuf import json_format

from tests.doubles import json_tensors
from tests.doubles.servables import ModelRepository, ServingError, Version, load_repository

PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
HTTP_STATUS = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
"""TF Serving's ToHTTPStatusCode (model_servers/http_server.cc)."""


class TfServingRestDouble:
    """A threaded HTTP server on loopback that behaves like TF Serving's REST API."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        repository: ModelRepository | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if repository is None:
            if model_dir is None:
                raise ValueError("give a model_dir or a loaded repository")
            repository = load_repository(Path(model_dir).resolve())
        self.repository = repository
        self.host, self.port = host, port
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.fail_message = "injected failure"
        self.state = "AVAILABLE"
        self.drop_connections = False
        self.raw_predict_reply: bytes | None = None
        """Answer predict with 200 and exactly these bytes (a broken or foreign server)."""
        self.predict_calls = 0
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TfServingRestDouble:
        server = _Server((self.host, self.port), _Handler)
        server.double = self
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections, as a killed server would."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            for connection in list(self._open):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def reset_faults(self) -> None:
        self.delay_s, self.fail_status, self.state = 0.0, None, "AVAILABLE"
        self.drop_connections, self.raw_predict_reply = False, None
        self.fail_message = "injected failure"

    def __enter__(self) -> TfServingRestDouble:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _connected(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self.connections_opened += 1
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """(HTTP status, JSON text) for one request, as TF Serving's handler answers it."""
        try:
            return 200, self._dispatch(method, path, body)
        except ServingError as error:
            return HTTP_STATUS.get(error.code, 500), json_tensors.error_json(error.message)
        except Exception as error:  # noqa: BLE001 - a fault of the double: 500, never a drop
            traceback.print_exc()
            return 500, json_tensors.error_json(f"double failed: {error!r}")

    def _dispatch(self, method: str, path: str, body: bytes) -> str:
        if method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            if verb.lower() != "predict":
                raise ServingError("UNIMPLEMENTED", f"{verb} is not served by this double")
            return self._predict(unquote(name), _int(version), _label(label), body)
        if method == "GET" and (match := STATUS_PATH.fullmatch(path)):
            name, version, label, metadata = match.groups()
            if not name:
                raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
            if metadata:
                return self._metadata(unquote(name), _int(version), _label(label))
            entries = self.repository.status(unquote(name), _int(version), self.state)
            return json.dumps({"model_version_status": entries}, indent=1)
        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> str:
        document = json_tensors.parse_request(body)
        signature = json_tensors.signature_name(document) or "serving_default"
        served = self.repository.resolve(name, version, label, self.state)
        if signature not in served.signature_defs:
            raise ServingError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{signature}" not found in signature def',
            )
        inputs, request_format = json_tensors.input_tensors(
            document, served.signature_defs[signature].inputs
        )
        outputs = self.repository.run(served, signature, inputs)
        return json_tensors.response_json(outputs, request_format)

    def _metadata(self, name: str, version: int | None, label: str | None) -> str:
        served: Version = self.repository.resolve(name, version, label, self.state)
        signatures = {
            key: json_format.MessageToDict(
                value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for key, value in served.signature_defs.items()
        }
        return json.dumps(
            {
                "model_spec": {"name": name, "signature_name": "", "version": str(served.number)},
                "metadata": {"signature_def": {"signature_def": signatures}},
            },
            indent=1,
        )

    def count_predict(self) -> None:
        with self._lock:
            self.predict_calls += 1

    def pause(self) -> None:
        """``delay_s``, cut short when the double stops."""
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _label(text: str | None) -> str | None:
    return unquote(text) if text else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: TfServingRestDouble

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (timeouts, pool closes) are normal here, not tracebacks."""
        if not isinstance(sys.exception(), OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's evhttp server
    server_version = "TfServingDouble"

    server: _Server

    @property
    def double(self) -> TfServingRestDouble:
        return self.server.double

    def setup(self) -> None:
        super().setup()
        self.double._connected(self.connection, opened=True)

    def finish(self) -> None:
        self.double._connected(self.connection, opened=False)
        with contextlib.suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        double = self.double
        if double.drop_connections:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if not path.lower().startswith("/v1/"):  # TF Serving's dispatcher ignores the rest
            self._reply(404, "text/html", b"<html><body>Not Found</body></html>")
            return
        if self.command == "POST" and PREDICT_PATH.fullmatch(path):
            double.count_predict()
            double.pause()
            if double.fail_status is not None:
                text = json_tensors.error_json(double.fail_message)
                self._reply(double.fail_status, "application/json", text.encode())
                return
            if double.raw_predict_reply is not None:
                self._reply(200, "application/json", double.raw_predict_reply)
                return
        status, text = double.handle(self.command, path, body)
        self._reply(status, "application/json", text.encode())

    def _reply(self, status: int, content_type: str, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (its timeout) or the double is stopping
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read answers, not access logs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args()
    with TfServingRestDouble(args.model_dir, host=args.host, port=args.port) as double:
        name = double.repository.name
        print(f"TF Serving REST double: {double.url}/v1/models/{name}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
