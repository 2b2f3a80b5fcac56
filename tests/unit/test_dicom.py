"""DICOM input: real radiographs (pydicom-data) and DICOMs built here with pydicom.

What is proved: a real MONOCHROME1 radiograph comes out as a viewer shows it (lungs dark),
alike from its uncompressed and JPEG 2000 files; Modality LUT, VOI LUT, window and
photometric interpretation are applied as the standard says; the header rules (frames,
colour, depth, size, transfer syntax) refuse before any pixel is decoded; broken files are
4xx errors; identifiers are read, cleaned, stored and printed.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)
from typer.testing import CliRunner

from aistack.cli import app
from aistack.config import get_settings
from aistack.errors import (
    AistackError,
    CorruptImage,
    ImageTooLarge,
    InvalidRequest,
    MissingInput,
    NotAnImage,
    UnsupportedFormat,
)
from aistack.imaging.decode import decode_image, read_header
from aistack.imaging.dicom import MAX_IDENTIFIER_LENGTH, DicomIdentifiers, clean_identifier
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.request_body import DICOM, v2_body

MAX_PIXELS = 50_000_000
UNCOMPRESSED = "RG1_UNCR.dcm"
JPEG2000 = "RG1_J2KR.dcm"
IDENTIFIERS = {
    "PatientID": "PAT-0042",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.2",
    "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.3",
    "AccessionNumber": "ACC-7",
}


def real_file(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def dicom_bytes(
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **tags: object,
) -> bytes:
    """A DICOM Part 10 file around ``pixels`` (rows, columns[, 3]); ``pixel_data`` replaces
    the stored bytes (to lie about them), ``pixels=None`` leaves Pixel Data out."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = IDENTIFIERS["SOPInstanceUID"]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = bits_stored or ds.BitsAllocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = int(pixels.dtype.kind == "i")
        ds.PixelData = pixel_data if pixel_data is not None else pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if (
        transfer_syntax.is_transfer_syntax
        and transfer_syntax.is_encapsulated
        and pixels is not None
    ):
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return saved(ds)


def saved(dataset: Dataset) -> bytes:
    """The Part 10 file; the encoding is given so that any transfer syntax UID can be
    written (pydicom deflates the dataset for the deflated one)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def gradient(dtype: type, low: int, high: int, shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    """Every value from ``low`` to ``high`` along the rows, so min and max are present."""
    values = np.linspace(low, high, shape[0] * shape[1]).round().astype(dtype)
    return values.reshape(shape)


def decoded(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    image = decode_image(data, max_pixels)
    assert image.format == "DICOM"
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    return image.pixels


# --------------------------------------------------------------------------- real radiographs


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    return decoded(real_file(UNCOMPRESSED))


def test_uncompressed_and_jpeg2000_files_of_one_radiograph_decode_alike(radiograph):
    from_jpeg2000 = decoded(real_file(JPEG2000))
    assert radiograph.shape == from_jpeg2000.shape == (1955, 1841)
    assert np.abs(radiograph.astype(int) - from_jpeg2000).max() <= 1  # lossless: equal


def box(pixels: np.ndarray, x: tuple[float, float], y: tuple[float, float]) -> float:
    height, width = pixels.shape
    return float(
        pixels[
            int(y[0] * height) : int(y[1] * height), int(x[0] * width) : int(x[1] * width)
        ].mean()
    )


def test_the_monochrome1_radiograph_is_shown_as_a_viewer_shows_it(radiograph):
    """MONOCHROME1 stores bone as low values: without the inversion lungs would be white."""
    upper_chest = (0.25, 0.5)
    lungs = (box(radiograph, (0.2, 0.35), upper_chest), box(radiograph, (0.65, 0.8), upper_chest))
    mediastinum = box(radiograph, (0.45, 0.55), upper_chest)
    assert max(lungs) < mediastinum - 50, (lungs, mediastinum)
    assert radiograph.min() < 60 and radiograph.max() > 200  # the window's contrast is kept


def test_the_table_lookup_equals_pydicoms_chain_applied_pixel_by_pixel(radiograph):
    """The real file's window (15000/30000) through pydicom on every pixel, then MONOCHROME1's
    inversion over the window's output range (0..2**15-1 for 15 bits stored)."""
    dataset = dcmread(io.BytesIO(real_file(UNCOMPRESSED)))
    assert dataset.PhotometricInterpretation == "MONOCHROME1" and dataset.BitsStored == 15
    windowed = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    expected = np.rint(255 * (1 - windowed / (2**15 - 1))).astype(np.uint8)
    assert np.abs(radiograph.astype(int) - expected).max() <= 1


