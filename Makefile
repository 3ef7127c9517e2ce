# pyserving: `make run` sets everything up and serves; `make test` sets up and runs all tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
MODELS ?= models
# `make run` is a demo on this machine: loopback only (`pyserving serve` itself listens on
# every interface by default, as TF Serving does, for containers).
HOST ?= 127.0.0.1
GRPC_PORT ?= 9999
REST_PORT ?= 8501
WEB_PORT ?= 8080
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.run-installed
LINT_STAMP := $(VENV)/.lint-installed
# Dev tools at the versions in constraints.txt, in every environment.
PIP_INSTALL := $(PY) -m pip install --quiet -c constraints.txt

.PHONY: install run serve export test test-fast lint proto clean chromium strace audio-tools apt-lists podman image bench flags-doc

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build from this machine's disk; a plain `torch` would pull CUDA packages.
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[export,int8,tensorflow,sklearn,web,openvino,audio,s3,dev]'
	# Silero VAD's ONNX files for `export silero-vad`; --no-deps: it declares torch.
	$(PIP_INSTALL) --no-deps silero-vad==6.2.3
	# TF Serving's gRPC client for the drop-in tests; --no-deps: it declares tensorflow, and
	# tensorflow-cpu (the [tensorflow] extra) is the same package without CUDA.
	$(PIP_INSTALL) --no-deps tensorflow-serving-api==2.21.0
	touch $@ $(LINT_STAMP) $(RUN_STAMP)

# What `make run` needs: serving, the web app, OpenVINO, and PyTorch to export the default
# model. TensorFlow, scikit-learn and the test tools come with `make install` (`make test`).
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[export,web,openvino]'
	touch $@

# What linting and type checking need: no torch, no TensorFlow.
$(LINT_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[web,dev]'
	touch $@

install: $(STAMP)

# Real third-party clients for the protocol tests, in their own environment:
# tritonclient pins an older protobuf than pyserving's gRPC stubs need. perf_analyzer's
# wheel needs glibc >= 2.38; on older systems its test runs it through Debian 13's C
# library, downloaded and unpacked privately (tests/clients/newer_glibc.py).
CLIENTS := .venv-clients/.installed
$(CLIENTS):
	$(PYTHON) -m venv .venv-clients
	.venv-clients/bin/python -m pip install --quiet 'tritonclient[grpc,http]==2.73.0'
	# Its own folder: pip refuses a manylinux_2_38 wheel into a venv on an older glibc.
	.venv-clients/bin/python -m pip install --quiet --no-deps --only-binary=:all: \
		--platform manylinux_2_38_x86_64 --target .venv-clients/perf-analyzer \
		perf-analyzer==2.60.0
	touch $@

export: $(RUN_STAMP)
	@if ls -d $(MODELS)/imagenet/[0-9]* >/dev/null 2>&1; then \
		echo "model imagenet already exported under $(MODELS)/imagenet"; \
	else \
		$(BIN)/pyserving export efficientnet-lite0 --repository $(MODELS) --name imagenet; \
	fi

# The model server and the web app together on $(HOST); the URL is printed once both
# answer (the model loaded, the page served). Ctrl-C stops both.
run: export
	@trap 'kill $$server $$web 2>/dev/null; wait' INT TERM EXIT; \
	$(BIN)/pyserving serve --model_name imagenet --model_base_path $(MODELS)/imagenet \
		--host $(HOST) --port $(GRPC_PORT) --rest_api_port $(REST_PORT) & server=$$!; \
	$(BIN)/pyserving web --host $(HOST) --port $(WEB_PORT) --server $(HOST):$(GRPC_PORT) & web=$$!; \
	until $(BIN)/pyserving health --server $(HOST):$(GRPC_PORT) --timeout 1 >/dev/null 2>&1 && \
		$(PY) -c "import urllib.request as u; u.urlopen('http://$(HOST):$(WEB_PORT)/healthz', \
		timeout=1)" 2>/dev/null; do \
		kill -0 $$server 2>/dev/null && kill -0 $$web 2>/dev/null || exit 1; \
		sleep 0.5; \
	done; \
	echo; echo "  Open http://$(HOST):$(WEB_PORT) and upload a photo."; \
	echo "  Or: $(BIN)/pyserving classify photo.jpg --server $(HOST):$(GRPC_PORT)"; echo; \
	wait -n; exit $$?

serve: export
	$(BIN)/pyserving serve --model_name imagenet --model_base_path $(MODELS)/imagenet \
		--host $(HOST) --port $(GRPC_PORT) --rest_api_port $(REST_PORT)

# Debian's Chromium for the browser tests (`playwright install` cannot download here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# strace: the test that shows a served model makes no connection outside loopback.
strace:
	@command -v strace >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace; }

# espeak-ng and sox: the audio tests make speech, noises and tones with them.
audio-tools:
	@command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox; }

# Debian's package lists: tests fetch wallpapers (real photographs) and a newer libc with
# `apt-get download`, which needs them; a clean machine may have none yet.
apt-lists:
	@ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || $(SUDO) apt-get update -qq

test: install chromium strace audio-tools podman apt-lists $(CLIENTS) lint
	$(BIN)/pytest --cov --cov-report=term

# Everything but the tests that start processes, a browser or an export (under a minute).
test-fast: install
	$(BIN)/pytest -m "not slow" -q --ignore=tests/e2e  # all slow: not even collected

# Throughput and latency against the in-process baseline; writes bench/results.md.
# Run it on an idle machine; BENCH_ARGS passes options (see bench/README.md).
bench: install export
	$(PY) -m bench.run --repository $(MODELS) $(BENCH_ARGS)
	$(PY) -m bench.explain --repository $(MODELS)

lint: $(LINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Regenerate docs/flags.md from the parser (tests/test_cli_flags.py checks it is current).
flags-doc: $(LINT_STAMP)
	$(PY) docs/generate_flags.py > docs/flags.md

# Regenerate the committed gRPC stubs from protos/.
proto: install
	$(PY) protos/generate.py src/pyserving/_proto

# podman, runc and debootstrap from Debian: the image tests build and run the images with them
# (tests/e2e/images/; deploy/podman/containers.conf picks runc, as crun refuses
# hybrid cgroups).
podman:
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && \
		command -v debootstrap >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap; }

# The server, web and export images, with podman or docker (deploy/images.sh; docs/deploy.md).
# BASE_IMAGE= and TORCH_INDEX_URL= pass the Dockerfile's build arguments.
IMAGE_TAG ?= 0.1.0
image:
	IMAGE_TAG=$(IMAGE_TAG) deploy/images.sh server web export

clean:
	rm -rf $(VENV) .venv-clients build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
