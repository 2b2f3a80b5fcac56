"""TF Serving's config files, parsed as TF Serving parses them (text protos, strict fields).

``models.config`` is parsed with TF Serving's own ``ModelServerConfig`` and must equal the
rendering of the committed model folder. ``batching.config`` and ``monitoring.config`` are
parsed with schema doubles (below), since no installable package ships their protos in a
form current protobuf loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2
from typer.testing import CliRunner

from aistack.cli import app
from aistack.inference.tfserving_config import render_models_config, served_labels
from aistack.inference.versions import (
    LABELS_FILE,
    VersionNotChosen,
    choose_version,
    read_labels,
    set_label,
)
from aistack.xray.warmup import WARMUP_BATCH_SIZES
from tests.conftest import MODEL_DIR, ROOT

TF_SERVING = ROOT / "tf-serving"
MODELS_CONFIG = TF_SERVING / "models.config"
BATCHING_CONFIG = TF_SERVING / "batching.config"
MONITORING_CONFIG = TF_SERVING / "monitoring.config"


def fake_versions(base: Path, *numbers: int) -> Path:
    """Version folders that count as SavedModels for version resolution (not loadable)."""
    for number in numbers:
        (base / str(number)).mkdir(parents=True)
        (base / str(number) / "saved_model.pb").write_bytes(b"")
    return base


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def policy_versions(config) -> list[int]:
    assert config.model_version_policy.WhichOneof("policy_choice") == "specific"
    return list(config.model_version_policy.specific.versions)


# --------------------------------------------------------------------------- models.config


def test_committed_models_config_is_the_rendering_of_the_committed_model_dir():
    assert MODELS_CONFIG.read_text() == render_models_config(MODEL_DIR), (
        "tf-serving/models.config is stale: run `aistack models tf-config`"
    )


def test_committed_models_config_serves_what_aistack_serve_serves():
    server_config = parse_models_config(MODELS_CONFIG.read_text())
    assert server_config.WhichOneof("config") == "model_config_list"
    (config,) = server_config.model_config_list.config
    assert config.name == MODEL_DIR.name == "covid19"
    assert config.base_path == "/models/covid19"
    assert config.model_platform == "tensorflow"
    stable = choose_version(MODEL_DIR).version
    assert read_labels(MODEL_DIR)["stable"] == stable
    assert dict(config.version_labels) == {"stable": stable, "canary": stable}
    assert policy_versions(config) == [stable]


def test_canary_is_the_newest_version_when_newer_than_stable(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 1, 2, 3)
    set_label(model_dir, "stable", 2)
    (config,) = parse_models_config(render_models_config(model_dir)).model_config_list.config
    assert dict(config.version_labels) == {"stable": 2, "canary": 3}
    assert policy_versions(config) == [2, 3]
    assert config.base_path == "/models/m"

    set_label(model_dir, "stable", 3)
    (config,) = parse_models_config(render_models_config(model_dir)).model_config_list.config
    assert dict(config.version_labels) == {"stable": 3, "canary": 3}
    assert policy_versions(config) == [3]


def test_labels_of_version_labels_json_are_kept(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 1, 2, 3)
    set_label(model_dir, "stable", 3)
    set_label(model_dir, "canary", 1)
    set_label(model_dir, "previous", 2)
    assert served_labels(model_dir) == {"canary": 1, "previous": 2, "stable": 3}
    (config,) = parse_models_config(render_models_config(model_dir)).model_config_list.config
    assert policy_versions(config) == [1, 2, 3]


def test_a_lone_unlabelled_version_is_stable_and_canary(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 4)
    assert served_labels(model_dir) == {"canary": 4, "stable": 4}


def test_rendering_refuses_what_tf_serving_or_aistack_serve_would(tmp_path: Path):
    several = fake_versions(tmp_path / "several", 1, 2)
    with pytest.raises(VersionNotChosen):
        render_models_config(several)
    (several / LABELS_FILE).write_text(json.dumps({"stable": 1, "canary": 7}))
    with pytest.raises(FileNotFoundError, match="not on disk"):
        render_models_config(several)
    (several / LABELS_FILE).write_text(json.dumps({"stable": 1, 'x" }': 2}))
    with pytest.raises(ValueError, match="malformed labels"):
        render_models_config(several)
    with pytest.raises(FileNotFoundError):
        render_models_config(tmp_path / "empty")
    with pytest.raises(ValueError, match="model folder name"):
        render_models_config(fake_versions(tmp_path / "bad name", 1))


def test_tf_config_command_writes_the_rendering(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 1, 2)
    set_label(model_dir, "stable", 1)
    out = tmp_path / "conf" / "models.config"
    result = CliRunner().invoke(
        app, ["models", "tf-config", "--model-dir", str(model_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_models_config(model_dir)
    assert "canary=2, stable=1" in result.stdout

    unchosen = fake_versions(tmp_path / "u", 1, 2)
    result = CliRunner().invoke(
        app, ["models", "tf-config", "--model-dir", str(unchosen), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    assert not (tmp_path / "x").exists()


def test_label_re_renders_the_tf_config(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 1, 2)
    set_label(model_dir, "stable", 1)
    out = tmp_path / "models.config"
    committed = MODELS_CONFIG.read_bytes()
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["models", "label", "stable", "2", "--model-dir", str(model_dir), "--tf-config", str(out)],
    )
    assert result.exit_code == 0, result.output
    (config,) = parse_models_config(out.read_text()).model_config_list.config
    assert dict(config.version_labels) == {"stable": 2, "canary": 2}
    # Without --tf-config, only the committed folder's models.config is re-rendered.
    result = runner.invoke(app, ["models", "label", "stable", "1", "--model-dir", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert MODELS_CONFIG.read_bytes() == committed
    (config,) = parse_models_config(out.read_text()).model_config_list.config
    assert dict(config.version_labels) == {"stable": 2, "canary": 2}


def test_label_says_when_the_tf_config_cannot_follow(tmp_path: Path):
    model_dir = fake_versions(tmp_path / "m", 1, 2)
    out = tmp_path / "models.config"
    result = CliRunner().invoke(
        app,
        ["models", "label", "canary", "2", "--model-dir", str(model_dir), "--tf-config", str(out)],
    )
    assert result.exit_code == 1
    assert "not re-rendered" in result.stderr
    assert read_labels(model_dir) == {"canary": 2}
    assert not out.exists()


# --------------------------------------------------------------------------- schema doubles
#
# Doubles of two TF Serving schemas, from tensorflow/serving (commit 9d981c5c, 2026-07-30):
#   tensorflow_serving/servables/tensorflow/session_bundle_config.proto, BatchingParameters
#   tensorflow_serving/config/monitoring_config.proto, PrometheusConfig and MonitoringConfig
# Same package, message names, field names, numbers and types, in a private descriptor pool;
# so text_format rejects unknown fields, typos and wrong types as TF Serving's parser does.

F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED
INT64_VALUE, BOOL_VALUE, STRING_VALUE = (
    ".google.protobuf.Int64Value",
    ".google.protobuf.BoolValue",
    ".google.protobuf.StringValue",
)

BATCHING_PARAMETERS_FIELDS = [
    ("max_batch_size", 1, F.TYPE_MESSAGE, OPTIONAL, INT64_VALUE),
    ("batch_timeout_micros", 2, F.TYPE_MESSAGE, OPTIONAL, INT64_VALUE),
    ("max_enqueued_batches", 3, F.TYPE_MESSAGE, OPTIONAL, INT64_VALUE),
    ("num_batch_threads", 4, F.TYPE_MESSAGE, OPTIONAL, INT64_VALUE),
    ("thread_pool_name", 5, F.TYPE_MESSAGE, OPTIONAL, STRING_VALUE),
    ("allowed_batch_sizes", 6, F.TYPE_INT64, REPEATED, None),
    ("pad_variable_length_inputs", 7, F.TYPE_BOOL, OPTIONAL, None),
    ("enable_large_batch_splitting", 8, F.TYPE_MESSAGE, OPTIONAL, BOOL_VALUE),
    ("max_execution_batch_size", 9, F.TYPE_MESSAGE, OPTIONAL, INT64_VALUE),
]
PROMETHEUS_CONFIG_FIELDS = [
    ("enable", 1, F.TYPE_BOOL, OPTIONAL, None),
    ("path", 2, F.TYPE_STRING, OPTIONAL, None),
]
MONITORING_CONFIG_FIELDS = [
    ("prometheus_config", 1, F.TYPE_MESSAGE, OPTIONAL, ".tensorflow.serving.PrometheusConfig"),
]


def schema_double(proto_file: str, messages: dict[str, list[tuple]]) -> dict[str, type[Message]]:
    """Message classes of package ``tensorflow.serving`` built from field declarations."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name=proto_file,
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    for message_name, fields in messages.items():
        message = file.message_type.add(name=message_name)
        for name, number, field_type, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in messages
    }


