"""SavedModel export (TF Serving layout, four signatures) and the in-process engine over it.

Two small random-weight models are exported as versions 3 and 5 of one model folder, so
every check can tell which version answered. Neither is labelled: with two versions, the
engine loads only the one it is told to.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from aistack.imaging.decode import decode_image
from aistack.imaging.preprocess import to_model_input
from aistack.inference.savedmodel import SavedModelEngine
from aistack.inference.versions import VersionNotChosen, set_label
from aistack.xray.export import MODEL_INFO_FILE, decode_batch, export_saved_model
from aistack.xray.labels import CLASSES
from aistack.xray.model import build_classifier

SIZE = 64
CAM_SIDE = SIZE // 16
MAX_PIXELS = 10_000_000
SIGNATURES = {"serving_default", "gradcam", "predict_pixels", "gradcam_pixels"}


def make_images(count: int, seed: int, side: int = SIZE) -> np.ndarray:
    """Varied uint8 (count, side, side) grayscale images: a bright blob, a ramp and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = []
    for _ in range(count):
        cy, cx = rng.uniform(0.15, 0.85, size=2)
        radius = rng.uniform(0.08, 0.25)
        blob = 200.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        ramp = rng.uniform(0, 60) * xx
        noise = rng.normal(0, 20, size=(side, side))
        out.append(np.clip(blob + ramp + noise + 20, 0, 255).astype(np.uint8))
    return np.stack(out)


def png_bytes(gray: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", gray)
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module")
def models() -> dict[int, keras.Model]:
    keras.utils.set_random_seed(3)
    v3 = build_classifier(image_size=SIZE, width=4)
    keras.utils.set_random_seed(5)
    v5 = build_classifier(image_size=SIZE, width=4)
    return {3: v3, 5: v5}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, models) -> Path:
    base = tmp_path_factory.mktemp("export") / "m"
    for version, model in models.items():
        target = export_saved_model(model, base, version=version)
        assert target == base / str(version)
    return base


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    return tf.saved_model.load(str(model_dir / "3"))


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> SavedModelEngine:
    return SavedModelEngine.from_model_dir(model_dir, version=5)


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return make_images(4, seed=1)[..., np.newaxis]


# --------------------------------------------------------------------------- layout


def test_version_folder_layout(model_dir: Path):
    version_dir = model_dir / "3"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()
    assert any((version_dir / "variables").iterdir())
    info = json.loads((version_dir / MODEL_INFO_FILE).read_text())
    assert (version_dir / "assets.extra" / "model_info.json").is_file()
    assert info["classes"] == list(CLASSES)
    assert info["image_size"] == SIZE
    assert info["version"] == 3
    assert info["name"] == "m"


def test_export_refuses_an_existing_version_unless_told(tmp_path: Path, models):
    base = tmp_path / "m"
    export_saved_model(models[3], base, version=1)
    stale = base / "1" / "stale.txt"
    stale.write_text("left from before")
    with pytest.raises(FileExistsError):
        export_saved_model(models[3], base, version=1)
    assert stale.exists()
    export_saved_model(models[3], base, version=1, extra_info={"note": "second"}, overwrite=True)
    assert not stale.exists()
    info = json.loads((base / "1" / MODEL_INFO_FILE).read_text())
    assert info["note"] == "second"


# --------------------------------------------------------------------------- signatures


def test_exposes_exactly_the_documented_signatures(loaded):
    assert set(loaded.signatures.keys()) == SIGNATURES

    def inputs(name: str) -> dict[str, tf.TensorSpec]:
        args, kwargs = loaded.signatures[name].structured_input_signature
        assert args == ()
        return kwargs

    def outputs(name: str) -> dict[str, tf.TensorSpec]:
        return loaded.signatures[name].structured_outputs

    for name in ("serving_default", "gradcam"):
        (spec,) = inputs(name).values()
        assert list(inputs(name)) == ["image_bytes"]
        assert spec.dtype == tf.string
        assert spec.shape.as_list() == [None]
    for name in ("predict_pixels", "gradcam_pixels"):
        (spec,) = inputs(name).values()
        assert list(inputs(name)) == ["pixels"]
        assert spec.dtype == tf.uint8
        assert spec.shape.as_list() == [None, SIZE, SIZE, 1]

    for name in ("serving_default", "predict_pixels"):
        assert set(outputs(name)) == {"probabilities"}
    for name in ("gradcam", "gradcam_pixels"):
        assert set(outputs(name)) == {"probabilities", "heatmap"}
        assert outputs(name)["heatmap"].shape.as_list() == [None, CAM_SIDE, CAM_SIDE]
    for name in SIGNATURES:
        assert outputs(name)["probabilities"].shape.as_list() == [None, len(CLASSES)]
        assert outputs(name)["probabilities"].dtype == tf.float32


