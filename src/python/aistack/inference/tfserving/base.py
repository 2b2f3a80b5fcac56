"""What the REST and gRPC engines do alike: addressing, one predict per batch, probing.

Transports differ only in how a predict, a status and a metadata call travel and how their
failures read; the rules around them are TF Serving's and the same for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aistack.errors import AistackError, BackendUnavailable, ModelNotFound
from aistack.inference.engine import EngineOutput, ModelInfo
from aistack.inference.tfserving.codec import (
    AVAILABLE,
    encode_pixels,
    engine_output,
    not_available,
)

REFINE_TIMEOUT_S = 2.0
"""Budget of the status call that tells a loading version from a missing one."""


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
        timeout = self._timeout(timeout_s)
        images = encode_pixels(pixels, self.info.image_size)
        try:
            outputs = self._predict(images, heatmap, timeout)
        except ModelNotFound as error:
            raise self._missing_or_loading(error, timeout) from error
        return engine_output(outputs, len(images), self.info, heatmap, self._source)

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
