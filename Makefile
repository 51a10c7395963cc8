# zdtp developer entry points. A newcomer needs two: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
export UV_LINK_MODE ?= copy

.PHONY: help venv system-packages cluster-up cluster-down real-node lint test test-unit demo clean

help:
	@echo "make demo         run an example sync end to end on the dev cluster"
	@echo "make test         install everything, lint, run the whole test suite"
	@echo "make cluster-up   start (or reuse) the KWOK dev cluster (.zdtp/kubeconfig)"
	@echo "make cluster-up REAL_NODE=1   ... plus a real kubelet node that runs pods (dev/node/)"
	@echo "make cluster-down stop it (and the real node) and remove its state"

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on our machines) nothing ever writes .pyc,
# so every Airflow CLI/task process recompiled Airflow and the Kubernetes client from source:
# `airflow version` 4.1 s -> 1.8 s, importing the provider's operators 5.8 s -> 2.7 s.
$(VENV)/.synced: pyproject.toml uv.lock Makefile
	@command -v $(PYTHON) >/dev/null || { echo "zdtp: $(PYTHON) not found on PATH (need Python >= 3.11)" >&2; exit 1; }
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --extra dev --python $(PYTHON) --compile-bytecode
	@touch $@

venv: $(VENV)/.synced

# Debian's PostgreSQL 15, Redis and pgcopydb: tests run against them, so they fail (not skip) without.
system-packages:
	@dev/system-packages.sh

# REAL_NODE=1 also starts a real kubelet + containerd node beside the KWOK nodes (dev/node/).
cluster-up:
	@dev/cluster/up.sh
	@if [ "$(REAL_NODE)" = 1 ]; then dev/node/up.sh; fi

real-node: cluster-up
	@dev/node/up.sh

cluster-down:
	@dev/node/down.sh
	@dev/cluster/down.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Linux as root runs the real kubelet node (dev/node/up.sh), so there a skipped real-pod test or a
# demo that fell back to simulated pods fails the run (ZDTP_REAL_NODE=required). Elsewhere they
# skip, and pytest's summary says so loudly. An explicit ZDTP_REAL_NODE in the environment wins.
REAL_NODE_POLICY := $(shell [ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ] && echo required)

# pytest exits 5 when it collected nothing; make treats any non-zero exit as failure.
test: venv lint system-packages cluster-up
	ZDTP_REAL_NODE="$${ZDTP_REAL_NODE:-$(REAL_NODE_POLICY)}" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The README's main job: seed a shop database, sync it through Airflow onto the dev cluster.
demo: venv system-packages cluster-up
	$(VENV)/bin/python -m devtools.demo

test-unit: venv
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

clean: cluster-down
	rm -rf .zdtp $(VENV)
