# pyserving: `make run` sets everything up and serves; `make test` sets up and runs all tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
MODELS ?= models
GRPC_PORT ?= 9999
STAMP := $(VENV)/.installed

.PHONY: install run serve export test lint proto clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build from this machine's disk; a plain `torch` would pull CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[export,web,dev]'
	touch $@

install: $(STAMP)

export: install
	@if ls -d $(MODELS)/imagenet/[0-9]* >/dev/null 2>&1; then \
		echo "model imagenet already exported under $(MODELS)/imagenet"; \
	else \
		$(BIN)/pyserving export efficientnet-lite0 --repository $(MODELS) --name imagenet; \
	fi

run: export
	@echo "Classify a photo from another terminal:"
	@echo "  $(BIN)/pyserving classify photo.jpg --server localhost:$(GRPC_PORT)"
	$(BIN)/pyserving serve --model_name imagenet --model_base_path $(MODELS)/imagenet --port $(GRPC_PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Regenerate the committed gRPC stubs from protos/.
proto: install
	$(PY) protos/generate.py src/pyserving/_proto

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
