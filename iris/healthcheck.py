"""Health check of the iris container: IRIS answers and its production is running.

docker-compose.yml runs it with IRIS's own interpreter (irispython), which signs in through
%Service_CallIn with the container user's OS identity (merge.cpf allows it) in the namespace
of IRISNAMESPACE (AISTACK, set by iris/Dockerfile). A running IRIS whose production is
stopped answers every prediction with an error, so it does not count as healthy; the Web
Gateway and HAProxy wait for this check.
"""

from __future__ import annotations

import sys

import iris

RUNNING = 1
"""Ens.Director's production state $$$eProductionStateRunning."""


def main() -> int:
    name, state = iris.ref(""), iris.ref(0)
    status = iris.cls("Ens.Director").GetProductionStatus(name, state)
    if not iris.cls("%SYSTEM.Status").IsOK(status):
        print(iris.cls("%SYSTEM.Status").GetErrorText(status))
        return 1
    if state.value != RUNNING:
        print(f"production {name.value or '(none)'} is not running (state {state.value})")
        return 1
    print(f"production {name.value} is running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
