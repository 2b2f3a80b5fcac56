"""Media (R4 has it; R5 replaced it): the analysed image and the Grad-CAM heatmap over it.

R4 Media has no ``derivedFrom``; the heatmap's origin (the source image, the ImagingStudy) is
stated by the Provenance, whose entities are the inputs. Media.modality is left out: R4 binds
it to DICOM acquisition modalities, and a heatmap was not acquired by any.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from aistack.fhir.codes import (
    AI_ASSERTED,
    DICOM_UID_SYSTEM,
    IMAGE,
    INPUT_SHA256_SYSTEM,
    SOP_INSTANCE_UID,
    THORAX,
)
from aistack.fhir.context import (
    HEATMAP_PREFIX,
    SOURCE_PREFIX,
    PredictionContext,
    dicom_uid,
    reference,
)
from aistack.fhir.device import ModelDescription
from aistack.xray.files import MEDIA_TYPES

STATUS = "completed"
HEATMAP_CONTENT_TYPE = MEDIA_TYPES["jpg"]


@dataclass(frozen=True)
class MediaLinks:
    """Where readers fetch the images; the caller decides (public, signed, or none).

    A signed URL expires (``AISTACK_FILE_URL_TTL_S``): stores keeping the resources for long
    want unsigned URLs behind their own access control, or the bytes themselves.
    """

    image_url: str | None = None
    overlay_url: str | None = None
    """The heatmap blended over the image (JPEG)."""
    overlay_jpeg: bytes | None = None
    """The same image's bytes, to embed as ``content.data`` (size and SHA-1 hash added)."""


def source_media_json(ctx: PredictionContext, links: MediaLinks) -> dict[str, Any]:
    """The analysed image: identified by its SHA-256 (and SOP Instance UID when DICOM)."""
    record, dicom = ctx.record, ctx.dicom
    identifiers: list[dict[str, Any]] = [
        {"system": INPUT_SHA256_SYSTEM, "value": record.input_sha256}
    ]
    if dicom.sop_instance_uid:
        identifiers.append(
            {
                "type": SOP_INSTANCE_UID.concept(),
                "system": DICOM_UID_SYSTEM,
                "value": dicom_uid(dicom.sop_instance_uid),
            }
        )
    if dicom.series_instance_uid:
        identifiers.append(
            {
                "type": {"text": "Series Instance UID"},
                "system": DICOM_UID_SYSTEM,
                "value": dicom_uid(dicom.series_instance_uid),
            }
        )
    content: dict[str, Any] = {"title": "Chest X-ray analysed by the model"}
    extension = (record.image_file or "").rpartition(".")[2]
    if kind := MEDIA_TYPES.get(extension):  # stored files are <prediction id>.<jpg|png>
        content["contentType"] = kind
    if links.image_url:
        content["url"] = links.image_url
    return _media(ctx, SOURCE_PREFIX, identifiers, content)


def heatmap_media_json(
    ctx: PredictionContext, model: ModelDescription, links: MediaLinks
) -> dict[str, Any] | None:
    """The Grad-CAM heatmap over the image, made by the model; None when there is none."""
    if not (ctx.record.overlay_file or links.overlay_url or links.overlay_jpeg):
        return None
    content: dict[str, Any] = {
        "contentType": HEATMAP_CONTENT_TYPE,
        "title": "Grad-CAM heatmap of the model's attention over the chest X-ray",
        "creation": ctx.issued,
    }
    if links.overlay_url:
        content["url"] = links.overlay_url
    if links.overlay_jpeg is not None:
        content["data"] = base64.b64encode(links.overlay_jpeg).decode("ascii")
        content["size"] = len(links.overlay_jpeg)
        # R4 Attachment.hash is the SHA-1 of the data, base64-encoded.
        content["hash"] = base64.b64encode(hashlib.sha1(links.overlay_jpeg).digest()).decode()
    media = _media(ctx, HEATMAP_PREFIX, [ctx.prediction_identifier()], content)
    media["meta"] = {"security": [AI_ASSERTED.coding()]}
    media["createdDateTime"] = ctx.issued
    media["device"] = reference("Device", model.device_id)
    media["deviceName"] = f"{model.name} v{model.version}"
    media["note"] = [{"text": "AI-generated explanation image, not a diagnosis."}]
    return media


def _media(
    ctx: PredictionContext, prefix: str, identifiers: list[dict[str, Any]], content: dict
) -> dict[str, Any]:
    media: dict[str, Any] = {
        "resourceType": "Media",
        "id": ctx.resource_id(prefix),
        "identifier": identifiers,
        "status": STATUS,
        "type": IMAGE.concept(),
        "bodySite": THORAX.concept(),
        "issued": ctx.issued,
        "content": content,
    }
    if (order := ctx.order()) is not None:
        media["basedOn"] = [order]
    if (subject := ctx.subject()) is not None:
        media["subject"] = subject
    return media
