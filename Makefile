# etlctl developer entry points. Everything is idempotent: run any target on a fresh
# Debian 12 machine (as root or with passwordless sudo) and it installs what is missing.
#
#   make demo   the main job: services, images, the example connection, a real sync
#   make test   the whole test suite (what .ci/run calls)

VENV        ?= .venv
PYTHON      ?= python3
BASE_IMAGE  ?= etlctl/base-python:3.11-bookworm
ETLCTL      := $(VENV)/bin/etlctl
STAMP       := $(VENV)/.installed

.PHONY: install services images test test-unit lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/ensure-services.sh all

# BASE_IMAGE=python:3.11-slim on hosts with a registry; the default is built locally
# with debootstrap (no registry needed).
images: install
	bash scripts/ensure-services.sh docker
	@if [ "$(BASE_IMAGE)" = "etlctl/base-python:3.11-bookworm" ]; then bash scripts/build-base-image.sh "$(BASE_IMAGE)"; fi
	$(ETLCTL) images build --base-image "$(BASE_IMAGE)"

test: install services images
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

test-unit: install
	$(VENV)/bin/pytest tests/unit

lint: install
	$(VENV)/bin/ruff check .

demo: install images
	bash scripts/ensure-services.sh docker rabbitmq
	bash examples/demo.sh

bench: install images
	$(VENV)/bin/python bench/sync_throughput.py

clean:
	rm -rf $(VENV) .demo build *.egg-info
