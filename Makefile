# p2plab: build everything, run the default scenario, run the tests.
#   make demo   - all set-up, then the default scenario (scenarios/hmm-selftest.yaml)
#   make test   - all set-up, then lint + every test (unit, device, integration)
# Expensive artifacts (QEMU, the kernel) live in $(P2PLAB_CACHE), keyed by their inputs.

SHELL := /bin/bash
export P2PLAB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/p2plab
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= scenarios/hmm-selftest.yaml
PYTEST_ARGS ?=

APT_PACKAGES := build-essential libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev flex bison \
	ninja-build pkg-config python3-venv dpkg-dev libelf-dev libssl-dev bc kmod cpio rsync \
	xz-utils busybox-static qemu-system-data seabios linux-source-6.12 debian-archive-keyring

.PHONY: all build deps qemu kernel guest venv demo test lint unit-test bench clean distclean help

all: build

help:
	@sed -n '1,4p' Makefile

build: deps qemu kernel guest venv

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f '$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all Debian packages present"; fi

qemu: deps
	@scripts/build-qemu.sh

kernel: deps
	@scripts/build-kernel.sh

guest: kernel
	@scripts/build-guest.sh

$(VENV)/.p2plab-stamp: pyproject.toml
	@[ -x $(PY) ] || { echo "venv: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "venv: installing p2plab (editable) with dev tools"
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.p2plab-stamp

demo: build
	@$(VENV)/bin/orchestrator run $(SCENARIO)

lint: venv
	$(VENV)/bin/ruff check orchestrator tests bench
	$(VENV)/bin/mypy

test: build lint
	$(VENV)/bin/pytest -ra $(PYTEST_ARGS)

unit-test: venv
	$(VENV)/bin/pytest -ra -m 'not integration and not devices' $(PYTEST_ARGS)

bench: build
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) "$(P2PLAB_CACHE)"
