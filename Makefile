# p2plab: build everything, run the default scenario, run the tests.
#   make demo   - all set-up, then the default scenario (scenarios/hmm-selftest.yaml)
#   make test   - all set-up, then lint + every test (unit, device, integration)
#   make fuzz   - a sanitizer build of QEMU, then a long fuzz campaign of both devices
# Expensive artifacts (QEMU, the kernels) live in $(P2PLAB_CACHE), keyed by their inputs.

SHELL := /bin/bash
export P2PLAB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/p2plab
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= scenarios/hmm-selftest.yaml
PYTEST_ARGS ?=

# The guest kernels, each Debian's linux-source-SERIES (build/guest/NAME/).
# KERNEL_SERIES is the default kernel; pin another series here if Debian stops
# serving it (the build falls back to the newest served one by itself, loudly).
KERNEL_SERIES ?= 7.2
LTS_SERIES ?= 6.12
DEBUG_KERNEL := $(KERNEL_SERIES)-debug
# KERNEL_SRC=<dir> builds your own tree instead, as kernel NAME $(KERNEL_NAME).
KERNEL_NAME ?= custom
KERNELS := $(if $(KERNEL_SRC),$(KERNEL_NAME),$(KERNEL_SERIES) $(LTS_SERIES))
TEST_KERNELS := $(if $(KERNEL_SRC),$(KERNEL_NAME),$(KERNELS) $(DEBUG_KERNEL))
export P2PLAB_TEST_KERNELS := $(TEST_KERNELS)

APT_PACKAGES := build-essential libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev flex bison \
	ninja-build pkg-config python3-venv dpkg-dev libelf-dev libssl-dev bc kmod cpio rsync \
	xz-utils busybox-static qemu-system-data seabios debian-archive-keyring \
	cmake libpci-dev iproute2

.PHONY: all build deps qemu qemu-sanitize fuzz stress kernel kernel-debug rdma guest guest-debug venv demo test lint unit-test bench clean distclean help

# QEMU, each kernel and the RDMA userspace are independent builds: run them side by side, so one's
# serial phases (configure, link, modpost) leave no core idle.  Each build
# prefixes its own lines.  JOBS=1 builds one thing at a time.
JOBS ?= 3
MAKEFLAGS += --jobs=$(JOBS)

all: build

help:
	@sed -n '1,5p' Makefile

build: deps qemu kernel rdma guest venv

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f '$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all Debian packages present"; fi

qemu: deps
	@scripts/build-qemu.sh

# The fuzzer's QEMU: AddressSanitizer + UBSan, its own build tree in the cache.
qemu-sanitize: deps
	@scripts/build-qemu.sh sanitize

# A long structured fuzz campaign of both device models against the sanitizer
# build (python -m fuzz; docs/fuzzing.md).  Reproducers land in build/fuzz/.
FUZZ_OPS ?= 1000000
FUZZ_SEED ?= 1
fuzz: qemu-sanitize venv
	$(PY) -m fuzz run --qemu build/bin/qemu-system-x86_64-sanitize --ops $(FUZZ_OPS) \
		--seed $(FUZZ_SEED) --out build/fuzz

kernel: $(addprefix kernel-,$(KERNELS))
	@ln -sfn $(firstword $(KERNELS)) build/guest/default

# The debug flavour (lockdep, KASAN, kmemleak, ...): built on demand, and by make test.
kernel-debug: kernel-$(DEBUG_KERNEL)

# kernel-7.2, kernel-6.12, kernel-7.2-debug, ...: one kernel (scripts/build-kernel.sh NAME).
# The scripts run kbuild with their own -j: they get none of this make's flags.
SUBMAKE_ENV := env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL

kernel-%: deps
	@$(SUBMAKE_ENV) scripts/build-kernel.sh $*

# rdma-core with our providers, and perftest: the guest's RDMA userspace
# (scripts/build-rdma.sh), the same for every kernel; prints its build time.
rdma: deps
	@$(SUBMAKE_ENV) scripts/build-rdma.sh

guest: $(addprefix guest-,$(KERNELS))

guest-debug: guest-$(DEBUG_KERNEL)

guest-%: kernel-% rdma
	@$(SUBMAKE_ENV) scripts/build-guest.sh $*

$(VENV)/.p2plab-stamp: pyproject.toml
	@[ -x $(PY) ] || { echo "venv: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "venv: installing p2plab (editable) with dev tools"
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.p2plab-stamp

demo: build
	@$(VENV)/bin/orchestrator run $(SCENARIO)

lint: venv
	$(VENV)/bin/ruff check orchestrator tests bench fuzz
	$(VENV)/bin/mypy

# A skip without a reason registered in tests/conftest.py fails the run.
test: build $(if $(KERNEL_SRC),,guest-debug) lint
	P2PLAB_STRICT_SKIPS=1 $(VENV)/bin/pytest -ra $(PYTEST_ARGS)

unit-test: venv
	$(VENV)/bin/pytest -ra -m 'not integration and not devices' $(PYTEST_ARGS)

# Boots under load: STRESS_VMS concurrent guests for STRESS_ROUNDS rounds
# (tests/stress/boot_load.py); fails on any failed boot or run.
STRESS_VMS ?= 8
STRESS_ROUNDS ?= 10
stress: build
	$(PY) -m tests.stress.boot_load --vms $(STRESS_VMS) --rounds $(STRESS_ROUNDS)

bench: build
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) "$(P2PLAB_CACHE)"
