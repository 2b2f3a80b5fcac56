"""What the builders read from a prediction: the record's facts, its DICOM context, stable ids.

Builders take a :class:`PredictionContext`, never the store's record directly, so that the
record's optional DICOM fields are read in one place (with ``getattr``: older records and
stores without those columns still build).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aistack.fhir.codes import (
    ACCESSION,
    DICOM_UID_SYSTEM,
    MEDICAL_RECORD_NUMBER,
    PREDICTION_SYSTEM,
    STUDY_INSTANCE_UID,
)

FULL_URL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aistack:fhir")
"""Bundle ``fullUrl`` UUIDs derive from resource type and id in this namespace: a retried
publish sends the very same Bundle."""

OBSERVATION_PREFIX = "obs"
REPORT_PREFIX = "report"
HEATMAP_PREFIX = "heatmap"
SOURCE_PREFIX = "src"
PROVENANCE_PREFIX = "prov"
DEVICE_PREFIX = "device"


class PredictionLike(Protocol):
    """The fields of :class:`aistack.store.PredictionRecord` the builders read."""

    id: str
    created_at: datetime
    model_name: str
    model_version: int
    input_sha256: str
    probabilities: dict[str, float]
    label: str
    covid_positive: bool
    threshold: float
    image_file: str | None
    overlay_file: str | None


@dataclass(frozen=True)
class DicomContext:
    """The DICOM identifiers of the analysed image, when it came as DICOM."""

    patient_id: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    accession_number: str | None = None

    @classmethod
    def from_record(cls, record: object) -> DicomContext:
        def read(name: str) -> str | None:
            value = getattr(record, name, None)
            return None if value is None else (str(value).strip() or None)

        return cls(
            patient_id=read("patient_id"),
            study_instance_uid=read("study_instance_uid"),
            series_instance_uid=read("series_instance_uid"),
            sop_instance_uid=read("sop_instance_uid"),
            accession_number=read("accession_number"),
        )


@dataclass(frozen=True)
class PredictionContext:
    record: PredictionLike
    dicom: DicomContext
    issued: str
    """``created_at`` as a FHIR instant."""
    patient_system: str | None = None
    """The issuer of DICOM Patient IDs at this site, when known (Identifier.system)."""

    @classmethod
    def of(cls, record: PredictionLike, patient_system: str | None = None) -> PredictionContext:
        dicom = DicomContext.from_record(record)
        return cls(record, dicom, instant(record.created_at), patient_system)

    @property
    def prediction_id(self) -> str:
        return self.record.id

    def resource_id(self, prefix: str) -> str:
        return f"{prefix}-{self.record.id}"

    def prediction_identifier(self) -> dict[str, str]:
        return {"system": PREDICTION_SYSTEM, "value": self.record.id}

    def subject(self) -> dict[str, Any] | None:
        """The Patient, by the DICOM Patient ID (a logical reference); None when unknown."""
        if self.dicom.patient_id is None:
            return None
        identifier: dict[str, Any] = {
            "type": MEDICAL_RECORD_NUMBER.concept(),
            "value": self.dicom.patient_id,
        }
        if self.patient_system:
            identifier["system"] = self.patient_system
        return {"type": "Patient", "identifier": identifier}

    def imaging_study(self) -> dict[str, Any] | None:
        """The ImagingStudy by its Study Instance UID (the DICOM SR IG's study reference)."""
        if self.dicom.study_instance_uid is None:
            return None
        return {
            "type": "ImagingStudy",
            "identifier": {
                "type": STUDY_INSTANCE_UID.concept(),
                "system": DICOM_UID_SYSTEM,
                "value": dicom_uid(self.dicom.study_instance_uid),
            },
        }

    def order(self) -> dict[str, Any] | None:
        """The ServiceRequest by its accession number (``basedOn``); None when unknown."""
        if self.dicom.accession_number is None:
            return None
        return {
            "type": "ServiceRequest",
            "identifier": {"type": ACCESSION.concept(), "value": self.dicom.accession_number},
        }


def reference(resource_type: str, resource_id: str) -> dict[str, str]:
    """A relative literal reference; :mod:`aistack.fhir.bundle` turns it into a ``urn:uuid``."""
    return {"reference": f"{resource_type}/{resource_id}"}


def full_url(resource_type: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, f'{resource_type}/{resource_id}')}"


def dicom_uid(uid: str) -> str:
    return f"urn:oid:{uid}"


def instant(moment: datetime) -> str:
    """A FHIR instant; naive datetimes are refused (their zone is unknowable), as in the store."""
    if moment.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
