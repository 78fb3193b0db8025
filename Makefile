# cellstate — the two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: fuzz overload run test test-fast lint format models models-wordlm models-sentiment models-forecast clean openapi lock client image-size

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Service only (what the Docker image carries: no torch).
$(VENV)/.service: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: service + training (torch==2.13.0, the local CPU build) + development tools.
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $@ $(VENV)/.service

run: $(VENV)/.service  ## serve the committed models on http://$(HOST):$(PORT)
	$(BIN)/python -m service

test: $(VENV)/.all  ## lint, type-check and run the whole suite
	$(BIN)/ruff check service training evaluation tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The inner loop: no real servers or browsers, no package registry, nothing slower than ~5 s (tests/markers.py).
test-fast: $(VENV)/.all  ## the unit lane: pytest -m "not e2e and not network and not slow"
	$(BIN)/python -m pytest -m "not e2e and not network and not slow"

# A longer schemathesis run than the one in `make test` (tests/e2e/test_schemathesis.py): every operation, 200
# cases per operation and phase, a new seed each time (CELLSTATE_FUZZ_EXAMPLES / CELLSTATE_FUZZ_SEED override).
fuzz: $(VENV)/.all  ## schemathesis against a real uvicorn: fails on any 5xx or response the spec does not describe
	CELLSTATE_FUZZ_EXAMPLES=$${CELLSTATE_FUZZ_EXAMPLES:-200} CELLSTATE_FUZZ_SEED=$${CELLSTATE_FUZZ_SEED:-$$(date +%s)} \
		$(BIN)/python -m pytest -p no:cacheprovider -rx tests/e2e/test_schemathesis.py

overload: $(VENV)/.all  ## flood /generate, /sentiment and /forecast above capacity, probe /health (BENCHMARKS.md)
	$(BIN)/python -m benchmarks.overload

lint: $(VENV)/.all
	$(BIN)/ruff check service training evaluation tests benchmarks scripts
	$(BIN)/ruff format --check service training evaluation tests benchmarks scripts
	$(BIN)/mypy

format: $(VENV)/.all
	$(BIN)/ruff check --fix service training evaluation tests benchmarks scripts
	$(BIN)/ruff format service training evaluation tests benchmarks scripts

models: models-wordlm models-sentiment models-forecast  ## fetch data, train, evaluate and export every default model

models-wordlm: $(VENV)/.all  ## ~25 min on 2 free cores: two word LMs trained side by side (one process each), averaged
	$(BIN)/python -m training.wordlm all --checkpoint runs/wordlm.pt

models-sentiment: $(VENV)/.all
	$(BIN)/python -m training.sentiment all --checkpoint runs/sentiment.pt --threads 1

models-forecast: $(VENV)/.all  ## ~27 min on 2 cores: 3 LSTM members (9.5 min budget each), ETS/Theta fitted alongside
	$(BIN)/python -m training.forecast all --checkpoint runs/forecast.pt --docs-dir docs
	$(BIN)/python -m evaluation.forecast --out docs/forecast_table.md  # the reserved series: scored, never trained on

# ---- packaging (README: Docker, OpenAPI client) ----
openapi: $(VENV)/.all  ## rewrite openapi.json from the routes (a test fails while it is stale)
	$(BIN)/python scripts/export_openapi.py

lock: $(VENV)/.all  ## re-resolve requirements/runtime.txt (what the Docker image installs) from pyproject.toml
	$(BIN)/python scripts/lock_runtime.py

client: $(VENV)/.all  ## generate the Python client from openapi.json into build/cellstate-client
	$(BIN)/openapi-python-client generate --path openapi.json --output-path build/cellstate-client --overwrite \
		--config clients/openapi-python-client.yaml

image-size: $(VENV)/.all  ## the Docker image's size from its locked dependencies (fresh venv), code and models
	$(BIN)/python scripts/image_size.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
