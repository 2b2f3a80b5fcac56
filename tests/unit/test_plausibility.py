"""The input-plausibility check: real X-rays pass, plain non-X-rays are refused with a reason."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from aistack.errors import NotAChestXray
from aistack.imaging.decode import decode_image
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_model_input
from aistack.xray.dataset import TRAINING_MAX_PIXELS, load_images
from aistack.xray.plausibility import (
    INPUT_CHECK_FILE,
    MIN_SIDE,
    InputCheck,
    fit_from_folder,
    load_for_version,
)
from tests.conftest import MODEL_DIR

SIZE = 224
SIDE = 512


def original_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


class Loaded:
    def __init__(self, root: Path) -> None:
        images = load_images(root, SIZE)
        self.pixels = images.pixels
        self.labels = images.labels
        self.sizes = [original_size(p) for p in images.paths]
        self.names = [p.name for p in images.paths]


@pytest.fixture(scope="module")
def xrays_train(xray_train_dir: Path) -> Loaded:
    return Loaded(xray_train_dir)


@pytest.fixture(scope="module")
def xrays_test(xray_test_dir: Path) -> Loaded:
    return Loaded(xray_test_dir)


@pytest.fixture(scope="module")
def fitted(xrays_train: Loaded) -> InputCheck:
    return InputCheck.fit(xrays_train.pixels)


def as_served(raw: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(model input, width, height) through the service's PNG decode and preprocessing."""
    ok, encoded = cv2.imencode(".png", raw)
    assert ok
    image = decode_image(encoded.tobytes(), TRAINING_MAX_PIXELS, DECODE_MIN_SIDE)
    return to_model_input(image.pixels, SIZE), image.width, image.height


def text_page() -> np.ndarray:
    page = np.full((SIDE, SIDE), 255, np.uint8)
    for row in range(12):
        origin = (10, 35 + row * 40)
        cv2.putText(page, "Lorem ipsum dolor sit", origin, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2)
    return page


def colour_blobs(seed: int) -> np.ndarray:
    """A photo-like colour image: large soft blobs of random colours."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((SIDE, SIDE, 3), np.float32)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, SIDE, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(canvas, (x, y), int(rng.integers(30, 150)), colour, -1)
    return cv2.GaussianBlur(canvas, (0, 0), 25).astype(np.uint8)


def mri_slice() -> np.ndarray:
    """matplotlib's sample MRI head slice (256x256, 16 bit): a medical image, not an X-ray."""
    path = cbook.get_sample_data("s1045.ima.gz", asfileobj=False)
    raw = np.frombuffer(gzip.decompress(Path(path).read_bytes()), np.uint16).reshape(256, 256)
    return cv2.normalize(raw, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def photograph() -> np.ndarray:
    return cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def _grid(cells: int) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE] * cells // SIDE
    return ((x + y) % 2 * 255).astype(np.uint8)


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 255, SIDE), (SIDE, 1)).astype(np.uint8)


def _radial() -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    return (255 * np.clip(1 - np.hypot(x - 0.5, y - 0.5) * 1.4, 0, 1)).astype(np.uint8)


def _noise(shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)


NEGATIVES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "black": (lambda: np.zeros((SIDE, SIDE), np.uint8), "almost uniform"),
    "white": (lambda: np.full((SIDE, SIDE), 255, np.uint8), "almost uniform"),
    "mid-grey": (lambda: np.full((SIDE, SIDE), 128, np.uint8), "almost uniform"),
    "1x1": (lambda: np.zeros((1, 1), np.uint8), "1x1 pixels"),
    "32x32 noise": (lambda: _noise((32, 32)), "32x32 pixels"),
    "64x64 grey": (lambda: np.full((64, 64), 128, np.uint8), "almost uniform"),
    "uniform noise": (lambda: _noise((SIDE, SIDE)), "light and dark"),
    "horizontal gradient": (_ramp, "fine detail"),
    "vertical gradient": (lambda: _ramp().T.copy(), "fine detail"),
    "radial gradient": (_radial, "fine detail"),
    "checkerboard 8x8": (lambda: _grid(8), "light and dark"),
    "checkerboard 32x32": (lambda: _grid(32), "fine detail"),
    "text": (text_page, "light and dark"),
    **{f"colour blobs {s}": (lambda s=s: colour_blobs(s), "chest X-ray") for s in range(5)},
    "photograph": (photograph, "light and dark"),
    "MRI slice": (mri_slice, "black background"),
}


def refusals(check: InputCheck, images: Loaded) -> list[str]:
    """'name: reason' for every image the check refuses, at its original size."""
    found = []
    for pixels, (width, height), name in zip(
        images.pixels, images.sizes, images.names, strict=True
    ):
        try:
            check.check(pixels, width, height)
        except NotAChestXray as error:
            found.append(f"{name}: {error.message}")
    return found


def test_no_false_rejections_on_train(fitted: InputCheck, xrays_train: Loaded):
    assert refusals(fitted, xrays_train) == []
    assert max(fitted.score(x) for x in xrays_train.pixels) < 1e-6  # within its own ranges


