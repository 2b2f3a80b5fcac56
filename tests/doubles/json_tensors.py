"""TF Serving's JSON ↔ tensor mapping for ``:predict``, after its util/json_tensor.cc.

Requests: ``instances`` (row: one value or object per instance, stacked) or ``inputs``
(columnar: one value, or an object by input name), never both; DT_STRING values are JSON
strings or ``{"b64": ...}``. Responses: ``predictions`` (row: per-instance values, or
objects when there are several outputs) or ``outputs`` (columnar: the value, or an object
by name). Floats are written like TF Serving's ``WriteDecimal``: six significant digits
when they round-trip, else full precision, ``.0`` on whole numbers, ``NaN``/``Infinity``.
Error texts follow TF Serving's where the double can know them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from tests.doubles.servables import ServingError

BYTES_SUFFIX = "_bytes"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def debug_string(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def parse_request(raw: bytes) -> dict:
    """The request document, or TF Serving's parse error."""
    if not raw:
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        offset = getattr(error, "pos", 0)
        raise invalid(
            f"JSON Parse error: {getattr(error, 'msg', error)} at offset: {offset}"
        ) from error
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {debug_string(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def input_tensors(document: dict, infos: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """Input arrays by name and the request format (``row`` or ``columnar``).

    ``infos``: the signature's TensorInfo protos by input name (their ``dtype`` decides how
    JSON values convert).
    """
    if "instances" in document and "inputs" in document:
        raise invalid(
            f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one "
            "of 'inputs' or 'instances' keys to exist "
        )
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise invalid(
                f"JSON Value: {debug_string(document)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise invalid(f"JSON Value: {debug_string(document)} No values in 'instances' array")
        return _rows(instances, infos), "row"
    if "inputs" in document:
        return _columns(document["inputs"], infos), "columnar"
    raise invalid("Missing 'inputs' or 'instances' key")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _rows(instances: list, infos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    names = sorted(infos)
    if not _is_named(instances[0]) and len(names) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    named = _is_named(instances[0])
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for index, instance in enumerate(instances):
        if named != _is_named(instance):
            kind = "object but got list" if named else "value/list but got object"
            raise invalid(f"Expecting {kind} at item {index} of input list")
        items = instance if named else {names[0]: instance}
        if set(items) != set(names):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{debug_string(instance)} keys must be equal to: {','.join(names)}"
            )
        for name, value in items.items():
            try:
                array = dense_array(value, infos[name].dtype)
            except ServingError as error:
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. Error: "
                    f"{error.message}"
                ) from error
            if columns[name] and columns[name][0].shape != array.shape:
                raise invalid(
                    f"Expecting shape {list(columns[name][0].shape)} but got: {list(array.shape)}"
                )
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _columns(value: Any, infos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not _is_named(value):
        if len(infos) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name = next(iter(infos))
        return {name: dense_array(value, infos[name].dtype)}
    missing = [name for name in sorted(infos) if name not in value]
    if missing:
        raise invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: dense_array(value[name], info.dtype) for name, info in infos.items()}


def dense_array(value: Any, dtype_enum: int) -> np.ndarray:
    """A nested JSON list as a dense array of the TF dtype, checked level by level."""
    import tensorflow as tf  # noqa: PLC0415 - the double already runs TensorFlow

    dtype = tf.dtypes.as_dtype(dtype_enum)
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    leaves: list[Any] = []

    def walk(item: Any, level: int) -> None:
        if isinstance(item, list):
            if level >= len(shape):
                raise invalid(
                    f"Encountered list at unexpected level: {level} expected < {len(shape)}"
                )
            if len(item) != shape[level]:
                raise invalid(
                    f"Encountered list at unexpected size: {len(item)} at level: {level} "
                    f"expected size: {shape[level]}"
                )
            for element in item:
                walk(element, level + 1)
            return
        if level != len(shape):
            raise invalid(
                f"JSON Value: {debug_string(item)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {len(shape)}"
            )
        leaves.append(_leaf(item, dtype))

    walk(value, 0)
    if dtype == tf.string:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
    else:
        try:
            array = np.array(leaves, dtype=dtype.as_numpy_dtype)
        except (OverflowError, TypeError, ValueError) as error:
            raise invalid(f"JSON values do not fit type {dtype.name}: {error}") from error
    return array.reshape(shape)


def _leaf(value: Any, dtype: Any) -> Any:
    if dtype.name == "string":
        if isinstance(value, str):
            return value.encode()
        if not _is_b64(value):
            raise invalid(
                f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise invalid("Unable to base64 decode") from error
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not (numeric or (isinstance(value, bool) and dtype.name == "bool")):
        raise invalid(
            f"JSON Value: {debug_string(value)} Type: {type(value).__name__} is not of expected "
            f"type: {dtype.name}"
        )
    return value


def response_json(outputs: Mapping[str, np.ndarray], request_format: str) -> str:
    """The ``:predict`` answer for these outputs in the request's format."""
    names = sorted(outputs)
    if request_format == "columnar":
        if len(names) == 1:
            return '{"outputs": ' + _value(outputs[names[0]], names[0]) + "}"
        fields = ", ".join(f"{json.dumps(n)}: {_value(outputs[n], n)}" for n in names)
        return '{"outputs": {' + fields + "}}"
    batch = {len(outputs[n]) if outputs[n].ndim else -1 for n in names}
    if len(batch) != 1 or -1 in batch:
        raise invalid(f"Tensor name: {names[0]} has inconsistent batch size or no shape")
    rows = []
    for index in range(batch.pop()):
        if len(names) == 1:
            rows.append(_value(outputs[names[0]][index], names[0]))
        else:
            fields = ", ".join(f"{json.dumps(n)}: {_value(outputs[n][index], n)}" for n in names)
            rows.append("{" + fields + "}")
    return '{"predictions": [' + ", ".join(rows) + "]}"


def _value(array: np.ndarray, name: str) -> str:
    if array.ndim == 0:
        return _scalar(array[()], name)
    return "[" + ", ".join(_value(sub, name) for sub in array) + "]"


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        if name.endswith(BYTES_SUFFIX):
            return json.dumps({"b64": base64.b64encode(value).decode("ascii")})
        return json.dumps(value.decode("utf-8", errors="replace"))
    if isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.floating):
        return decimal(value)
    return str(int(value))


def decimal(value: np.floating) -> str:
    """TF Serving's WriteDecimal: shortest of %g / max_digits10 that round-trips."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{float(value):.6g}"
    if type(value)(text) != value:
        digits = 9 if value.dtype == np.float32 else 17
        text = f"{float(value):.{digits}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def error_json(message: str) -> str:
    """TF Serving's error body."""
    return json.dumps({"error": message})