def test_the_real_files_identifiers_are_read():
    image = decode_image(real_file(UNCOMPRESSED), MAX_PIXELS)
    assert image.dicom == DicomIdentifiers(
        patient_id="9RG1",
        study_instance_uid="1.3.6.1.4.1.5962.1.2.9.20040826185059.5457",
        series_instance_uid="1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457",
        sop_instance_uid="1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457",
        accession_number="exam Number",
    )


def test_read_header_reports_a_dicoms_size_without_its_pixels():
    header = read_header(real_file(UNCOMPRESSED))
    assert (header.format, header.width, header.height) == ("DICOM", 1841, 1955)
    assert (header.channels, header.bits) == (1, 15)
    assert (
        real_file(UNCOMPRESSED)[header.data_offset : header.data_offset + 4] == b"\xe0\x7f\x10\x00"
    )


# --------------------------------------------------------------------------- synthetic: pixels


def test_monochrome2_8_bit_without_window_is_taken_as_is():
    pixels = gradient(np.uint8, 0, 255)
    np.testing.assert_array_equal(decoded(dicom_bytes(pixels)), pixels)


def test_monochrome2_16_bit_spans_its_own_range_without_window():
    pixels = gradient(np.uint16, 0, 4095)
    expected = np.rint(pixels / 4095 * 255)
    out = decoded(dicom_bytes(pixels, bits_stored=12))
    assert np.abs(out - expected).max() <= 1
    assert (out.min(), out.max()) == (0, 255)


def test_signed_pixels_keep_their_order():
    pixels = gradient(np.int16, -1000, 1000)
    out = decoded(dicom_bytes(pixels, bits_stored=16))
    assert out[0, 0] == 0 and out[-1, -1] == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotonic, no wrap at zero


def test_monochrome1_is_monochrome2_inverted():
    pixels = gradient(np.uint16, 100, 3000)
    first = decoded(dicom_bytes(pixels, "MONOCHROME1", bits_stored=12))
    second = decoded(dicom_bytes(pixels, "MONOCHROME2", bits_stored=12))
    np.testing.assert_array_equal(first.astype(int), 255 - second.astype(int))


def test_window_center_and_width_are_applied():
    pixels = gradient(np.uint8, 0, 255)
    out = decoded(dicom_bytes(pixels, WindowCenter=100, WindowWidth=50))
    assert np.all(out[pixels <= 75] == 0)
    assert np.all(out[pixels > 125] == 255)
    assert abs(int(out[pixels == 100][0]) - 128) <= 3
    assert not np.array_equal(out, decoded(dicom_bytes(pixels)))


def test_rescale_slope_and_intercept_come_before_the_window():
    """Stored 0..1000 are -1000..1000 after rescale; a window at 0 +-500 (in rescaled units)
    turns stored 250 black and 750 white. Unrescaled, the same window would put all of
    0..1000 above 500 at white."""
    pixels = gradient(np.uint16, 0, 1000)
    rescaled = dicom_bytes(
        pixels,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=0,
        WindowWidth=1000,
    )
    out = decoded(rescaled)
    assert np.all(out[pixels <= 250] == 0)
    assert np.all(out[pixels > 750] == 255)
    assert abs(int(out[pixels == 500][0]) - 128) <= 3


def test_a_voi_lut_sequence_is_preferred_to_the_window():
    pixels = gradient(np.uint8, 0, 255)
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [256, 0, 8])
    lut.add_new("LUTData", "US", list(range(255, -1, -1)))  # inverting: no window does that
    out = decoded(dicom_bytes(pixels, VOILUTSequence=[lut], WindowCenter=128, WindowWidth=10))
    np.testing.assert_array_equal(out.astype(int), 255 - pixels.astype(int))