def test_no_false_rejections_on_test(fitted: InputCheck, xrays_test: Loaded):
    assert len(xrays_test.names) == 27
    assert refusals(fitted, xrays_test) == []


def test_cross_validated_false_rejections_on_train_are_zero(xrays_train: Loaded):
    """Held-out folds are what a new genuine X-ray looks like to a check fitted without it."""
    rng = np.random.default_rng(0)
    folds = np.empty(len(xrays_train.labels), int)
    for label in np.unique(xrays_train.labels):
        members = rng.permutation(np.flatnonzero(xrays_train.labels == label))
        folds[members] = np.arange(len(members)) % 5
    held_out = []
    for fold in range(5):
        check = InputCheck.fit(xrays_train.pixels[folds != fold])
        held_out += [check.score(x) for x in xrays_train.pixels[folds == fold]]
    assert len(held_out) == len(xrays_train.labels)
    assert sum(s > check.margin for s in held_out) == 0
    assert max(held_out) < 0.6 * check.margin


@pytest.mark.parametrize("name", list(NEGATIVES))
def test_synthetic_non_xrays_are_refused_with_a_reason(fitted: InputCheck, name: str):
    make, reason = NEGATIVES[name]
    model_input, width, height = as_served(make())
    with pytest.raises(NotAChestXray) as caught:
        fitted.check(model_input, width, height)
    assert reason in caught.value.message
    assert "chest X-ray" in caught.value.message
    assert caught.value.status == 422
    assert caught.value.code == "not_a_chest_xray"


def test_inverted_xrays_are_refused(fitted: InputCheck, xrays_test: Loaded):
    for pixels, (width, height) in zip(xrays_test.pixels, xrays_test.sizes, strict=True):
        with pytest.raises(NotAChestXray, match="inverted"):
            fitted.check(255 - pixels, width, height)


def test_sideways_xrays_are_mostly_refused(fitted: InputCheck, xrays_test: Loaded):
    """Turned 90 degrees clockwise: all refused; anticlockwise: 23 of 27 (some look upright)."""
    clockwise = [fitted.score(np.rot90(x, -1)) > fitted.margin for x in xrays_test.pixels]
    anticlockwise = [fitted.score(np.rot90(x, 1)) > fitted.margin for x in xrays_test.pixels]
    assert sum(clockwise) == len(xrays_test.pixels) == 27
    assert sum(anticlockwise) == 23


@pytest.mark.parametrize(("width", "height"), [(MIN_SIDE - 1, 1000), (1000, MIN_SIDE - 1)])
def test_small_originals_are_refused(
    fitted: InputCheck, xrays_test: Loaded, width: int, height: int
):
    with pytest.raises(NotAChestXray, match=f"at least {MIN_SIDE} pixels"):
        fitted.check(xrays_test.pixels[0], width, height)
    fitted.check(xrays_test.pixels[0], MIN_SIDE, MIN_SIDE)


def test_save_and_load_round_trip_to_identical_scores(
    fitted: InputCheck, xrays_test: Loaded, tmp_path: Path
):
    path = tmp_path / INPUT_CHECK_FILE
    fitted.save(path)
    loaded = InputCheck.load(path)
    assert loaded == fitted
    probes = [*xrays_test.pixels[:5], as_served(text_page())[0], 255 - xrays_test.pixels[0]]
    assert [loaded.score(x) for x in probes] == [fitted.score(x) for x in probes]


def test_fit_from_folder_matches_fit(fitted: InputCheck, xray_train_dir: Path):
    assert fit_from_folder(xray_train_dir, SIZE) == fitted


def test_load_for_version_is_none_without_the_file(tmp_path: Path):
    assert load_for_version(tmp_path) is None


def test_score_accepts_2d_inputs_and_refuses_other_sizes(fitted: InputCheck, xrays_test: Loaded):
    pixels = xrays_test.pixels[0]
    assert fitted.score(pixels[:, :, 0]) == fitted.score(pixels)
    with pytest.raises(ValueError, match="expected"):
        fitted.score(np.zeros((SIZE // 2, SIZE // 2), np.uint8))


def test_committed_check_accepts_every_test_image(xrays_test: Loaded, fitted: InputCheck):
    committed = load_for_version(MODEL_DIR / "1")
    assert committed is not None, f"{MODEL_DIR / '1' / INPUT_CHECK_FILE} is missing"
    assert committed.image_size == SIZE
    assert committed.fitted_images == 199
    assert refusals(committed, xrays_test) == []
    committed_scores = [committed.score(x) for x in xrays_test.pixels]
    refitted_scores = [fitted.score(x) for x in xrays_test.pixels]
    assert committed_scores == pytest.approx(refitted_scores, abs=1e-4), "not the fit on train/"
    with pytest.raises(NotAChestXray):
        committed.check(np.zeros((SIZE, SIZE, 1), np.uint8), 1, 1)
