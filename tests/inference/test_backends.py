"""``AISTACK_BACKENDS``: the documented format parses; mistakes say what is expected."""

from __future__ import annotations

import pytest

from aistack.inference.backends import BackendSpec, BackendSpecError, parse_backends


def test_empty_means_the_model_in_this_process():
    assert parse_backends("") == [BackendSpec("inprocess", "inprocess")]


def test_the_documented_example_parses():
    specs = parse_backends(
        "gpu=tfserving+grpc://tfserving-gpu:8500/covid19,"
        " cpu=tfserving+http://tfserving-cpu:8501/covid19?timeout_s=5&concurrency=4&format=row"
    )
    assert [(s.name, s.kind, s.host, s.port, s.model) for s in specs] == [
        ("gpu", "tfserving+grpc", "tfserving-gpu", 8500, "covid19"),
        ("cpu", "tfserving+http", "tfserving-cpu", 8501, "covid19"),
    ]
    assert specs[1].options == {"timeout_s": 5.0, "concurrency": 4, "format": "row"}
    assert specs[1].concurrency == 4 and specs[0].concurrency == 8


def test_default_ports_follow_the_transport():
    http, grpc = parse_backends("a=tfserving+http://h/m,b=tfserving+grpc://h/m")
    assert (http.port, grpc.port) == (8501, 8500)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("cpu", "expected name=inprocess"),
        ("cpu=http://h:8501/covid19", "expected name=inprocess"),
        ("cpu=tfserving+http://h:8501/", "expected name=inprocess"),
        ("cpu=tfserving+http://h:8501/m?retries=3", "unknown option 'retries'"),
        ("cpu=tfserving+http://h:8501/m?timeout_s=soon", "timeout_s='soon' is not valid"),
        ("cpu=tfserving+http://h:8501/m?format=xml", "columnar or row"),
        ("cpu=tfserving+http://h:99999/m", "bad port"),
        ("a=inprocess,a=inprocess", "unique"),
        ("1cpu=inprocess", "expected name=inprocess"),
    ],
)
def test_mistakes_are_explained(text, says):
    with pytest.raises(BackendSpecError, match=says.replace("?", r"\?")):
        parse_backends(text)
