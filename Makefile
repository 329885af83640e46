# The README's two commands are `make run` and `make test`; every other target is a step they depend on.
# Each step is idempotent: re-running skips what is already in place.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
MODELS_STAMP := var/models/manifest.json

.PHONY: run test lint images redis lock models venv bench bench-system bench-pair bench-wait chaos drill sheet identity deploy-files clean

venv: $(DEPS_STAMP)

$(DEPS_STAMP): pyproject.toml constraints/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: this exact version is the CPU build; a looser spec would fetch a CUDA build.
	# Every other version, transitive ones included, comes from constraints/dev.txt (#12: what CI tested;
	# recompile it with constraints/compile.sh after changing a pin). It leaves torch to the line below.
	$(PY) -m pip install --quiet --constraint constraints/dev.txt torch==2.13.0
	$(PY) -m pip install --quiet --constraint constraints/dev.txt -e '.[dev]'
	touch $@

# Debian's redis-server 7.0, the one Redis version everywhere (#24); quick when installed.
redis:
	scripts/install_redis.sh

models: $(DEPS_STAMP)
	$(PY) -m services.worker.engine.weights

test: redis models lint images
	$(PY) -m pytest

# Every image built from the repository's Dockerfiles on a private Docker engine (Debian's docker.io, started
# and stopped here), on a stand-in Python base where no registry serves one, then run: tests/containers (the
# three images locked down as Kubernetes runs them, and docker compose), one real portrait each (#22).
# ~4.5 min on 2 cores from nothing, ~1.5 min with the layers of a previous run (var/containers/docker).
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu: torch from PyTorch's index, not this machine's pip.
images: $(DEPS_STAMP)
	scripts/install_deploy_tools.sh $(VENV)
	$(PY) -m scripts.containers

lint: $(DEPS_STAMP)  # ruff (lint, import order, format) and mypy, configured in pyproject.toml (#12); ~40 s
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

run: redis models
	$(PY) -m scripts.local_run prepare
	$(PY) -m scripts.local_run supervise

bench: models
	$(PY) -m scripts.benchmark_engine --size 768
	$(PY) -m scripts.benchmark_stylizer

bench-system: models  # the bare engine vs the whole stack at 1-16 clients, then a burst (issue 11); ~8 min
	$(PY) -m scripts.bench_system

BASE ?= HEAD
PAIRS ?= 80
bench-wait: venv redis  # the write guarantee's cost: uploads with and without WAIT for a replica (#24); ~1 min
	$(PY) -m scripts.bench_wait --pairs 200

bench-pair: models  # added latency at 1 client, working tree vs BASE, jobs alternating between two stacks (#11); ~5 min
	$(PY) -m scripts.bench_pair --base $(BASE) --pairs $(PAIRS)

chaos: models  # every fault of issue 9 on one machine, then #24's on two hosts, one row each (var/chaos/report.md); ~17 min
	$(PY) -m scripts.chaos

drill: models
	$(PY) -m scripts.privacy_drill

sheet: models
	$(PY) -m services.cli sheet $$($(PY) -c 'from scripts.support import samples as s; print(s.astronaut_path(), s.grace_hopper_path())') -o var/contact-sheet.jpg

identity: models  # every study face x every face-GAN style, before and after #21: table and contact sheets in var/identity/ (~3 min)
	$(PY) -m scripts.identity_study --before

lock:  # recompile constraints/*.txt after changing a pin in pyproject.toml (#12); needs uv 0.13.8 and PyPI
	constraints/compile.sh

deploy-files: $(DEPS_STAMP)  # after editing dashboards, alert rules or metrics
	$(PY) deploy/dashboards/generate.py
	$(PY) -m scripts.metrics_catalogue

clean:
	rm -rf $(VENV) var
