# cellstate — the two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test lint format models models-wordlm models-sentiment clean

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
	$(BIN)/ruff check service training tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(VENV)/.all
	$(BIN)/ruff check service training tests benchmarks
	$(BIN)/ruff format --check service training tests benchmarks
	$(BIN)/mypy

format: $(VENV)/.all
	$(BIN)/ruff check --fix service training tests benchmarks
	$(BIN)/ruff format service training tests benchmarks

models: models-wordlm models-sentiment  ## fetch data, train, evaluate and export every default model

models-wordlm: $(VENV)/.all
	$(BIN)/python -m training.wordlm all --checkpoint runs/wordlm.pt

models-sentiment: $(VENV)/.all
	$(BIN)/python -m training.sentiment all --checkpoint runs/sentiment.pt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