def test_rgb_is_converted_to_gray_with_the_luma_jpegs_get():
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[:, 0:3, 0] = 255
    rgb[:, 3:6, 1] = 255
    rgb[:, 6:9, 2] = 255
    out = decoded(dicom_bytes(rgb, "RGB"))
    np.testing.assert_array_equal(out, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert list(out[0, [0, 3, 6]]) == [76, 150, 29]


# --------------------------------------------------------------------------- synthetic: rules


def test_one_frame_is_accepted_several_are_refused():
    frame = gradient(np.uint8, 0, 255, (16, 16))
    assert decoded(dicom_bytes(frame, NumberOfFrames=1)).shape == (16, 16)
    two = np.concatenate([frame, frame])
    with pytest.raises(UnsupportedFormat, match=r"multi-frame DICOM \(2 frames\)"):
        decode_image(dicom_bytes(frame, pixel_data=two.tobytes(), NumberOfFrames=2), MAX_PIXELS)


@pytest.mark.parametrize(
    ("photometric", "bits", "message"),
    [
        ("PALETTE COLOR", 8, "DICOM PALETTE COLOR is not supported"),
        ("MONOCHROME2", 6, "6 bits stored in 8 are not supported"),
    ],
)
def test_what_the_header_rules_out_is_a_415(photometric, bits, message):
    data = dicom_bytes(gradient(np.uint8, 0, 63, (8, 8)), photometric, bits_stored=bits)
    with pytest.raises(UnsupportedFormat, match=message):
        decode_image(data, MAX_PIXELS)


def test_missing_pixel_data_is_a_corrupt_image():
    data = dicom_bytes(gradient(np.uint8, 0, 255, (8, 8)))
    dataset = dcmread(io.BytesIO(data))
    del dataset.PixelData
    with pytest.raises(CorruptImage, match="no Pixel Data") as raised:
        decode_image(saved(dataset), MAX_PIXELS)
    assert raised.value.status == 422


def test_no_image_at_all_is_a_corrupt_image():
    with pytest.raises(CorruptImage, match="no Rows and Columns"):
        decode_image(dicom_bytes(None), MAX_PIXELS)


def test_oversize_is_refused_from_the_header_before_any_pixel_is_decoded():
    """The Pixel Data holds 16 bytes for a declared 4,000 x 4,000 image: decoding it would be
    a 'truncated' error, so the size error proves that nothing was decoded first."""
    data = dicom_bytes(
        gradient(np.uint8, 0, 15, (4, 4)), pixel_data=bytes(16), Rows=4000, Columns=4000
    )
    with pytest.raises(ImageTooLarge, match="4000x4000 = 16,000,000 pixels") as raised:
        decode_image(data, max_pixels=15_999_999)
    assert raised.value.status == 413
    with pytest.raises(CorruptImage, match="truncated: 16 of 16,000,000 bytes"):
        decode_image(data, max_pixels=16_000_000)


def test_a_transfer_syntax_without_decoder_is_a_415_naming_it():
    data = dicom_bytes(
        gradient(np.uint8, 0, 255, (8, 8)),
        transfer_syntax=JPEGLSLossless,
        pixel_data=encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"]),
    )
    with pytest.raises(
        UnsupportedFormat, match=r"JPEG-LS Lossless .*\(1\.2\.840\.10008\.1\.2\.4\.80\)"
    ):
        decode_image(data, MAX_PIXELS)


def test_an_unknown_transfer_syntax_is_a_415_naming_its_uid():
    data = dicom_bytes(gradient(np.uint8, 0, 255, (8, 8)), transfer_syntax=UID("1.2.3.4.5.6"))
    assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == "1.2.3.4.5.6"
    with pytest.raises(UnsupportedFormat, match=r"unknown transfer syntax \(1\.2\.3\.4\.5\.6\)"):
        decode_image(data, MAX_PIXELS)


def test_deflate_is_refused_before_the_dataset_is_inflated():
    """A deflated dataset is a zip: a megabyte of zeros would inflate to a gigabyte."""
    pixels = gradient(np.uint8, 0, 0, (1000, 1000))
    deflated = dicom_bytes(pixels, transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert len(deflated) < 10_000  # a megabyte of pixels, deflated
    with pytest.raises(UnsupportedFormat, match="Deflated Explicit VR Little Endian"):
        decode_image(deflated, MAX_PIXELS)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on broken files
@pytest.mark.parametrize("name", [UNCOMPRESSED, JPEG2000])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.999])
def test_a_cut_file_is_a_client_error(name: str, keep: float):
    data = real_file(name)
    cut = data[: max(140, int(len(data) * keep))]
    with pytest.raises(AistackError) as raised:
        decode_image(cut, MAX_PIXELS)
    assert raised.value.status == 422 and raised.value.code == "corrupt_image"


