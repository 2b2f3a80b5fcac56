"""The JSON both runtimes answer with: response models and the builders that fill them.

FastAPI routes declare these as ``response_model``; the IRIS REST front sends
:func:`to_json` of the same objects. Either way the bytes a client parses are the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from aistack.fhir.resource_store import FHIR_BASE_PATH
from aistack.store import PredictionRecord
from aistack.store.jobs import JobRecord, JobStatus
from aistack.xray.files import HEATMAP, RESULT, SOURCE
from aistack.xray.labels import BACTERIAL_INDEX, CLASSES, V1_CLASS_NAMES
from aistack.xray.links import FileLinks
from aistack.xray.service import is_low_confidence

HEALTHCHECK_TEXT = "Covid19 detector API is live!\n\n"


# --- v1: the 2020 keys, typos included


class V1Prediction(BaseModel):
    """`/predict/`: the 2020 keys, misspelt ``Classfication`` included."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(description="model name and version")
    result: str = Field(
        alias="X-Ray_Classification_Result",
        description="Covid19 | Normal_Lung | Pneumonia_Bacterial_Lung",
    )
    raw_result: list[list[float]] = Field(
        alias="X-Ray_Classfication_Raw_Result",
        description="[[p_covid, p_normal, p_bacterial]]",
    )


