"""Inference through TF Serving's REST API (``:8501``): predict, model status and metadata.

One pooled ``httpx.Client`` per engine keeps connections alive across calls: a new TCP
connection per image would cost more than the request on a LAN. Every failure becomes an
:mod:`aistack.errors` error a router can act on: unreachable or loading → unavailable (try
another backend), timeout → deadline, no such model/version/label → not found, anything
else → failed. No TensorFlow import here.
"""

from __future__ import annotations

import base64
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from aistack.errors import (
    AistackError,
    BackendFailed,
    BackendUnavailable,
    DeadlineExceeded,
    ModelNotFound,
)
from aistack.inference.engine import ModelInfo
from aistack.inference.tfserving.base import TfServingEngineBase
from aistack.inference.tfserving.codec import (
    INPUT,
    UNKNOWN_LABEL,
    output_names,
    shorten,
    signature_for,
)

RequestFormat = Literal["columnar", "row"]


class TfServingRestEngine(TfServingEngineBase):
    """An :class:`~aistack.inference.engine.InferenceEngine` over TF Serving's REST API."""

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        info: ModelInfo,
        *,
        version: int | None = None,
        label: str | None = None,
        timeout_s: float = 10.0,
        request_format: RequestFormat = "columnar",
        max_connections: int = 16,
    ) -> None:
        super().__init__(name, model, info, version, label, timeout_s)
        if request_format not in ("columnar", "row"):
            raise ValueError(f"request_format is 'columnar' or 'row', not {request_format!r}")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http(s)://host:port, got {base_url!r}")
        self.request_format: RequestFormat = request_format
        self._path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            self._path += f"/versions/{int(version)}"
        elif label is not None:
            self._path += f"/labels/{quote(label, safe='')}"
        self.address = base_url.rstrip("/") + self._path
        # trust_env=False: the configured address is contacted directly, never via a proxy
        # picked up from the environment.
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            trust_env=False,
        )

    def status(self, timeout_s: float | None = None) -> list[dict]:
        """TF Serving's ``model_version_status`` entries for the address."""
        answer = self._send("GET", self._path, self._timeout(timeout_s))
        entries = answer.get("model_version_status") if isinstance(answer, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BackendFailed(f"{self._source}: the status answer has no model_version_status")
        return entries

    def metadata(self, timeout_s: float | None = None) -> dict:
        """``{"model_spec": ..., "metadata": {"signature_def": ...}}`` of the served version."""
        answer = self._send("GET", f"{self._path}/metadata", self._timeout(timeout_s))
        if not isinstance(answer, dict) or "metadata" not in answer:
            raise BackendFailed(f"{self._source}: the metadata answer has no metadata")
        return answer

    def close(self) -> None:
        super().close()
        self._client.close()

    def _predict(self, images: list[bytes], heatmap: bool, timeout_s: float) -> dict:
        values = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
        body: dict[str, Any] = {"signature_name": signature_for(heatmap)}
        if self.request_format == "columnar":
            body["inputs"] = {INPUT: values}
        else:
            body["instances"] = [{INPUT: value} for value in values]
        answer = self._send("POST", f"{self._path}:predict", timeout_s, body)
        try:
            return _named_outputs(answer, self.request_format, output_names(heatmap))
        except ValueError as error:
            raise BackendFailed(f"{self._source}: {error}") from error

    def _send(self, method: str, path: str, timeout_s: float, body: Any = None) -> Any:
        """One request; the parsed JSON of a 200 answer, else the matching AistackError."""
        self._check_open()
        try:
            response = self._client.request(method, path, json=body, timeout=timeout_s)
        except httpx.TimeoutException as error:
            raise DeadlineExceeded(
                f"{self._source} did not answer within {timeout_s:g} s"
            ) from error
        except httpx.TransportError as error:  # refused, reset, closed without an answer
            raise BackendUnavailable(
                f"{self._source} cannot be reached: {type(error).__name__}: {error}"
            ) from error
        except httpx.HTTPError as error:
            raise BackendFailed(f"{self._source}: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise self._error_for(response)
        try:
            return response.json()
        except ValueError as error:
            raise BackendFailed(
                f"{self._source} answered 200 with a body that is not JSON"
            ) from error

    def _error_for(self, response: httpx.Response) -> AistackError:
        status, text = response.status_code, _error_text(response)
        if status == 404 or (status == 400 and text.startswith(UNKNOWN_LABEL)):
            return ModelNotFound(f"{self._source}: {text}")
        if status in (429, 503):  # 429: TF Serving's batching queue is full; try elsewhere
            return BackendUnavailable(f"{self._source} is unavailable ({status}): {text}")
        if status == 504:  # TF Serving's own run deadline (--rest_api_timeout_in_ms)
            return DeadlineExceeded(f"{self._source} timed out (504): {text}")
        return BackendFailed(f"{self._source} answered {status}: {text}")


def _error_text(response: httpx.Response) -> str:
    """TF Serving's ``{"error": ...}`` text, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return shorten(body["error"])
    return shorten(response.text) or "(empty body)"


def _named_outputs(answer: Any, request_format: RequestFormat, names: tuple[str, ...]) -> dict:
    """The output tensors by name, from either documented response shape.

    Columnar: ``{"outputs": value}`` for one output, ``{"outputs": {name: value}}`` for
    several. Row: ``{"predictions": [value, ...]}`` for one output, a list of per-instance
    objects for several.
    """
    key = "outputs" if request_format == "columnar" else "predictions"
    if not isinstance(answer, dict) or key not in answer:
        raise ValueError(f"the answer has no {key!r}")
    value = answer[key]
    if len(names) == 1:
        return {names[0]: value}
    if request_format == "columnar":
        if not isinstance(value, dict):
            raise ValueError(f"'outputs' should be an object with {list(names)}")
        return {name: value[name] for name in names if name in value}
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise ValueError("'predictions' should be a list of objects, one per image")
    try:
        return {name: [row[name] for row in value] for name in names}
    except KeyError as error:
        raise ValueError(f"a prediction lacks output {error}") from error