def test_the_cut_pixel_data_says_how_much_is_missing():
    data = real_file(UNCOMPRESSED)
    with pytest.raises(CorruptImage, match=r"truncated: 3,598,420 of 7,198,310 bytes"):
        decode_image(data[: len(data) // 2], MAX_PIXELS)


def test_dicom_is_told_by_dicm_after_the_preamble_whatever_the_preamble_holds():
    real = real_file(UNCOMPRESSED)
    assert real.startswith(b"II*\x00")  # a TIFF header: a dual-personality file
    assert decode_image(real, MAX_PIXELS).format == "DICOM"
    synthetic = dicom_bytes(gradient(np.uint8, 0, 255, (8, 8)))
    with pytest.raises(NotAnImage):
        decode_image(synthetic[:128] + b"DICX" + synthetic[132:], MAX_PIXELS)
    with pytest.raises(NotAnImage):
        decode_image(synthetic[128:], MAX_PIXELS)  # no preamble: DICM at 0
    with pytest.raises(NotAnImage):
        decode_image(real[132:], MAX_PIXELS)  # a bare dataset: no preamble, no DICM


def test_garbage_after_dicm_is_a_client_error():
    with pytest.raises(CorruptImage):
        decode_image(b"\x00" * 128 + b"DICM" + b"\x00" * 64, MAX_PIXELS)
    with pytest.raises(CorruptImage):
        decode_image(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 8, MAX_PIXELS)


def test_rle_lossless_decodes_like_the_uncompressed_file():
    pixels = gradient(np.uint16, 0, 4095)
    native = dicom_bytes(pixels, bits_stored=12, WindowCenter=1000, WindowWidth=800)
    dataset = dcmread(io.BytesIO(native))
    dataset.compress(RLELossless)
    assert dataset.file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(decoded(saved(dataset)), decoded(native))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on broken files
def test_random_damage_to_a_dicom_is_never_more_than_a_4xx():
    """Bytes flipped in the header and pixels, and cuts: pydicom raises all kinds of errors
    on such files (struct, value, unknown VR...), each must come out as a 4xx."""
    rng = np.random.default_rng(7)
    originals = [
        dicom_bytes(
            gradient(np.uint16, 0, 4095, (32, 32)),
            bits_stored=12,
            WindowWidth=900,
            WindowCenter=2000,
            RescaleSlope=1,
            RescaleIntercept=0,
        ),
        dicom_bytes(gradient(np.uint8, 0, 255, (32, 32))),
    ]
    outcomes = set()
    for attempt in range(600):
        data = np.frombuffer(originals[attempt % 2], np.uint8).copy()
        positions = rng.integers(132, data.size, rng.integers(1, 7))
        data[positions] = rng.integers(0, 256, positions.size)
        if attempt % 5 == 0:
            data = data[: rng.integers(132, data.size)]
        try:
            decode_image(data.tobytes(), MAX_PIXELS)
            outcomes.add("decoded")
        except AistackError as error:
            assert 400 <= error.status < 500, error
            outcomes.add(error.code)
    assert {"decoded", "corrupt_image", "unsupported_format"} <= outcomes


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  PAT-1  ", "PAT-1"),
        ("\x1b[31mEvil\x00\nName\r", "[31mEvilName"),
        ("abc\u202edef\u200b", "abcdef"),  # bidi override and zero-width space
        ("x" * 200, "x" * MAX_IDENTIFIER_LENGTH),
        ("   ", None),
        ("", None),
        (None, None),
        (b"bytes\x07", "bytes"),
        (["A", "B"], "A\\B"),
    ],
)
def test_identifiers_are_cleaned(value, expected):
    assert clean_identifier(value) == expected