class V1HeatmapPrediction(BaseModel):
    """`/predict/heatmap`: the label worded as in 2020, probability and image URLs.

    Fields are declared in the 2020 key order.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(description="model name and version")
    result: str = Field(
        alias="X-Ray_Classification_Result",
        description="Covid-19 POSITIVE | Covid-19 Negative; Bacterial Penumonia Positive | "
        "Covid-19 Negative; Bacterial Penumonia Negative",
    )
    covid_probability: float = Field(alias="X-Ray_Classification_Covid19_Probability")
    raw_result: list[list[float]] = Field(alias="X-Ray_Classfication_Raw_Result")
    input_image: str = Field(alias="Input_Image", description="signed URL of the upload")
    output_heatmap: str = Field(alias="Output_Heatmap", description="signed URL of the overlay")


# --- v2


class PredictionRequest(BaseModel):
    image_b64: StrictStr = Field(
        min_length=4,
        description="base64 of a JPEG, PNG or DICOM file (a data: URL is accepted)",
        json_schema_extra={"format": "byte"},
    )
    heatmap: StrictBool = Field(True, description="also compute and render the Grad-CAM heatmap")


class Probabilities(BaseModel):
    covid: float
    normal: float
    pneumonia_bac: float


class ModelRef(BaseModel):
    name: str
    version: int


class DicomReference(BaseModel):
    """Where a DICOM input came from, as its tags say (each null when the file lacks it)."""

    patient_id: str | None = Field(description="Patient ID (0010,0020)")
    study_instance_uid: str | None = Field(description="Study Instance UID (0020,000D)")
    series_instance_uid: str | None = Field(description="Series Instance UID (0020,000E)")
    sop_instance_uid: str | None = Field(description="SOP Instance UID (0008,0018)")
    accession_number: str | None = Field(description="Accession Number (0008,0050)")


class FhirLink(BaseModel):
    id: str
    url: str = Field(description="absolute URL of the resource on this service's /fhir/r4")


class FhirResources(BaseModel):
    """The prediction's FHIR R4 resources in this service's store (read them with a key that
    may read every prediction)."""

    observation: FhirLink
    diagnostic_report: FhirLink


class Prediction(BaseModel):
    id: str
    created_at: datetime
    label: str = Field(description="covid | normal | pneumonia_bac")
    probabilities: Probabilities
    covid_positive: bool = Field(description="label is covid and p(covid) > threshold")
    threshold: float
    low_confidence: bool = Field(
        description="the top two probabilities are closer than the service's margin: "
        "treat the label as uncertain"
    )
    image_url: str | None = Field(description="signed URL of the upload (expires)")
    heatmap_url: str | None = Field(description="colorized Grad-CAM alone, image-sized")
    overlay_url: str | None = Field(description="Grad-CAM blended over the image")
    model: ModelRef = Field(description="the model version that classified the image")
    backend: str | None = Field(
        description="the inference backend that ran it (inprocess, or a TF Serving one); "
        "null for predictions stored before backends were recorded"
    )
    latency_ms: float
    input_sha256: str
    dicom: DicomReference | None = Field(
        description="the DICOM input's identifiers; null when the image was JPEG or PNG"
    )
    fhir: FhirResources | None = Field(
        description="its Observation and DiagnosticReport at /fhir/r4; null for predictions "
        "stored before the service kept FHIR resources (or by the IRIS runtime)"
    )


class JobError(BaseModel):
    code: str = Field(description="the error code a synchronous prediction would have got")
    message: str


class Job(BaseModel):
    """An asynchronous prediction: poll it until ``succeeded`` or ``failed``."""

    id: str
    status: JobStatus = Field(description="queued, then running, then succeeded or failed")
    created_at: datetime
    updated_at: datetime
    prediction: Prediction | None = Field(description="the stored prediction, once succeeded")
    error: JobError | None = Field(description="why it failed, once failed")


# --- builders


def v1_heatmap_label(record: PredictionRecord) -> str:
    """The 2020 wording, misspelling included, which clients match on."""
    if record.covid_positive:
        return "Covid-19 POSITIVE"
    if record.label == CLASSES[BACTERIAL_INDEX]:
        return "Covid-19 Negative; Bacterial Penumonia Positive"
    return "Covid-19 Negative; Bacterial Penumonia Negative"


def _raw(record: PredictionRecord) -> list[list[float]]:
    return [[record.probabilities[name] for name in CLASSES]]


def _model_name(record: PredictionRecord) -> str:
    return f"{record.model_name} v{record.model_version}"


def v1_prediction(record: PredictionRecord) -> V1Prediction:
    return V1Prediction(
        model_name=_model_name(record),
        result=V1_CLASS_NAMES[CLASSES.index(record.label)],
        raw_result=_raw(record),
    )


def v1_heatmap_prediction(record: PredictionRecord, links: FileLinks) -> V1HeatmapPrediction:
    return V1HeatmapPrediction(
        model_name=_model_name(record),
        result=v1_heatmap_label(record),
        covid_probability=round(record.probabilities["covid"], 2),
        raw_result=_raw(record),
        input_image=links.file_url(SOURCE, record.image_file),
        output_heatmap=links.file_url(RESULT, record.overlay_file),
    )


def v2_prediction(
    record: PredictionRecord, links: FileLinks, low_confidence_margin: float
) -> Prediction:
    return Prediction(
        id=record.id,
        created_at=record.created_at,
        label=record.label,
        probabilities=Probabilities(**record.probabilities),
        covid_positive=record.covid_positive,
        threshold=record.threshold,
        low_confidence=is_low_confidence(
            list(record.probabilities.values()), low_confidence_margin
        ),
        image_url=links.file_url(SOURCE, record.image_file),
        heatmap_url=links.file_url(HEATMAP, record.heatmap_file),
        overlay_url=links.file_url(RESULT, record.overlay_file),
        model=ModelRef(name=record.model_name, version=record.model_version),
        backend=record.backend,
        latency_ms=record.latency_ms,
        input_sha256=record.input_sha256,
        dicom=dicom_reference(record),
        fhir=fhir_resources(record, links),
    )


def fhir_resources(record: PredictionRecord, links: FileLinks) -> FhirResources | None:
    observation, report = record.fhir_observation_id, record.fhir_report_id
    if observation is None or report is None:
        return None

    def link(resource_type: str, resource_id: str) -> FhirLink:
        return FhirLink(
            id=resource_id, url=links.url(f"{FHIR_BASE_PATH}/{resource_type}/{resource_id}")
        )

    return FhirResources(
        observation=link("Observation", observation),
        diagnostic_report=link("DiagnosticReport", report),
    )


def dicom_reference(record: PredictionRecord) -> DicomReference | None:
    """The identifiers of a prediction made from a DICOM file (stored as ``.dcm``)."""
    identifiers = {name: getattr(record, name) for name in DicomReference.model_fields}
    from_dicom = (record.image_file or "").endswith(".dcm")
    if not from_dicom and not any(identifiers.values()):
        return None
    return DicomReference(**identifiers)


def job_view(job: JobRecord, prediction: Prediction | None) -> Job:
    """``prediction`` is the job's stored prediction (None until it succeeded)."""
    error = None
    if job.error_code is not None:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return Job(
        id=job.id,
        status=job.status,
        created_at=job.created_at,
        updated_at=job.updated_at,
        prediction=prediction,
        error=error,
    )


def to_json(model: BaseModel) -> dict[str, Any]:
    """The JSON value FastAPI sends for ``model`` as a ``response_model``: aliases (the v1
    keys), ISO 8601 datetimes with ``Z`` for UTC."""
    return model.model_dump(mode="json", by_alias=True)
