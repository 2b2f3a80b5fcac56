"""Throughput of two (or more) revisions of the service, in alternating runs on one machine.

    .venv/bin/python benchmarks/compare_revisions.py 002e8f3 HEAD --endpoint v1-heatmap \
        --rounds 6

Each revision is checked out with ``git worktree`` into a temporary folder and served by
this venv's Python with ``PYTHONPATH`` pointing at its sources, all with the same committed
model and auth off (older revisions had none). Runs rotate through the revisions so that a
shared machine's drift hits all alike; each run is 8 clients posting every test image, and
reports the server's CPU per image too, which others' load on the machine disturbs less.
``--env NAME=VALUE`` sets a variable for every server; a variant ``REV+NAME=VALUE[+...]``
serves ``REV`` with those variables, to compare settings of one revision:

    .venv/bin/python benchmarks/compare_revisions.py HEAD \
        HEAD+AISTACK_MALLOC_MMAP_THRESHOLD_BYTES=131072 HEAD+AISTACK_MALLOC_MMAP_THRESHOLD_BYTES=0
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import LocalServer, start_local_server

ROOT = Path(__file__).resolve().parents[1]


def start(src: Path, var_dir: Path, env: dict[str, str]) -> LocalServer:
    """The revision whose sources are ``src``, served with the committed model, auth off."""
    return start_local_server(
        var_dir,
        {
            "PYTHONPATH": str(src),
            "AISTACK_MODEL_DIR": str(ROOT / "models" / "covid19"),
            "AISTACK_AUTH": "off",
            **env,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("revisions", nargs="+")
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared/data/xray/test")
    parser.add_argument("--endpoint", default="v1-heatmap")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    images = list_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        try:
            for variant in args.revisions:
                revision, *settings = variant.split("+")
                tree = Path(tmp) / f"tree-{len(servers)}"
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(ROOT),
                        "worktree",
                        "add",
                        "-q",
                        "--detach",
                        str(tree),
                        revision,
                    ],
                    check=True,
                )
                servers[variant] = start(
                    tree / "src/python",
                    Path(tmp) / f"var-{len(servers)}",
                    env | dict(item.split("=", 1) for item in settings),
                )
            for server in servers.values():  # warm every server before measuring
                run_benchmark(server.url, images[:4], 2, args.endpoint)
            results: dict[str, list[float]] = {r: [] for r in servers}
            cpu_ms: dict[str, list[float]] = {r: [] for r in servers}
            names = list(servers)
            for round_index in range(args.rounds):
                shift = round_index % len(names)
                for revision in names[shift:] + names[:shift]:
                    server = servers[revision]
                    cpu_before = server.cpu_s()
                    summary = summarize(
                        run_benchmark(server.url, images, args.clients, args.endpoint)
                    )
                    assert summary["errors"] == 0, summary
                    per_image = (server.cpu_s() - cpu_before) * 1000 / summary["requests"]
                    results[revision].append(summary["throughput_images_per_s"])
                    cpu_ms[revision].append(per_image)
                    print(
                        f"{revision:<12} {summary['throughput_images_per_s']:6.1f} img/s "
                        f"{per_image:6.1f} server CPU ms/image"
                    )
        finally:
            for server in servers.values():
                server.stop()
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    base = statistics.median(results[names[0]])
    base_cpu = statistics.median(cpu_ms[names[0]])
    for revision, values in results.items():
        median, cpu = statistics.median(values), statistics.median(cpu_ms[revision])
        print(
            f"{revision:<12} median {median:6.1f} img/s  ratio to {names[0]} {median / base:.3f}"
            f"  |  {cpu:5.1f} server CPU ms/image, ratio {cpu / base_cpu:.3f}"
        )


if __name__ == "__main__":
    main()
