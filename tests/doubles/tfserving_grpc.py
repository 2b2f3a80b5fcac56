"""A test double of TensorFlow Serving's gRPC API (``:8500``), serving the real SavedModel.

Implements ``tensorflow.serving.PredictionService/Predict`` and ``/GetModelMetadata`` and
``tensorflow.serving.ModelService/GetModelStatus`` with TF Serving's own messages and
codes: NOT_FOUND for a missing (or not yet AVAILABLE) servable, INVALID_ARGUMENT for an
unknown version label, FAILED_PRECONDITION for an unknown signature; outputs are sent as
``float_val`` fields as TF Serving does by default. GetModelStatus ignores a version label
(every version is listed), as TF Serving's does.

Faults a test may set while it runs: ``delay_s``, ``fail_code`` (+ ``fail_message``),
``state``; counters ``predict_calls`` and ``connections_opened`` (distinct client peers).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.doubles.servables import ModelRepository, ServingError, load_repository


class TfServingGrpcDouble:
    """A gRPC server on loopback that behaves like TF Serving's gRPC API."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        repository: ModelRepository | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 8,
    ) -> None:
        if repository is None:
            if model_dir is None:
                raise ValueError("give a model_dir or a loaded repository")
            repository = load_repository(Path(model_dir).resolve())
        self.repository = repository
        self.host, self.port, self.max_workers = host, port, max_workers
        self.delay_s = 0.0
        self.fail_code: grpc.StatusCode | None = None
        self.fail_message = "injected failure"
        self.state = "AVAILABLE"
        self.predict_calls = 0
        self._peers: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections_opened(self) -> int:
        """Distinct client connections (peer addresses) seen so far."""
        with self._lock:
            return len(self._peers)

    def start(self) -> TfServingGrpcDouble:
        server = grpc.server(
            ThreadPoolExecutor(self.max_workers), options=[("grpc.so_reuseport", 0)]
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), server)
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=0).wait(5)

    def reset_faults(self) -> None:
        self.delay_s, self.fail_code, self.state = 0.0, None, "AVAILABLE"
        self.fail_message = "injected failure"

    def __enter__(self) -> TfServingGrpcDouble:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def seen(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self._peers.add(context.peer())

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        served = self.repository.resolve(spec.name, *_version_choice(spec), self.state)
        signature = spec.signature_name or "serving_default"
        if signature not in served.signature_defs:
            raise ServingError(
                "FAILED_PRECONDITION", f'Serving signature key "{signature}" not found.'
            )
        signature_def = served.signature_defs[signature]
        sent, expected = set(request.inputs), set(signature_def.inputs)
        if sent != expected:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
            )
        unknown = [name for name in request.output_filter if name not in signature_def.outputs]
        if unknown:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected to "
                f"be in the set {{{','.join(sorted(signature_def.outputs))}}}.",
            )
        try:
            inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise ServingError("INVALID_ARGUMENT", str(error)) from error
        outputs = self.repository.run(served, signature, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = served.number
        response.model_spec.signature_name = signature
        for name, array in outputs.items():
            if not request.output_filter or name in request.output_filter:
                response.outputs[name].CopyFrom(_as_proto_field(array))
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest) -> Any:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        entries = self.repository.status(spec.name, version, self.state)
        return json_format.ParseDict(
            {"model_version_status": entries}, get_model_status_pb2.GetModelStatusResponse()
        )

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest) -> Any:
        if not request.HasField("model_spec"):
            raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(
                "INVALID_ARGUMENT",
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
        spec = request.model_spec
        served = self.repository.resolve(spec.name, *_version_choice(spec), self.state)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in served.signature_defs.items():
            signatures.signature_def[key].CopyFrom(value)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = served.number
        response.metadata["signature_def"].Pack(signatures)
        return response

    def pause(self) -> None:
        """``delay_s``, cut short when the double stops."""
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)

    def count_predict(self) -> None:
        with self._lock:
            self.predict_calls += 1


def _version_choice(spec: Any) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _as_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Like TF's Tensor::AsProtoField: float32 values in ``float_val``, not tensor_content."""
    if array.dtype != np.float32:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=array.ravel().tolist())
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def _abort(context: grpc.ServicerContext, error: ServingError) -> None:
    context.abort(grpc.StatusCode[error.code], error.message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, double: TfServingGrpcDouble) -> None:
        self.double = double

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        double = self.double
        double.seen(context)
        double.count_predict()
        double.pause()
        if double.fail_code is not None:
            context.abort(double.fail_code, double.fail_message)
        try:
            return double.predict(request)
        except ServingError as error:
            _abort(context, error)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.double.seen(context)
        try:
            return self.double.metadata(request)
        except ServingError as error:
            _abort(context, error)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, double: TfServingGrpcDouble) -> None:
        self.double = double

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.double.seen(context)
        try:
            return self.double.status(request)
        except ServingError as error:
            _abort(context, error)
