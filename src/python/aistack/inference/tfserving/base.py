"""What the REST and gRPC engines do alike: addressing, one predict per batch, probing.

Transports differ only in how a predict, a status and a metadata call travel and how their
failures read; the rules around them are TF Serving's and the same for both.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from aistack.errors import AistackError, BackendUnavailable, BadRequest, ModelNotFound
from aistack.inference.engine import EngineOutput, ModelInfo
from aistack.inference.tfserving.codec import (
    AVAILABLE,
    encode_pixels,
    engine_output,
    not_available,
)

REFINE_TIMEOUT_S = 2.0
"""Budget of the status call that tells a loading version from a missing one."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY_8_BIT = (8, 0)
"""PNG bit depth and colour type of one 8-bit grey channel: what ``encode_pixels`` writes."""


def check_model_input(image: bytes, image_size: int) -> None:
    """A PNG's header (signature, then IHDR) says ``image_size`` square, 8-bit grey.

    The pixels are not decoded (TF Serving does that); the header is enough to know that
    they reach the model as they are, as :mod:`.codec` explains.
    """
    header = image[:26]
    if (
        len(header) < 26
        or not header.startswith(PNG_SIGNATURE)
        or header[12:16] != b"IHDR"
        or struct.unpack(">II", header[16:24]) != (image_size, image_size)
        or tuple(header[24:26]) != GREY_8_BIT
    ):
        raise BadRequest(f"a model input is not a {image_size}x{image_size} grey PNG")


class TfServingEngineBase:
    """An :class:`~aistack.inference.engine.InferenceEngine` on one TF Serving model address.

    Subclasses send the calls: ``_predict``, ``status``, ``metadata`` and ``close``.
    """

    def __init__(
        self,
        name: str,
        model: str,
        info: ModelInfo,
        version: int | None,
        label: str | None,
        timeout_s: float,
    ) -> None:
        if version is not None and label is not None:
            raise ValueError("address a version or a label, not both (TF Serving refuses both)")
        self.info = info
        self.backend = name
        self.model = model
        self.version = version
        self.label = label
        self.timeout_s = timeout_s
        self.address = ""
        self._closed = False

    def infer(
        self, pixels: np.ndarray, heatmap: bool, timeout_s: float | None = None
    ) -> EngineOutput:
        """One predict call for the whole batch; ``timeout_s`` defaults to the engine's."""
        return self._run(encode_pixels(pixels, self.info.image_size), heatmap, timeout_s)

    def infer_encoded(
        self, images: list[bytes], heatmap: bool, timeout_s: float | None = None
    ) -> EngineOutput:
        """:meth:`infer` for model inputs that are PNGs already (``codec.encode_pixels``).

        A caller that received them encoded (the IRIS runtime's TF Serving operation) sends
        them as they are: only their PNG header is read, to refuse a wrong size or colour
        type that the model would otherwise resize or convert without a word.
        """
        if not images:
            raise BadRequest("an inference request needs at least one image")
        for image in images:
            check_model_input(image, self.info.image_size)
        return self._run(images, heatmap, timeout_s)

    def probe(self, timeout_s: float = 2.0) -> bool:
        """True iff the addressed version (without one: some version) is AVAILABLE.

        TF Serving's status ignores a version label and lists every version, so a label is
        probed through the metadata call, which resolves the label to a loaded version.
        """
        try:
            if self.label is not None:
                self.metadata(timeout_s)
                return True
            entries = self.status(timeout_s)
        except AistackError:
            return False
        return any(entry.get("state") == AVAILABLE for entry in entries)

    def status(self, timeout_s: float | None = None) -> list[dict]:
        raise NotImplementedError

    def metadata(self, timeout_s: float | None = None) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True

    def _run(self, images: list[bytes], heatmap: bool, timeout_s: float | None) -> EngineOutput:
        timeout = self._timeout(timeout_s)
        try:
            outputs = self._predict(images, heatmap, timeout)
        except ModelNotFound as error:
            raise self._missing_or_loading(error, timeout) from error
        return engine_output(outputs, len(images), self.info, heatmap, self._source)

    def _predict(self, images: list[bytes], heatmap: bool, timeout_s: float) -> Mapping[str, Any]:
        """The named outputs of one predict call (nested lists or arrays)."""
        raise NotImplementedError

    @property
    def _source(self) -> str:
        return f"TF Serving {self.address}"

    def _timeout(self, timeout_s: float | None) -> float:
        return self.timeout_s if timeout_s is None else timeout_s

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable(f"{self._source}: the engine is closed")

    def _missing_or_loading(self, error: ModelNotFound, timeout_s: float) -> AistackError:
        """After "Servable not found": a version still loading is unavailable, not missing."""
        try:
            entries = self.status(min(timeout_s, REFINE_TIMEOUT_S))
        except AistackError:
            return error
        waiting = not_available(entries)
        if waiting:
            return BackendUnavailable(f"{self._source}: {', '.join(waiting)}")
        return error
