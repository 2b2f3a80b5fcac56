"""Grad-CAM of the classifier, checked against an independent closed form.

The head is GlobalAveragePooling → Dropout (inactive at inference) → Dense(logits), so the
gradient of logit ``c`` with respect to the last feature map ``A`` (h x w x K) is
``kernel[k, c] / (h * w)`` at every position. The Grad-CAM channel weights are therefore
``kernel[:, c] / (h * w)`` and the map, once divided by its maximum, is
``relu(sum_k kernel[k, c] * A_k) / max(...)``, with no gradient computation at all.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from aistack.xray.export import build_gradcam_function
from aistack.xray.labels import CLASSES
from aistack.xray.model import CAM_LAYER, LOGITS_LAYER, build_classifier, build_ensemble

SIZE = 64
CAM_SIDE = SIZE // 16  # stride-2 stem, then three 2x poolings
SEED = 7


def make_images(count: int, seed: int) -> np.ndarray:
    """Varied uint8 (count, SIZE, SIZE, 1) images: a bright blob over noise and a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = []
    for _ in range(count):
        cy, cx = rng.uniform(8, SIZE - 8, size=2)
        radius = rng.uniform(5, 14)
        blob = 200.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        ramp = rng.uniform(0, 60) * xx / SIZE
        noise = rng.normal(0, 20, size=(SIZE, SIZE))
        images.append(np.clip(blob + ramp + noise + 20, 0, 255).astype(np.uint8))
    return np.stack(images)[..., np.newaxis]


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(SEED)
    return build_classifier(image_size=SIZE, width=4)


@pytest.fixture(scope="module")
def gradcam(model: keras.Model):
    return build_gradcam_function(model)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_images(6, seed=11)


def raw_cams(member: keras.Model, pixels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """relu(sum_k kernel[k, c] * A_k) per image, for the given class of each image."""
    features_model = keras.Model(member.input, member.get_layer(CAM_LAYER).output)
    features = np.asarray(features_model(pixels.astype("float32"), training=False), np.float64)
    kernel = np.asarray(member.get_layer(LOGITS_LAYER).kernel, np.float64)  # (K, classes)
    return np.stack(
        [
            np.maximum(np.tensordot(image_features, kernel[:, c], axes=([-1], [0])), 0.0)
            for image_features, c in zip(features, classes, strict=True)
        ]
    )


def normalise(cams: np.ndarray) -> np.ndarray:
    peaks = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0)


def closed_form_cam(model: keras.Model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top class per image, normalised CAM per image) from the Dense kernel and A."""
    probabilities = np.asarray(model(pixels.astype("float32"), training=False))
    top = probabilities.argmax(axis=1)
    return top, normalise(raw_cams(model, pixels, top))


def test_outputs_probabilities_of_the_model_and_normalised_heatmaps(model, gradcam, images):
    out = gradcam(tf.constant(images))
    probabilities = out["probabilities"].numpy()
    heatmap = out["heatmap"].numpy()

    expected = np.asarray(model(images.astype("float32"), training=False))
    assert probabilities.shape == (len(images), len(CLASSES))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    assert heatmap.shape == (len(images), CAM_SIDE, CAM_SIDE)
    assert heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0
    assert heatmap.max() <= 1.0 + 1e-6
    peaks = heatmap.max(axis=(1, 2))
    assert (peaks > 0).any(), "every map is zero: the test would not check the normalisation"
    for peak in peaks:
        assert peak == pytest.approx(1.0, abs=1e-6) or peak == 0.0


def test_matches_the_closed_form_cam(model, gradcam, images):
    top, expected = closed_form_cam(model, images)
    out = gradcam(tf.constant(images))

    np.testing.assert_array_equal(out["probabilities"].numpy().argmax(axis=1), top)
    heatmap = out["heatmap"].numpy()
    np.testing.assert_allclose(heatmap, expected, atol=1e-4)
    # Not a trivially zero or flat comparison.
    assert (expected.max(axis=(1, 2)) == 1.0).sum() >= 1
    assert any(np.ptp(cam) > 0.1 for cam in expected)


def test_heatmap_is_for_the_top_class_not_another(model, gradcam, images):
    """The closed form for any other class gives a different map than the one returned."""
    features_model = keras.Model(model.input, model.get_layer(CAM_LAYER).output)
    features = np.asarray(features_model(images.astype("float32"), training=False))
    kernel = np.asarray(model.get_layer(LOGITS_LAYER).kernel)
    out = gradcam(tf.constant(images))
    top = out["probabilities"].numpy().argmax(axis=1)
    differs = 0
    for i, c in enumerate(top):
        for other in set(range(len(CLASSES))) - {int(c)}:
            cam = np.maximum(features[i] @ kernel[:, other], 0.0)
            cam = cam / cam.max() if cam.max() > 0 else cam
            differs += not np.allclose(cam, out["heatmap"].numpy()[i], atol=1e-3)
    assert differs > 0


def test_batch_gives_the_same_maps_as_one_image_at_a_time(gradcam):
    batch = make_images(3, seed=23)
    together = gradcam(tf.constant(batch))
    for i in range(len(batch)):
        alone = gradcam(tf.constant(batch[i : i + 1]))
        np.testing.assert_allclose(
            together["heatmap"].numpy()[i], alone["heatmap"].numpy()[0], atol=1e-5
        )
        np.testing.assert_allclose(
            together["probabilities"].numpy()[i],
            alone["probabilities"].numpy()[0],
            rtol=1e-5,
            atol=1e-6,
        )
    # The three images really differ, so mixing them up would show.
    maps = together["heatmap"].numpy()
    assert not np.allclose(maps[0], maps[1], atol=1e-3) or not np.allclose(
        maps[1], maps[2], atol=1e-3
    )


def test_accepts_uint8_pixels_like_the_signature(gradcam, images):
    """The exported signature feeds uint8; float input of the same values gives the same map."""
    as_uint8 = gradcam(tf.constant(images[:2], dtype=tf.uint8))
    as_float = gradcam(tf.constant(images[:2].astype("float32")))
    np.testing.assert_allclose(as_uint8["heatmap"].numpy(), as_float["heatmap"].numpy(), atol=1e-6)


def test_ensemble_cam_is_the_mean_of_member_cams_for_the_ensemble_class(images):
    """Members share h*w, so the 1/(h*w) factor cancels in the mean as well."""
    members = []
    for seed in (31, 32):
        keras.utils.set_random_seed(seed)
        members.append(build_classifier(image_size=SIZE, width=4, name=f"member_{seed}"))
    ensemble = build_ensemble(members)
    out = build_gradcam_function(ensemble)(tf.constant(images))

    member_probabilities = [
        np.asarray(m(images.astype("float32"), training=False)) for m in members
    ]
    mean = np.mean(member_probabilities, axis=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), mean, rtol=1e-5, atol=1e-6)
    top = mean.argmax(axis=1)
    expected = normalise(np.mean([raw_cams(m, images, top) for m in members], axis=0))
    np.testing.assert_allclose(out["heatmap"].numpy(), expected, atol=1e-4)
    # Each member alone explains differently, so the average is really checked.
    alone = normalise(raw_cams(members[0], images, top))
    assert not np.allclose(alone, expected, atol=1e-3)
