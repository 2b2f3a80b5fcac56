"""Export the classifier as a SavedModel in TF Serving layout with explicit signatures.

Signatures (inputs → outputs), all batched:

* ``serving_default``: ``image_bytes`` string[N] (encoded JPEG/PNG; TF Serving REST
  clients send ``{"b64": ...}``) → ``probabilities`` float32[N, 3].
* ``gradcam``: ``image_bytes`` string[N] → ``probabilities`` float32[N, 3] and
  ``heatmap`` float32[N, h, w] (Grad-CAM of the top class, 0..1), from one forward pass.
* ``predict_pixels`` / ``gradcam_pixels``: the same from ``pixels`` uint8[N, S, S, 1], for
  callers that decode and check images themselves (the in-process engine does).

Class order is :data:`aistack.xray.labels.CLASSES`; ``assets.extra/model_info.json`` records
it with the input size so that engines need no other configuration.
``assets.extra/tf_serving_warmup_requests`` (:mod:`aistack.xray.warmup`) lets TF Serving
warm each version up before it serves it; ``assets.extra/model.tflite``
(:mod:`aistack.xray.litert_export`) is the pixel signatures for the in-process LiteRT engine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from aistack.inference.versions import MODEL_INFO_FILE
from aistack.xray.labels import CLASSES
from aistack.xray.litert_export import write_litert_model
from aistack.xray.model import CAM_LAYER, LOGITS_LAYER
from aistack.xray.warmup import write_warmup_requests


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The member networks of an ensemble (see ``build_ensemble``), or the model itself."""
    return [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]


def build_gradcam_function(model: keras.Model):
    """pixels → (probabilities, heatmap): Grad-CAM on :data:`CAM_LAYER` in the same pass.

    For an ensemble, each member's map is taken for the ensemble's top class and the maps
    are averaged, so the heatmap explains the probabilities that are returned.
    """
    feature_models = [
        keras.Model(
            member.inputs,
            [
                member.get_layer(CAM_LAYER).output,
                member.get_layer(LOGITS_LAYER).output,
                member.output,
            ],
        )
        for member in ensemble_members(model)
    ]

    def gradcam(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(pixels, tf.float32)
        with tf.GradientTape() as tape:
            outputs = [features_model(x, training=False) for features_model in feature_models]
            probabilities = tf.add_n([probs for _, _, probs in outputs]) / len(outputs)
            top = tf.argmax(probabilities, axis=1)
            score = tf.add_n(
                [
                    tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
                    for _, logits, _ in outputs
                ]
            )
        features = [f for f, _, _ in outputs]
        cams = []
        for member_features, gradients in zip(
            features, tape.gradient(score, features), strict=True
        ):
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            cams.append(tf.nn.relu(tf.reduce_sum(member_features * weights, axis=-1)))
        cam = tf.add_n(cams) / len(cams)
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        heatmap = tf.math.divide_no_nan(cam, peak)
        return {"probabilities": probabilities, "heatmap": heatmap}

    return gradcam


def decode_batch(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded images → uint8[N, S, S, 1], grayscale and area-resized like the service does."""

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=1, expand_animations=False)
        resized = tf.image.resize(image, (image_size, image_size), method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return tf.map_fn(
        decode_one,
        image_bytes,
        fn_output_signature=tf.TensorSpec((image_size, image_size, 1), tf.uint8),
    )


def export_saved_model(
    model: keras.Model,
    model_dir: Path,
    version: int,
    extra_info: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model_dir/<version>/`` and return it.

    An existing version is never replaced unless ``overwrite`` says so: a served model must
    not change under its version number.
    """
    image_size = int(model.input_shape[1])
    gradcam = build_gradcam_function(model)
    bytes_spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]
    pixels_spec = [tf.TensorSpec([None, image_size, image_size, 1], tf.uint8, name="pixels")]

    def predict_pixels(pixels):
        return {"probabilities": model(tf.cast(pixels, tf.float32), training=False)}

    def serving_default(image_bytes):
        return predict_pixels(decode_batch(image_bytes, image_size))

    def gradcam_bytes(image_bytes):
        return gradcam(decode_batch(image_bytes, image_size))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_default, input_signature=bytes_spec)
    archive.add_endpoint("gradcam", gradcam_bytes, input_signature=bytes_spec)
    archive.add_endpoint("predict_pixels", predict_pixels, input_signature=pixels_spec)
    archive.add_endpoint("gradcam_pixels", gradcam, input_signature=pixels_spec)

    target = model_dir / str(version)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; a version is never written over")
        shutil.rmtree(target)
    archive.write_out(str(target), verbose=False)
    info = {
        "name": model_dir.name,
        "version": version,
        "image_size": image_size,
        "classes": list(CLASSES),
        "cam_layer": CAM_LAYER,
        "members": len(ensemble_members(model)),
        **(extra_info or {}),
    }
    info_path = target / MODEL_INFO_FILE
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=2))
    write_warmup_requests(target, model_name=model_dir.name, image_size=image_size)
    write_litert_model(target)
    return target
