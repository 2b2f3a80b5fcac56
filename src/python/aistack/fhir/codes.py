"""Every code system, code and identifier system the FHIR output uses, each defined once.

Sources (REFERENCE.md §7): the HL7 AI Transparency IG (``AIAST`` security label, AI device
types), IHE AI Results and the HL7 DICOM SR IG (imaging findings, DICOM UIDs, algorithm
identification), and FHIR R4's own terminology. SNOMED CT and LOINC codes were checked against
published FHIR value sets; :func:`snomed_id_is_valid` and :func:`loinc_code_is_valid` verify
their check digits, so a mistyped code cannot slip in unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- Identifier systems (URIs) ------------------------------------------------------------
PREDICTION_SYSTEM = "urn:aistack:prediction"
"""One prediction: the Observation's, DiagnosticReport's and heatmap Media's identifier, and
the Provenance's ``meta.tag`` (R4 Provenance has no identifier to search on)."""
INPUT_SHA256_SYSTEM = "urn:aistack:input-sha256"
"""The analysed image, by the SHA-256 of its bytes (hex): the source Media's identifier."""
MODEL_ARTIFACT_SYSTEM = "urn:aistack:model-artifact-sha256"
"""The trained artifact (SavedModel graph + variables), by its SHA-256: changes with every
training, as IHE AI Results asks of an algorithm identifier."""
DICOM_UID_SYSTEM = "urn:dicom:uid"
"""DICOM UIDs, written ``urn:oid:<uid>`` (FHIR R4 ImagingStudy.identifier guidance)."""

# --- Code systems -------------------------------------------------------------------------
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_SR_IDENTIFIER_TYPE = "http://hl7.org/fhir/uv/dicom-sr/CodeSystem/dicom-identifier-type"
AI_DEVICE_TYPE = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
V2_SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
CLASS_PROBABILITY = "urn:aistack:xray-class-probability"
"""The project's own codes for "probability of class X" (Observation.component.code)."""

AI_DEVICE_KIND_EXTENSION = (
    "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/aitransparency.AIKind"
)


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self, text: str | None = None) -> dict[str, Any]:
        """A CodeableConcept of this one coding."""
        return {"coding": [self.coding()], "text": text or self.display}


# AI Transparency IG: the security label of AI-asserted data, and the AI device types.
AI_ASSERTED = Code(V3_OBSERVATION_VALUE, "AIAST", "Artificial Intelligence asserted")
AI_DEVICE = Code(AI_DEVICE_TYPE, "Artificial-Intelligence", "All kinds of Artificial Intelligence")
DEEP_LEARNING = Code(AI_DEVICE_TYPE, "Deep-Learning-Models", "Deep Learning Models")

# Categories and the report's code. The chest view count is unknown (a single uploaded image
# or a DICOM instance), so the report takes LOINC's generic imaging-study code rather than an
# "XR Chest N Views" one.
IMAGING = Code(OBSERVATION_CATEGORY, "imaging", "Imaging")
RADIOLOGY = Code(V2_SERVICE_SECTION, "RAD", "Radiology")
DIAGNOSTIC_IMAGING_STUDY = Code(LOINC, "18748-4", "Diagnostic imaging study")

# Observation.code. The DICOM SR IG maps a qualitative evaluation (what an imaging algorithm
# asserts) to an Observation whose code names the concept ("Finding", DCM 121071 in DICOM
# CID 7002) and whose valueCodeableConcept is the coded finding. SNOMED CT's "Radiologic
# finding" is that concept in the terminology of the values (and is the concept COVID-19
# imaging data sets qualify); the DICOM code rides along for DICOM SR consumers.
RADIOLOGIC_FINDING = Code(SNOMED, "118247008", "Radiologic finding")
DICOM_FINDING = Code(DICOM_DCM, "121071", "Finding")

# valueCodeableConcept: the predicted class as SNOMED CT (REFERENCE.md §7, checked against the
# HL7 COVID-19 / SANER value sets and SNOMED's hierarchy).
FINDINGS: dict[str, Code] = {
    "covid": Code(SNOMED, "840539006", "COVID-19"),
    "normal": Code(SNOMED, "17621005", "Normal"),
    "pneumonia_bac": Code(SNOMED, "53084003", "Bacterial pneumonia"),
}
CLASS_PROBABILITIES: dict[str, Code] = {
    "covid": Code(CLASS_PROBABILITY, "covid", "Probability of COVID-19"),
    "normal": Code(CLASS_PROBABILITY, "normal", "Probability of a normal chest"),
    "pneumonia_bac": Code(CLASS_PROBABILITY, "pneumonia_bac", "Probability of bacterial pneumonia"),
}
PROBABILITY_UNIT = Code(UCUM, "1", "1")
"""UCUM's unity: probabilities are dimensionless (REFERENCE.md §7: valueQuantity, unit 1)."""

THORAX = Code(SNOMED, "51185008", "Thoracic structure")

