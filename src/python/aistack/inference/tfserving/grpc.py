"""Inference through TF Serving's gRPC API (``:8500``): Predict, GetModelStatus, GetModelMetadata.

Cheaper than REST per image (binary PNGs, no base64 or JSON floats) and multiplexed over
one HTTP/2 channel per engine. TF Serving's protos (``tensorflow-serving-api``) import
TensorFlow, so they are loaded when the first gRPC engine is built, never on import.
Failures map to :mod:`aistack.errors` by gRPC status code, like the REST engine's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np

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


@functools.cache
def _apis() -> SimpleNamespace:
    """TF Serving's messages and stubs (importing them imports TensorFlow)."""
    from google.protobuf import json_format  # noqa: PLC0415
    from tensorflow.core.framework import types_pb2  # noqa: PLC0415 - heavy: TensorFlow
    from tensorflow_serving.apis import (  # noqa: PLC0415 - heavy: TensorFlow
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    return SimpleNamespace(
        json_format=json_format,
        types=types_pb2,
        metadata=get_model_metadata_pb2,
        status=get_model_status_pb2,
        predict=predict_pb2,
        model_stub=model_service_pb2_grpc.ModelServiceStub,
        prediction_stub=prediction_service_pb2_grpc.PredictionServiceStub,
    )


class TfServingGrpcEngine(TfServingEngineBase):
    """An :class:`~aistack.inference.engine.InferenceEngine` over TF Serving's gRPC API."""

    def __init__(
        self,
        name: str,
        target: str,
        model: str,
        info: ModelInfo,
        *,
        version: int | None = None,
        label: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name, model, info, version, label, timeout_s)
        self._apis = _apis()
        suffix = (
            f"/versions/{int(version)}"
            if version is not None
            else f"/labels/{label}"
            if label is not None
            else ""
        )
        self.address = f"grpc://{target}/models/{model}{suffix}"
        self._channel = grpc.insecure_channel(target)
        self._prediction = self._apis.prediction_stub(self._channel)
        self._models = self._apis.model_stub(self._channel)

    def status(self, timeout_s: float | None = None) -> list[dict]:
        """``model_version_status`` entries, in the same JSON shape as the REST API's."""
        request = self._apis.status.GetModelStatusRequest()
        self._fill_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request, self._timeout(timeout_s))
        return self._to_dict(response).get("model_version_status", [])

    def metadata(self, timeout_s: float | None = None) -> dict:
        """``{"model_spec": ..., "metadata": {"signature_def": ...}}`` as the REST API shows it."""
        request = self._apis.metadata.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec)
        response = self._call(self._prediction.GetModelMetadata, request, self._timeout(timeout_s))
        signatures = self._apis.metadata.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signatures):
            raise BackendFailed(f"{self._source}: metadata without a signature_def map")
        return {
            "model_spec": self._to_dict(response.model_spec),
            "metadata": {"signature_def": self._to_dict(signatures)},
        }

    def close(self) -> None:
        super().close()
        self._channel.close()

    def _predict(self, images: list[bytes], heatmap: bool, timeout_s: float) -> dict:
        request = self._apis.predict.PredictRequest()
        self._fill_spec(request.model_spec)
        request.model_spec.signature_name = signature_for(heatmap)
        tensor = request.inputs[INPUT]
        tensor.dtype = self._apis.types.DT_STRING
        tensor.tensor_shape.dim.add().size = len(images)
        tensor.string_val.extend(images)
        response = self._call(self._prediction.Predict, request, timeout_s)
        try:
            return {
                name: self._array(response.outputs[name])
                for name in output_names(heatmap)
                if name in response.outputs
            }
        except ValueError as error:
            raise BackendFailed(f"{self._source}: {error}") from error

    def _fill_spec(self, spec: Any) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.label is not None:
            spec.version_label = self.label

    def _call(self, method: Callable[..., Any], request: Any, timeout_s: float) -> Any:
        self._check_open()
        try:
            return method(request, timeout=timeout_s)
        except grpc.RpcError as error:
            raise self._error_for(error, timeout_s) from error

    def _error_for(self, error: grpc.RpcError, timeout_s: float) -> AistackError:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        text = shorten((error.details() if isinstance(error, grpc.Call) else "") or "")
        # RESOURCE_EXHAUSTED: TF Serving's batching queue is full; another backend may not be.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return BackendUnavailable(f"{self._source} is unavailable: {text}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"{self._source} did not answer within {timeout_s:g} s")
        if code == grpc.StatusCode.NOT_FOUND or (
            code == grpc.StatusCode.INVALID_ARGUMENT and text.startswith(UNKNOWN_LABEL)
        ):
            return ModelNotFound(f"{self._source}: {text}")
        return BackendFailed(f"{self._source} answered {code.name}: {text}")

    def _to_dict(self, message: Any) -> dict:
        return self._apis.json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    def _array(self, tensor: Any) -> np.ndarray:
        """A DT_FLOAT TensorProto as an array, sent as ``float_val`` or as ``tensor_content``."""
        if tensor.dtype != self._apis.types.DT_FLOAT:
            raise ValueError(f"output dtype {self._apis.types.DataType.Name(tensor.dtype)}")
        shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
        count = int(np.prod(shape))
        if tensor.tensor_content:
            values = np.frombuffer(tensor.tensor_content, dtype="<f4")
        else:
            values = np.asarray(tensor.float_val, dtype=np.float32)
            if 0 < values.size < count:  # TensorProto rule: the last value repeats
                values = np.pad(values, (0, count - values.size), mode="edge")
        if values.size != count:
            raise ValueError(f"an output of shape {shape} carries {values.size} values")
        return values.reshape(shape)