def test_identifiers_from_the_file_are_cleaned_and_missing_ones_are_none():
    pixels = gradient(np.uint8, 0, 255, (8, 8))
    data = dicom_bytes(pixels, PatientID="\tPAT\x1f-9 ", AccessionNumber="")
    dataset = dcmread(io.BytesIO(data))
    del dataset.SeriesInstanceUID
    identifiers = decode_image(saved(dataset), MAX_PIXELS).dicom
    assert identifiers == DicomIdentifiers(
        patient_id="PAT-9",
        study_instance_uid=IDENTIFIERS["StudyInstanceUID"],
        series_instance_uid=None,
        sop_instance_uid=IDENTIFIERS["SOPInstanceUID"],
        accession_number=None,
    )


def test_jpeg_and_png_carry_no_identifiers(sample_images):
    assert decode_image(sample_images["normal"].read_bytes(), MAX_PIXELS).dicom is None


# --------------------------------------------------------------------------- body rules, store


def test_a_raw_dicom_body_takes_heatmap_from_the_query():
    data = real_file(UNCOMPRESSED)
    assert v2_body(DICOM, data) == (data, True)
    assert v2_body(DICOM, data, "false") == (data, False)
    assert v2_body(f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.1", data, "true") == (data, True)
    with pytest.raises(MissingInput, match="send the DICOM file as the body"):
        v2_body(DICOM, b"")
    with pytest.raises(InvalidRequest, match="goes with a raw application/dicom body"):
        v2_body("application/json", b'{"image_b64": "aGk="}', "false")


def test_an_older_database_gains_the_identifier_columns(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE predictions (id VARCHAR(32) PRIMARY KEY, created_at DATETIME, "
            "model_name VARCHAR(128), model_version INTEGER, input_sha256 VARCHAR(64), "
            "probabilities VARCHAR(1024), label VARCHAR(32), covid_positive BOOLEAN, "
            "threshold FLOAT, latency_ms FLOAT, endpoint VARCHAR(32), image_file VARCHAR(255), "
            "heatmap_file VARCHAR(255), overlay_file VARCHAR(255), client VARCHAR(64), "
            "backend VARCHAR(32))"
        )
    store = PredictionStore(f"sqlite:///{path}")
    try:
        store.create_schema()
        record = PredictionRecord.create(
            model_name="covid19",
            model_version=1,
            input_sha256="0" * 64,
            probabilities={"covid": 0.1, "normal": 0.8, "pneumonia_bac": 0.1},
            label="normal",
            covid_positive=False,
            threshold=0.65,
            latency_ms=1.0,
            endpoint="v2",
            image_file="x.dcm",
            patient_id="P" * 64,
            study_instance_uid="1.2.3",
            accession_number="A1",
        )
        store.add(record)
        assert store.get(record.id) == record
    finally:
        store.close()
    with sqlite3.connect(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
    assert set(IDENTIFIER_COLUMNS) <= columns


IDENTIFIER_COLUMNS = (
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "accession_number",
)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AISTACK_MODEL_DIR", raising=False)
    monkeypatch.delenv("AISTACK_MODEL_VERSION", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_aistack_predict_classifies_a_dicom_file_and_prints_its_identifiers(
    tmp_path: Path, clean_settings
):
    path = Path(get_testdata_file(JPEG2000))
    overlay = tmp_path / "overlay.jpg"
    result = CliRunner().invoke(app, ["predict", str(path), "--heatmap", str(overlay)])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["image"] == str(path)
    assert line["label"] in line["probabilities"]
    assert line["dicom"] == {
        "patient_id": "9RG1",
        "study_instance_uid": "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457",
        "series_instance_uid": "1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457",
        "sop_instance_uid": "1.3.6.1.4.1.5962.1.1.9.1.2.20040826185059.5457",
        "accession_number": "exam Number",
    }
    blended = cv2.imread(str(overlay))
    assert blended is not None and max(blended.shape[:2]) == 768
