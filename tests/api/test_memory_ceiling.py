"""Eight worst-case images at once stay under a memory ceiling, and the service survives them.

The images are the ones benchmarks/decode_memory.py measures: a 7070x7070 16-bit RGBA PNG
(~380 KB) and a 48,828x1,023 progressive 4:4:4 JPEG (~570 KB), both under the default
50-megapixel limit. With the default two concurrent decodes the server peaked at about
1.5 GB RSS (0.8 GB of it the warm server), against 2.9 GB with eight; before decoding went
straight to gray, one such PNG alone cost 0.7 GB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.decode_memory import burst, post_image, worst_case_jpeg, worst_case_png

from aistack.bench.local_server import LocalServer, start_local_server

CEILING_MB = 2000
"""Measured peak ~1.5 GB plus a third for noise and growth; at most 2 GB by requirement."""

CLIENTS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of our own: VmHWM is then this test's peak and no other test's."""
    local = start_local_server(tmp_path_factory.mktemp("memory-var"), env={"AISTACK_AUTH": "off"})
    yield local
    local.stop()


@pytest.mark.slow
def test_eight_worst_case_images_at_once_stay_under_the_ceiling(
    server: LocalServer, sample_images: dict[str, Path]
) -> None:
    normal = sample_images["normal"].read_bytes()
    assert post_image(server.url, normal).status == 200  # the model is warm before the bursts
    for name, data in (("png", worst_case_png()), ("jpeg", worst_case_jpeg())):
        answers = burst(server.url, data, CLIENTS)
        assert len(answers) == CLIENTS
        for answer in answers:
            assert answer.json, (name, answer)
            assert 200 <= answer.status < 300 or 400 <= answer.status < 500, (name, answer)
    peak = server.rss_mb(peak=True)
    assert peak < CEILING_MB, f"peak RSS {peak:.0f} MB; log:\n{server.log()[-2000:]}"
    assert post_image(server.url, normal).status == 200
