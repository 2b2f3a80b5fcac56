"""X-ray prediction use case, free of any web framework: bytes in, a stored record out.

The standalone FastAPI app calls it directly; the engine is injected, so the IRIS runtime
can wrap the same object with a TF Serving engine in place of the in-process one.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from aistack.config import Settings
from aistack.errors import BUSY_MESSAGE, ServiceBusy
from aistack.imaging.decode import DecodedImage, decode_image
from aistack.imaging.overlay import blend, colorize_heatmap, encode_jpeg, fit_within
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_grayscale_uint8, to_model_input
from aistack.inference.engine import InferenceEngine
from aistack.inference.gate import Gate, GateFull, Ticket
from aistack.logs import log_event
from aistack.metrics import INFERENCE_DURATION, PREDICTIONS, REJECTED
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.files import HEATMAP, RESULT, SOURCE, FileStore
from aistack.xray.labels import COVID_INDEX
from aistack.xray.plausibility import InputCheck

OVERLAY_MAX_SIDE = 768
"""Rendered heatmaps are at most this many pixels on their longer side: cheap to encode,
ample for a screen."""

SWEEP_EVERY = 500


@dataclass(frozen=True)
class XrayPolicy:
    max_bytes: int
    max_pixels: int
    covid_threshold: float
    heatmap_alpha: float
    max_concurrent_decodes: int = 2
    low_confidence_margin: float = 0.2
    max_queued_predictions: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> XrayPolicy:
        """The limits and thresholds ``AISTACK_*`` sets, alike in both runtimes."""
        return cls(
            max_bytes=settings.max_body_bytes,
            max_pixels=settings.max_pixels,
            covid_threshold=settings.covid_threshold,
            heatmap_alpha=settings.heatmap_alpha,
            max_concurrent_decodes=settings.max_concurrent_decodes,
            low_confidence_margin=settings.low_confidence_margin,
            max_queued_predictions=settings.max_queued_predictions,
        )


def is_covid_positive(probabilities: np.ndarray, threshold: float) -> bool:
    """The 2020 rule: covid is the top class AND its probability exceeds the threshold."""
    return (
        int(np.argmax(probabilities)) == COVID_INDEX
        and float(probabilities[COVID_INDEX]) > threshold
    )


def is_low_confidence(probabilities: np.ndarray, margin: float) -> bool:
    """The top two classes are closer than ``margin``: the label is a near coin-toss."""
    top_two = np.sort(np.asarray(probabilities, dtype=np.float64))[-2:]
    return bool(top_two[1] - top_two[0] < margin)


@dataclass(frozen=True)
class ModelRun:
    image: DecodedImage
    probabilities: np.ndarray  # (classes,)
    heatmap: np.ndarray | None  # (h, w) in 0..1
    backend: str


def run_model(
    engine: InferenceEngine,
    data: bytes,
    max_pixels: int,
    heatmap: bool,
    max_bytes: int | None = None,
    input_check: InputCheck | None = None,
) -> ModelRun:
    """Decode with limits, preprocess, check plausibility, run the model once.

    ``input_check`` refuses pictures unlike the training X-rays (422 not_a_chest_xray)
    before the model is asked; Grad-CAM comes from the same pass when ``heatmap``.
    """
    image = decode_image(data, max_pixels, min_side=DECODE_MIN_SIDE, max_bytes=max_bytes)
    pixels = to_model_input(image.pixels, engine.info.image_size)
    if input_check is not None:
        input_check.check(pixels, image.width, image.height)
    started = time.perf_counter()
    output = engine.infer(pixels[np.newaxis], heatmap=heatmap)
    if output.backend is None:  # a router times each backend itself
        INFERENCE_DURATION.labels(engine.backend, str(heatmap).lower()).observe(
            time.perf_counter() - started
        )
    cam = output.heatmaps[0] if output.heatmaps is not None else None
    return ModelRun(image, output.probabilities[0], cam, output.backend or engine.backend)


def render_heatmaps(
    image: DecodedImage, cam: np.ndarray, alpha: float, max_side: int = OVERLAY_MAX_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """(colorized heatmap alone, heatmap blended over the image), at most ``max_side``."""
    shown = fit_within(to_grayscale_uint8(image.pixels), max_side)
    height, width = shown.shape[:2]
    colorized = colorize_heatmap(cam, (width, height))
    return colorized, blend(shown, colorized, alpha)


ResourceRecorder = Callable[[PredictionRecord], PredictionRecord]
"""Stores a new prediction's FHIR resources and returns its record naming them; never raises.
The standalone runtime's is :class:`aistack.fhir.transaction.PredictionRecorder`."""


