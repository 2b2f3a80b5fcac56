"""Decode DICOM radiographs to the 8-bit gray image the rest of the pipeline uses.

The rules, each checked on the header before a pixel is decoded:

- a DICOM Part 10 file: 128-byte preamble, ``DICM``, then File Meta Information naming the
  transfer syntax (a bare dataset without them is not taken: STOW-RS and media both send
  Part 10 files, and without the preamble any bytes could pass for one);
- one frame: a multi-frame object (a cine, a tomosynthesis stack) is refused (415) rather
  than classified by whichever frame came first;
- ``MONOCHROME1`` or ``MONOCHROME2`` (a radiograph), or ``RGB``/``YBR_*`` (a secondary
  capture), which is converted to gray with the luma weights JPEG and PNG uploads get;
  ``PALETTE COLOR`` and others are refused (415);
- 8 or 16 bits allocated, 8 to 16 stored; rows x columns within ``max_pixels`` (413);
- a transfer syntax some installed decoder handles: native, RLE, JPEG baseline (Pillow),
  JPEG 2000 (pylibjpeg-openjpeg, preferred, or Pillow); any other (JPEG-LS, JPEG lossless
  without pylibjpeg-libjpeg, deflate, whose dataset would be inflated without bound) is
  a 415 that names it.

Pixels then go from stored values to display values as a viewer shows them: Modality LUT or
Rescale Slope/Intercept, then the first VOI LUT or, failing one, the first Window
Center/Width (pydicom's ``apply_modality_lut`` and ``apply_voi_lut``), scaled to 0..255 over
the VOI output range and inverted for ``MONOCHROME1``, so that lungs come out dark as on
every training image. With no VOI at all, the image's own range of values is used. The chain
is computed once over every value a stored pixel can hold (at most 65,536) and applied as
one table lookup: the same numbers as applying it pixel by pixel, at a fraction of the cost.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from aistack.errors import AistackError, CorruptImage, UnsupportedFormat
from aistack.imaging.decode import DecodedImage, ImageHeader, check_pixel_limit

MAX_IDENTIFIER_LENGTH = 64
"""The longest identifier DICOM allows (LO and UI values); anything longer is cut."""

IDENTIFIER_KEYWORDS = {
    "patient_id": "PatientID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "accession_number": "AccessionNumber",
}
"""Our field name -> the DICOM keyword it is read from."""

GRAY = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
"""Colour models pydicom hands back as RGB; PALETTE COLOR and the retired ones are refused."""

PREFERRED_PLUGIN = "pylibjpeg"
"""Decoder used when it handles the transfer syntax (JPEG 2000 here), else pydicom's choice."""

HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories dropped from identifiers: controls, format characters (bidi
overrides, zero-width), surrogates, private use, unassigned, line and paragraph separators."""

OBJECT_REPR = re.compile(r"<[^<>]*object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class DicomIdentifiers:
    """Who and what the image belongs to, as the file says; each None when absent or blank.

    Values are text from an untrusted file: stripped, control and format characters
    removed, at most ``MAX_IDENTIFIER_LENGTH`` characters, so they are safe to store, log
    and return.
    """

    patient_id: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    accession_number: str | None = None

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> DicomIdentifiers:
        return cls(
            **{field: _element_text(dataset, key) for field, key in IDENTIFIER_KEYWORDS.items()}
        )


def clean_identifier(value: Any) -> str | None:
    """Stripped printable text of at most ``MAX_IDENTIFIER_LENGTH`` characters, or None.

    A multi-valued element is joined with DICOM's own separator, the backslash.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif isinstance(value, list | tuple | MultiValue):
        value = "\\".join(str(item) for item in value)
    text = "".join(c for c in str(value) if unicodedata.category(c) not in HIDDEN_CATEGORIES)
    text = text.strip()[:MAX_IDENTIFIER_LENGTH].strip()
    return text or None


def _element_text(dataset: Dataset, keyword: str) -> str | None:
    """An identifier, or None when absent or undecodable (an identifier never fails a scan)."""
    try:
        return clean_identifier(dataset.get(keyword))
    except Exception:  # noqa: BLE001 - any value a hostile file holds means "unknown"
        return None


@dataclass(frozen=True)
class DicomHeader:
    """What the header declares, read without touching Pixel Data."""

    image: ImageHeader
    transfer_syntax: UID
    photometric: str
    identifiers: DicomIdentifiers