BatchingParameters = schema_double(
    "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
    {"BatchingParameters": BATCHING_PARAMETERS_FIELDS},
)["BatchingParameters"]
MonitoringConfig = schema_double(
    "tensorflow_serving/config/monitoring_config.proto",
    {"PrometheusConfig": PROMETHEUS_CONFIG_FIELDS, "MonitoringConfig": MONITORING_CONFIG_FIELDS},
)["MonitoringConfig"]


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (BatchingParameters, "max_batch_sise { value: 8 }"),
        (BatchingParameters, "max_batch_size: 8"),
        (BatchingParameters, "max_batch_size { value: 8 } max_batch_size { value: 8 }"),
        (BatchingParameters, 'allowed_batch_sizes: "4"'),
        (BatchingParameters, "pad_variable_length_inputs: maybe"),
        (MonitoringConfig, "prometheus_config { enabled: true }"),
        (MonitoringConfig, "prometheus_config { path: 7 }"),
    ],
)
def test_schema_doubles_reject_typos_and_wrong_types(schema: type[Message], text: str):
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text, schema())


def test_batching_config_follows_tf_serving_rules_for_online_serving():
    params = text_format.Parse(BATCHING_CONFIG.read_text(), BatchingParameters())
    assert params.max_batch_size.value == 8
    assert 1000 <= params.batch_timeout_micros.value <= 10_000  # TF Serving's CPU guideline
    assert 2 <= params.num_batch_threads.value <= 8
    assert params.max_enqueued_batches.value == params.num_batch_threads.value
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)), "allowed_batch_sizes must increase"
    assert sizes[-1] == params.max_batch_size.value
    assert not params.pad_variable_length_inputs


def test_warmup_covers_every_batch_size_the_server_runs():
    params = text_format.Parse(BATCHING_CONFIG.read_text(), BatchingParameters())
    assert set(WARMUP_BATCH_SIZES) == {1, *params.allowed_batch_sizes}


def test_monitoring_config_exposes_prometheus():
    config = text_format.Parse(MONITORING_CONFIG.read_text(), MonitoringConfig())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