def test_predict_pixels_reproduces_the_keras_model(loaded, models, pixels):
    out = loaded.signatures["predict_pixels"](pixels=tf.constant(pixels))
    expected = np.asarray(models[3](pixels.astype("float32"), training=False))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_bytes_signatures_match_pixel_signatures_on_model_sized_png(loaded):
    """An S x S PNG needs no resizing, so both paths see the same pixels."""
    grays = make_images(3, seed=9)
    encoded = tf.constant([png_bytes(g) for g in grays])
    prepared = np.stack(
        [to_model_input(decode_image(png_bytes(g), MAX_PIXELS).pixels, SIZE) for g in grays]
    )
    np.testing.assert_array_equal(prepared[..., 0], grays)

    by_bytes = loaded.signatures["serving_default"](image_bytes=encoded)["probabilities"].numpy()
    by_pixels = loaded.signatures["predict_pixels"](pixels=tf.constant(prepared))
    np.testing.assert_allclose(by_bytes, by_pixels["probabilities"].numpy(), atol=1e-5)

    cam_bytes = loaded.signatures["gradcam"](image_bytes=encoded)
    cam_pixels = loaded.signatures["gradcam_pixels"](pixels=tf.constant(prepared))
    np.testing.assert_allclose(cam_bytes["probabilities"].numpy(), by_bytes, atol=1e-5)
    np.testing.assert_allclose(
        cam_bytes["heatmap"].numpy(), cam_pixels["heatmap"].numpy(), atol=1e-5
    )


def test_bytes_signature_resizes_like_the_service(loaded):
    """A 4x larger PNG: tf's area resize and OpenCV's agree to one grey level."""
    grays = make_images(2, seed=10, side=SIZE * 4)
    encoded = tf.constant([png_bytes(g) for g in grays])
    prepared = np.stack(
        [to_model_input(decode_image(png_bytes(g), MAX_PIXELS).pixels, SIZE) for g in grays]
    )
    in_graph = decode_batch(encoded, SIZE).numpy()
    assert in_graph.shape == prepared.shape == (2, SIZE, SIZE, 1)
    assert np.abs(in_graph.astype(int) - prepared.astype(int)).max() <= 1
    by_bytes = loaded.signatures["serving_default"](image_bytes=encoded)["probabilities"].numpy()
    by_pixels = loaded.signatures["predict_pixels"](pixels=tf.constant(prepared))
    np.testing.assert_allclose(by_bytes, by_pixels["probabilities"].numpy(), atol=1e-3)


def test_gradcam_pixels_heatmap_is_normalised(loaded, pixels):
    out = loaded.signatures["gradcam_pixels"](pixels=tf.constant(pixels))
    heatmap = out["heatmap"].numpy()
    assert heatmap.shape == (len(pixels), CAM_SIDE, CAM_SIDE)
    assert heatmap.min() >= 0.0
    assert heatmap.max() <= 1.0 + 1e-6
    peaks = heatmap.max(axis=(1, 2))
    assert np.all(np.isclose(peaks, 1.0, atol=1e-6) | (peaks == 0.0))


# --------------------------------------------------------------------------- engine


def test_engine_serves_the_version_it_is_given(engine, models, pixels):
    assert engine.info.version == 5
    assert engine.info.image_size == SIZE
    assert engine.info.classes == CLASSES
    assert engine.info.name == "m"
    assert engine.warmed_up
    out = engine.infer(pixels, heatmap=False)
    v5 = np.asarray(models[5](pixels.astype("float32"), training=False))
    v3 = np.asarray(models[3](pixels.astype("float32"), training=False))
    np.testing.assert_allclose(out.probabilities, v5, rtol=1e-5, atol=1e-6)
    assert not np.allclose(v3, v5, atol=1e-6), "the two versions must be distinguishable"