NORMAL = Code(V3_INTERPRETATION, "N", "Normal")
ABNORMAL = Code(V3_INTERPRETATION, "A", "Abnormal")
POSITIVE = Code(V3_INTERPRETATION, "POS", "Positive")
NEGATIVE = Code(V3_INTERPRETATION, "NEG", "Negative")
INDETERMINATE = Code(V3_INTERPRETATION, "IND", "Indeterminate")

IMAGE = Code(MEDIA_TYPE, "image", "Image")
ALGORITHM_VERSION = Code(DICOM_DCM, "111003", "Algorithm Version")
"""Device.version.type: DICOM TID 4019 Algorithm Identification, as the DICOM SR IG maps it."""
PERFORMER = Code(PROVENANCE_PARTICIPANT_TYPE, "performer", "Performer")
"""The model "actually and principally carries out the activity" (R4 definition); an
assembler only re-packages what others produced."""
CREATE = Code(V3_DATA_OPERATION, "CREATE", "create")

ACCESSION = Code(V2_IDENTIFIER_TYPE, "ACSN", "Accession ID")
MEDICAL_RECORD_NUMBER = Code(V2_IDENTIFIER_TYPE, "MR", "Medical record number")
STUDY_INSTANCE_UID = Code(DICOM_DCM, "110180", "Study Instance UID")
SOP_INSTANCE_UID = Code(DICOM_SR_IDENTIFIER_TYPE, "sop-instance-uid", "SOP Instance UID")

ICU_ADMISSION = Code(SNOMED, "305351004", "Admission to intensive care unit")
"""The ICU predictor's RiskAssessment.prediction.outcome (a SNOMED CT procedure concept)."""

REGISTERED: dict[tuple[str, str], Code] = {
    (c.system, c.code): c
    for c in (
        AI_ASSERTED,
        AI_DEVICE,
        DEEP_LEARNING,
        IMAGING,
        RADIOLOGY,
        DIAGNOSTIC_IMAGING_STUDY,
        RADIOLOGIC_FINDING,
        DICOM_FINDING,
        *FINDINGS.values(),
        *CLASS_PROBABILITIES.values(),
        PROBABILITY_UNIT,
        THORAX,
        NORMAL,
        ABNORMAL,
        POSITIVE,
        NEGATIVE,
        INDETERMINATE,
        IMAGE,
        ALGORITHM_VERSION,
        PERFORMER,
        CREATE,
        ACCESSION,
        MEDICAL_RECORD_NUMBER,
        STUDY_INSTANCE_UID,
        SOP_INSTANCE_UID,
        ICU_ADMISSION,
    )
}
"""The closed list of codes the builders may emit, by (system, code)."""
REGISTERED_SYSTEMS = frozenset(system for system, _ in REGISTERED)
"""A coding in one of these systems must be in :data:`REGISTERED`, with the same display."""


# --- R4 value sets with a *required* binding (fhir.resources does not enforce them) --------
def _value_set(codes: str) -> frozenset[str]:
    return frozenset(codes.split())


OBSERVATION_STATUS = _value_set(
    "registered preliminary final amended corrected cancelled entered-in-error unknown"
)
REPORT_STATUS = _value_set(
    "registered partial preliminary final amended corrected appended cancelled "
    "entered-in-error unknown"
)
EVENT_STATUS = _value_set(
    "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"
)
DEVICE_STATUS = _value_set("active inactive entered-in-error unknown")
DEVICE_NAME_TYPE = _value_set(
    "udi-label-name user-friendly-name patient-reported-name manufacturer-name model-name other"
)
PROVENANCE_ENTITY_ROLE = _value_set("derivation revision quotation source removal")
BUNDLE_TYPE = _value_set(
    "document message transaction transaction-response batch batch-response history "
    "searchset collection"
)
HTTP_VERB = _value_set("GET HEAD POST PUT DELETE PATCH")

# --- Check digits ---------------------------------------------------------------------------
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def snomed_id_is_valid(sctid: str) -> bool:
    """A SNOMED CT concept id: 6-18 digits, concept partition (``00``/``10``), Verhoeff digit."""
    if not (sctid.isdigit() and 6 <= len(sctid) <= 18 and sctid[0] != "0"):
        return False
    if sctid[-3:-1] not in ("00", "10"):
        return False
    check = 0
    for position, digit in enumerate(reversed(sctid)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(digit)]]
    return check == 0


def loinc_code_is_valid(code: str) -> bool:
    """``NNNNN-C`` with LOINC's mod-10 check digit ``C``."""
    number, _, check = code.partition("-")
    if not (number.isdigit() and check.isdigit() and len(check) == 1):
        return False
    digits = [int(d) for d in reversed(number)]
    doubled = int("".join(str(d) for d in digits[0::2])) * 2  # odd places, read from the right
    total = sum(int(d) for d in str(doubled)) + sum(digits[1::2])
    return (10 - total % 10) % 10 == int(check)
