# aistack: `make run` serves the committed model, `make test` runs the whole suite.
# Both create the project virtualenv (.venv) and install what they need.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8088
DATA   ?= ../shared/data
URL    ?= http://$(HOST):$(PORT)

RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev

.PHONY: run test lint format train evaluate bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# tensorflow-serving-api (TF Serving's protos: gRPC, configs, warm-up records) declares a
# dependency on the full `tensorflow` wheel; tensorflow-cpu provides the same module.
TFS_API := tensorflow-serving-api>=2.18,<2.22

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps "$(TFS_API)"
	touch $@

$(DEV_STAMP): pyproject.toml $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The local demo: authentication off, so loopback only (serve refuses anything else).
run: $(RUNTIME_STAMP)
	AISTACK_AUTH=off $(BIN)/aistack serve --host 127.0.0.1 --port $(PORT)

test: $(DEV_STAMP) lint
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks iris

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests benchmarks iris
	$(BIN)/ruff check --fix src tests benchmarks iris

# A new version beside the served one; `aistack models label stable N` serves it.
train: $(RUNTIME_STAMP)
	$(BIN)/aistack train xray --data $(DATA)/xray/train --out models/covid19

evaluate: $(RUNTIME_STAMP)
	$(BIN)/aistack evaluate xray --data $(DATA)/xray/test --json-out var/evaluation.json

bench: $(RUNTIME_STAMP)
	$(BIN)/aistack bench --url $(URL) --images $(DATA)/xray/test --clients 8 \
		--json-out var/bench.json --plot var/bench.png

clean:
	rm -rf var .pytest_cache .ruff_cache