def test_engine_serves_a_requested_version(model_dir: Path, models, pixels):
    engine = SavedModelEngine.from_model_dir(model_dir, version=3)
    assert engine.info.version == 3
    out = engine.infer(pixels, heatmap=False)
    expected = np.asarray(models[3](pixels.astype("float32"), training=False))
    np.testing.assert_allclose(out.probabilities, expected, rtol=1e-5, atol=1e-6)


def test_engine_never_picks_the_highest_of_several_versions_itself(model_dir: Path):
    with pytest.raises(VersionNotChosen, match="aistack models label stable"):
        SavedModelEngine.from_model_dir(model_dir)


def test_engine_serves_the_version_labelled_stable(model_dir: Path, tmp_path: Path, models, pixels):
    labelled = tmp_path / "m"
    labelled.mkdir()
    for version in (3, 5):
        (labelled / str(version)).symlink_to(model_dir / str(version), target_is_directory=True)
    set_label(labelled, "stable", 3)
    engine = SavedModelEngine.from_model_dir(labelled, version=None)
    assert engine.info.version == 3
    expected = np.asarray(models[3](pixels.astype("float32"), training=False))
    np.testing.assert_allclose(
        engine.infer(pixels, heatmap=False).probabilities, expected, rtol=1e-5, atol=1e-6
    )


def test_engine_rejects_a_missing_version_and_empty_folders(model_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="version 4"):
        SavedModelEngine.from_model_dir(model_dir, version=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        SavedModelEngine.from_model_dir(empty)
    with pytest.raises(FileNotFoundError):
        SavedModelEngine.from_model_dir(tmp_path / "does-not-exist")
    # A version folder without saved_model.pb does not count.
    (empty / "7" / "variables").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        SavedModelEngine.from_model_dir(empty)


def test_heatmap_flag_does_not_change_probabilities(engine, pixels):
    plain = engine.infer(pixels, heatmap=False)
    with_cam = engine.infer(pixels, heatmap=True)
    assert plain.heatmaps is None
    assert with_cam.heatmaps is not None
    assert with_cam.heatmaps.shape == (len(pixels), CAM_SIDE, CAM_SIDE)
    assert plain.probabilities.shape == (len(pixels), len(CLASSES))
    np.testing.assert_allclose(plain.probabilities, with_cam.probabilities, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, SIZE, SIZE, 1), np.float32),
        np.zeros((1, SIZE, SIZE, 1), np.int32),
        np.zeros((1, SIZE, SIZE), np.uint8),
        np.zeros((1, SIZE + 1, SIZE + 1, 1), np.uint8),
        np.zeros((1, SIZE, SIZE, 3), np.uint8),
        np.zeros((SIZE, SIZE, 1), np.uint8),
    ],
    ids=["float32", "int32", "no-channel", "wrong-size", "three-channels", "unbatched"],
)
@pytest.mark.parametrize("heatmap", [False, True])
def test_engine_rejects_wrong_dtype_or_shape(engine, bad: np.ndarray, heatmap: bool):
    with pytest.raises(ValueError, match="expected uint8"):
        engine.infer(bad, heatmap=heatmap)


def test_engine_is_thread_safe(engine):
    """4 threads x 10 calls, each thread with its own images, equal the serial results."""
    batches = [make_images(2, seed=100 + i)[..., np.newaxis] for i in range(4)]
    serial = [engine.infer(b, heatmap=True) for b in batches]
    results: dict[int, list] = {i: [] for i in range(4)}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                results[index].append(engine.infer(batches[index], heatmap=True))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    for index, outputs in results.items():
        assert len(outputs) == 10
        for out in outputs:
            np.testing.assert_allclose(
                out.probabilities, serial[index].probabilities, rtol=0, atol=1e-6
            )
            np.testing.assert_allclose(out.heatmaps, serial[index].heatmaps, rtol=0, atol=1e-6)
    # Different inputs give different answers, so a mix-up between threads would show.
    assert not np.allclose(serial[0].probabilities, serial[1].probabilities, rtol=0, atol=1e-7)