class XrayService:
    def __init__(
        self,
        engine: InferenceEngine,
        store: PredictionStore,
        files: FileStore,
        policy: XrayPolicy,
        input_check: InputCheck | None = None,
        record_resources: ResourceRecorder | None = None,
    ) -> None:
        self.engine = engine
        self.input_check = input_check
        self.record_resources = record_resources
        self.store = store
        self.files = files
        self.policy = policy
        self._count = 0
        # Decoding and rendering hold the image in memory: a few at once, a few waiting, and
        # the rest refused at once (503), so overload neither grows memory nor latency.
        self.admission = Gate(max(1, policy.max_concurrent_decodes), policy.max_queued_predictions)

    def refuse_if_full(self) -> None:
        """503 ``service_busy`` now, before the body is read, when no place is free.

        Under overload most requests are refused: refusing them before their upload is
        read and parsed keeps that cheap, so the event loop stays free for the admitted.
        """
        if self.admission.full:
            REJECTED.labels("admission").inc()
            raise ServiceBusy(BUSY_MESSAGE)

    def admit(self) -> Ticket:
        """A place among the predictions running or waiting, or 503 ``service_busy`` at once.

        The web routes take it on the event loop, before handing the work to a thread, so
        an overload is refused in milliseconds instead of queueing for a worker thread.
        """
        try:
            return self.admission.reserve()
        except GateFull:
            REJECTED.labels("admission").inc()
            raise ServiceBusy(BUSY_MESSAGE) from None

    def predict(
        self,
        data: bytes,
        heatmap: bool,
        endpoint: str,
        client: str | None = None,
        ticket: Ticket | None = None,
    ) -> PredictionRecord:
        """Decode with limits, run the model once, render and store; raises 4xx errors.

        ``client`` names the API key that asked (it may read the prediction back);
        ``ticket`` is the place :meth:`admit` gave, else one is taken here.
        """
        started = time.perf_counter()
        prediction_id = uuid.uuid4().hex
        with (ticket or self.admit()).run():
            run = run_model(
                self.engine,
                data,
                self.policy.max_pixels,
                heatmap,
                self.policy.max_bytes,
                self.input_check,
            )
            rendered = self._render(run) if run.heatmap is not None else None
        probabilities = run.probabilities
        image_file = self.files.write(SOURCE, f"{prediction_id}.{_extension(run.image)}", data)
        heatmap_file = overlay_file = None
        if rendered is not None:
            name = f"{prediction_id}.jpg"
            heatmap_file = self.files.write(HEATMAP, name, rendered[0])
            overlay_file = self.files.write(RESULT, name, rendered[1])

        classes = self.engine.info.classes
        record = PredictionRecord(
            id=prediction_id,
            created_at=datetime.now(UTC),
            model_name=self.engine.info.name,
            model_version=self.engine.info.version,
            input_sha256=hashlib.sha256(data).hexdigest(),
            probabilities={name: float(p) for name, p in zip(classes, probabilities, strict=True)},
            label=classes[int(np.argmax(probabilities))],
            covid_positive=is_covid_positive(probabilities, self.policy.covid_threshold),
            threshold=self.policy.covid_threshold,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            endpoint=endpoint,
            image_file=image_file,
            heatmap_file=heatmap_file,
            overlay_file=overlay_file,
            client=client,
            backend=run.backend,
            **_dicom_identifiers(run.image),
        )
        if self.record_resources is not None:  # after the model, outside the admission gate
            record = self.record_resources(record)
        self.store.add(record)
        PREDICTIONS.labels(record.label, endpoint).inc()
        log_event(
            "prediction",
            prediction_id=record.id,
            endpoint=endpoint,
            client=client,
            label=record.label,
            covid_positive=record.covid_positive,
            model_version=record.model_version,
            latency_ms=record.latency_ms,
            backend=record.backend,
        )
        self._maybe_sweep()
        return record

    def _render(self, run: ModelRun) -> tuple[bytes, bytes]:
        """(heatmap JPEG, overlay JPEG)."""
        colored, blended = render_heatmaps(run.image, run.heatmap, self.policy.heatmap_alpha)
        return encode_jpeg(colored), encode_jpeg(blended)

    def sweep_files(self) -> int:
        """Remove stored files past retention and files whose row a crash never wrote."""
        return self.files.sweep(known_ids=self.store.existing_ids)

    def _maybe_sweep(self) -> None:
        """Every SWEEP_EVERY predictions, old and orphaned files go, off the request path."""
        self._count += 1
        if self._count % SWEEP_EVERY == 0:
            threading.Thread(target=self.sweep_files, name="file-sweep", daemon=True).start()


def _extension(image: DecodedImage) -> str:
    """The stored upload keeps its format: a DICOM file stays one, tags and all."""
    return {"PNG": "png", "DICOM": "dcm"}.get(image.format, "jpg")


def _dicom_identifiers(image: DecodedImage) -> dict[str, str | None]:
    """The record's DICOM fields (patient, study, series, instance, accession); none for
    JPEG and PNG. They are stored and returned, never logged."""
    return asdict(image.dicom) if image.dicom is not None else {}