def _reason(error: Exception) -> str:
    """pydicom's own words, first line and short, for a message; never an object repr."""
    lines = str(error).strip().splitlines()
    reason = OBJECT_REPR.sub("an object", lines[0] if lines else "")[:200]
    return reason or type(error).__name__


@contextmanager
def _corrupt_on_failure(what: str) -> Iterator[None]:
    """Any error of pydicom or a decoder inside is a 422 ``what: reason``, never a 500.

    A hostile file makes them raise many kinds (struct, value, key, not-implemented,
    decoder errors), also on reading a single element's value; our own 4xx pass through.
    """
    try:
        yield
    except AistackError:
        raise
    except Exception as error:
        raise CorruptImage(f"{what}: {_reason(error)}") from error


def _transfer_syntax(data: bytes) -> UID:
    """The File Meta Information's Transfer Syntax UID, read before the dataset is.

    pydicom inflates a deflated dataset whole as it reads it, so the syntax is checked
    first: a small upload must not expand without bound.
    """
    buffer = io.BytesIO(data)
    with _corrupt_on_failure("the DICOM file meta information is unreadable"):
        read_preamble(buffer, False)
        meta = read_dataset(
            buffer,
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=lambda tag, _vr, _length: tag.group != 2,
        )
        value = meta.get("TransferSyntaxUID")
    if not value:
        raise CorruptImage("the DICOM file meta information names no transfer syntax")
    return UID(str(value).strip("\x00 "))


def _check_transfer_syntax(syntax: UID) -> None:
    if syntax == DeflatedExplicitVRLittleEndian:
        raise UnsupportedFormat(
            f"the DICOM transfer syntax {syntax.name} ({syntax}) is not accepted; "
            "send it uncompressed, RLE, JPEG or JPEG 2000"
        )
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        name = syntax.name if syntax.is_transfer_syntax else "an unknown transfer syntax"
        raise UnsupportedFormat(
            f"the DICOM transfer syntax {name} ({syntax}) has no decoder here; "
            "send it uncompressed, RLE, JPEG baseline or JPEG 2000"
        )


def _int(dataset: Dataset, keyword: str) -> int | None:
    value = dataset.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise CorruptImage(f"the DICOM {keyword} is not a number: {str(value)[:40]!r}") from error


def _image_header(dataset: Dataset, data_offset: int) -> tuple[ImageHeader, str]:
    """(size and depth, photometric interpretation), refusing what we do not decode.

    ``data_offset`` is where reading stopped: the Pixel Data element, if there is one.
    """
    rows, columns = _int(dataset, "Rows"), _int(dataset, "Columns")
    if rows is None or columns is None:
        raise CorruptImage("the DICOM file holds no image: it has no Rows and Columns")
    if rows <= 0 or columns <= 0:
        raise CorruptImage(f"the DICOM header declares a size of {columns}x{rows}")
    frames = _int(dataset, "NumberOfFrames")
    if frames is not None and frames > 1:
        raise UnsupportedFormat(
            f"multi-frame DICOM ({frames} frames) is not supported; send one radiograph"
        )
    if frames is not None and frames < 1:
        raise CorruptImage(f"the DICOM header declares {frames} frames")
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    samples = _int(dataset, "SamplesPerPixel") or 1
    if photometric not in GRAY | COLOUR:
        raise UnsupportedFormat(
            f"DICOM {photometric or 'images without a photometric interpretation'} is not "
            "supported; send MONOCHROME1, MONOCHROME2 or RGB"
        )
    if samples != (1 if photometric in GRAY else 3):
        raise CorruptImage(f"DICOM {photometric} with {samples} samples per pixel is malformed")
    allocated, stored = _int(dataset, "BitsAllocated"), _int(dataset, "BitsStored")
    if allocated not in (8, 16) or stored is None or not 8 <= stored <= allocated:
        raise UnsupportedFormat(
            f"DICOM pixels of {stored} bits stored in {allocated} are not supported; "
            "send 8 to 16 bits stored in 8 or 16"
        )
    if photometric in COLOUR and allocated != 8:
        raise UnsupportedFormat(f"{allocated}-bit DICOM {photometric} is not supported")
    if _int(dataset, "PixelRepresentation") not in (None, 0, 1):
        raise CorruptImage("the DICOM Pixel Representation is neither 0 nor 1")
    return ImageHeader("DICOM", columns, rows, samples, stored, data_offset), photometric


