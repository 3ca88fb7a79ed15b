# NeuroScan: the two commands a new user needs are `make serve` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
BIN        := $(VENV)/bin
export PYTHONPATH := $(CURDIR)

DATA       ?= ../shared/data/brain-tumor-mri/Training
WEIGHTS    := model_store/brain_tumor.safetensors
MAR        := model_store/brain_tumor.mar
RUN_DIR    := var
TS_HOME    := $(RUN_DIR)/torchserve
TS_ENV     := TMPDIR=$(CURDIR)/$(RUN_DIR)/tmp LOG_LOCATION=$(CURDIR)/$(RUN_DIR)/logs METRICS_LOCATION=$(CURDIR)/$(RUN_DIR)/logs
HANDLER_SRC := $(wildcard handler/*.py neuroscan/*.py) config/model-config.yaml $(WEIGHTS)

.PHONY: help install test-deps archive serve ts-start ts-stop test train eda evaluate bench soak lint clean \
	docker-build test-docker

help:
	@echo "make serve     install, build the archive, start TorchServe + dashboard (Ctrl-C stops both)"
	@echo "make test      install everything the tests need and run the whole suite"
	@echo "make train | eda | evaluate | bench | soak | archive | lint | ts-start | ts-stop"

# ---- installation -----------------------------------------------------------------------------
$(VENV)/.installed: requirements.txt
	@command -v java >/dev/null || { echo "installing Java 17 (TorchServe needs it)"; $(APT) openjdk-17-jre-headless; }
	$(PYTHON_SYS) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
# Debian packages the tests use: Chromium (browser test), Prometheus/promtool (alert rules and a
# real scrape), shellcheck and docker-compose (container files are linted and validated), nginx
# and envsubst (the Kubernetes management proxy's site, run for real).
TEST_DEBS := chromium chromium-driver prometheus shellcheck docker-compose nginx gettext-base
# Debian starts these on install where systemd runs (ports 9090 and 80): the tests start their
# own, so a fresh install is stopped and disabled again; one that was there before is left alone.
TEST_SERVICES := prometheus nginx
DOCKER_DEBS := docker.io debootstrap
# Stops on the first failure: a failed apt-get must not leave CI running a suite whose Prometheus,
# nginx, compose and browser tests then skip (under CI=true they fail instead, see tests/deps.py).
test-deps: install
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -n "$$missing" ] || exit 0; \
	if ! command -v apt-get >/dev/null; then \
		echo "test-deps: no apt-get to install" $$missing >&2; [ "$${CI:-}" != true ] || exit 1; exit 0; fi; \
	echo "installing" $$missing; \
	apt-get update -q >/dev/null || { echo "test-deps: apt-get update failed" >&2; exit 1; }; \
	$(APT) $$missing >/dev/null || { echo "test-deps: apt-get install failed for:" $$missing >&2; exit 1; }; \
	if [ -d /run/systemd/system ]; then for unit in $(TEST_SERVICES); do \
		case " $$missing " in *" $$unit "*) systemctl disable --now $$unit >/dev/null 2>&1 || true;; esac; \
	done; fi

# ---- serving ----------------------------------------------------------------------------------
# The ONNX feature-map graphs the slim server image runs (fp32, and int8 calibrated on train images).
ONNX := build/onnx/brain_tumor.onnx build/onnx/brain_tumor.int8.onnx
$(ONNX) &: $(VENV)/.installed $(WEIGHTS) handler/export_onnx.py
	$(PY) -m handler.export_onnx --weights $(WEIGHTS) --out build/onnx/brain_tumor.onnx \
		--int8 build/onnx/brain_tumor.int8.onnx --data $(DATA)

$(MAR): $(VENV)/.installed $(HANDLER_SRC) $(ONNX)
	rm -rf build/mar && mkdir -p build/mar
	cp -r neuroscan handler build/mar/ && find build/mar -name __pycache__ -prune -exec rm -rf {} +
	cp $(ONNX) build/mar/
	$(BIN)/torch-model-archiver --force --model-name brain_tumor \
		--version $$($(PY) -c "from neuroscan.weights import read_meta; print(read_meta('$(WEIGHTS)').version)") \
		--handler handler/brain_tumor_handler.py --serialized-file $(WEIGHTS) \
		--extra-files build/mar --config-file config/model-config.yaml --export-path model_store
	@echo "built $(MAR)"

archive: $(MAR)

ts-start: $(MAR)
	mkdir -p $(TS_HOME) $(RUN_DIR)/tmp $(RUN_DIR)/logs
	cd $(TS_HOME) && $(TS_ENV) $(CURDIR)/$(BIN)/torchserve --start --ncs --ts-config $(CURDIR)/config/config.properties \
		--log-config $(CURDIR)/config/log4j2-files.xml --model-store $(CURDIR)/model_store --models brain_tumor=brain_tumor.mar
	$(PY) -m handler.wait_ready --key-file $(TS_HOME)/key_file.json

ts-stop:
	-cd $(TS_HOME) 2>/dev/null && $(TS_ENV) $(CURDIR)/$(BIN)/torchserve --stop

serve: ts-start
	@echo "TorchServe ready (management key in $(TS_HOME)/key_file.json); dashboard on http://127.0.0.1:8000"
	@trap '$(MAKE) --no-print-directory ts-stop' EXIT; NEUROSCAN_LOG_FILE=$(RUN_DIR)/logs/dashboard.log $(PY) -m dashboard

# ---- benchmark: TorchServe under load vs the seed design and the raw-forward ceiling ------------
bench: $(MAR)
	$(PY) tests/bench_serving.py

# ---- soak: steady load for a bounded time (not part of `make test`; SOAK_ARGS="--minutes 2" shortens it) -----
soak: $(MAR)
	$(PY) tests/soak.py $(SOAK_ARGS)

# ---- tests ------------------------------------------------------------------------------------
test: test-deps $(MAR)
	$(PY) -m pytest

# ---- containers -------------------------------------------------------------------------------
BASE_IMAGE ?= python:3.11-slim-bookworm
NEUROSCAN_TAG ?= dev
docker-build: $(MAR)
	BASE_IMAGE=$(BASE_IMAGE) NEUROSCAN_TAG=$(NEUROSCAN_TAG) PIP=$(BIN)/pip sh docker/images.sh build

test-docker: test-deps $(MAR)
	@docker info >/dev/null 2>&1 || { missing=$$(for p in $(DOCKER_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  [ -z "$$missing" ] || { apt-get update -q >/dev/null && $(APT) $$missing >/dev/null; }; }
	NEUROSCAN_TAG=$(NEUROSCAN_TAG) PIP=$(BIN)/pip PY=$(PY) sh docker/images.sh test

# ---- training ---------------------------------------------------------------------------------
train: install
	$(PY) -m training.split --data $(DATA)
	$(PY) -m training.train --model lite0 --data $(DATA) --out runs/lite0 --resume
	$(PY) -m training.train --model baseline --data $(DATA) --out runs/baseline --resume
	$(PY) -m training.evaluate --weights runs/lite0/model.safetensors --name lite0 --data $(DATA) \
		--calibrate --export $(WEIGHTS) --version $${VERSION:-1.1.0}
	$(PY) -m training.evaluate --weights runs/baseline/model.safetensors --name baseline --data $(DATA) \
		--calibrate --export model_store/baseline_cnn.safetensors --version baseline-1.0.0

eda: install
	$(PY) -m training.eda --data $(DATA)

evaluate: install
	$(PY) -m training.evaluate --weights $(WEIGHTS) --name lite0 --data $(DATA)
	$(PY) -m training.evaluate --weights model_store/baseline_cnn.safetensors --name baseline --data $(DATA)

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint docker/Dockerfile.*

clean: ts-stop
	rm -rf build $(MAR) $(RUN_DIR)