def read_dicom_header(data: bytes) -> DicomHeader:
    """Everything checkable before Pixel Data: syntax, size, frames, colour, depth, identifiers."""
    syntax = _transfer_syntax(data)
    _check_transfer_syntax(syntax)
    buffer = io.BytesIO(data)
    with _corrupt_on_failure("the DICOM header is unreadable"):
        dataset = dcmread(buffer, stop_before_pixels=True)
        image, photometric = _image_header(dataset, data_offset=buffer.tell())
    return DicomHeader(image, syntax, photometric, DicomIdentifiers.from_dataset(dataset))


def decode_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    """Check the header and limits, then decode the one frame to 2-D uint8 gray; 4xx errors."""
    header = read_dicom_header(data)
    check_pixel_limit(header.image, max_pixels)
    dataset = _read_with_pixels(data)
    stored = _decode_pixels(dataset, header)
    if header.photometric in COLOUR:
        pixels = cv2.cvtColor(np.ascontiguousarray(stored), cv2.COLOR_RGB2GRAY)
    else:
        pixels = display_table(dataset, stored)[_as_index(stored, dataset)]
    return DecodedImage(pixels=pixels, format="DICOM", dicom=header.identifiers)


def _read_with_pixels(data: bytes) -> Dataset:
    with _corrupt_on_failure("the DICOM data is unreadable"):
        dataset = dcmread(io.BytesIO(data))
    if "PixelData" not in dataset:
        raise CorruptImage("the DICOM file has no Pixel Data: it holds no image, or was cut short")
    return dataset


def _decode_pixels(dataset: Dataset, header: DicomHeader) -> np.ndarray:
    """The frame's stored values, (rows, columns) or (rows, columns, 3) for colour."""
    image = header.image
    with _corrupt_on_failure("the DICOM pixel data could not be decoded"):
        if not header.transfer_syntax.is_encapsulated:
            expected = image.pixels * image.channels * (int(dataset.BitsAllocated) // 8)
            if len(dataset.PixelData) < expected:
                raise CorruptImage(
                    f"the DICOM pixel data is truncated: {len(dataset.PixelData):,} of "
                    f"{expected:,} bytes"
                )
        decoder = get_decoder(header.transfer_syntax)
        plugin = PREFERRED_PLUGIN if PREFERRED_PLUGIN in decoder.available_plugins else ""
        pixels = pixel_array(dataset, decoding_plugin=plugin)
    shape = (image.height, image.width) + ((3,) if image.channels == 3 else ())
    if pixels.shape != shape:
        raise CorruptImage(f"the DICOM pixel data decodes to {pixels.shape}, not {shape}")
    return pixels


def _stored_dtype(dataset: Dataset) -> tuple[np.dtype, np.dtype]:
    """(dtype of the stored values, unsigned dtype of the same width used as table index)."""
    bits = int(dataset.BitsAllocated)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    unsigned = np.dtype(np.uint8 if bits == 8 else np.uint16)
    return (np.dtype(np.int8 if bits == 8 else np.int16) if signed else unsigned), unsigned


def _as_index(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """The stored values as table positions: a signed value's two's-complement bits."""
    kind, unsigned = _stored_dtype(dataset)
    return stored.astype(kind, copy=False).view(unsigned)


def display_table(dataset: Dataset, stored: np.ndarray) -> np.ndarray:
    """uint8 gray for every value a stored pixel can hold, indexed by its unsigned bits.

    Modality LUT/rescale, then VOI LUT or window, then 0..255 over the VOI output range (the
    image's own range when there is no VOI), inverted for MONOCHROME1.
    """
    kind, unsigned = _stored_dtype(dataset)
    values = np.arange(2 ** (8 * unsigned.itemsize), dtype=unsigned).view(kind)
    with _corrupt_on_failure("the DICOM LUT or window is invalid"):
        modality = apply_modality_lut(values, dataset)
        voi = apply_voi_lut(modality, dataset, prefer_lut=True)
    display = np.asarray(voi, dtype=np.float64)
    if voi is modality:  # no VOI: from the darkest to the brightest value in the image
        present = (values >= stored.min()) & (values <= stored.max())
        low, high = display[present].min(), display[present].max()
    else:  # the VOI's output range: values beyond the window saturate, as a viewer shows them
        low, high = display.min(), display.max()
    scaled = (display - low) / (high - low) if high > low else np.zeros_like(display)
    table = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    if str(dataset.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        table = 255 - table  # after rounding: exactly MONOCHROME2's complement
    return table
