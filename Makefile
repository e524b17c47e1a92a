# keykeeper — the commands README.md names. Everything installs into .venv/.
SHELL := /bin/bash
PY    ?= python3
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help fmt lock sbom audit dev test unit integration e2e e2e-tools chart lint cluster bench bench-fanout bench-scale controlplane peers bench-peers deps clean image base-image node system-packages

# The main job on the embedded default: a local control plane, the operator installed
# by its Helm chart (two replicas, local provider), examples/ applied, the projected
# Secrets and Events shown.
dev: deps ## the main job: a local control plane, the chart installed, examples applied
	$(BIN)/python -m devtools.controlplane --dev

# Everything the tests need: Python packages, the Debian packages (SoftHSM2; promtool
# from prometheus for the alert rules; buildah,
# podman, mmdebstrap for the image; runc, iptables, conntrack for the node), the
# upstream control plane, local-kms (the AWS KMS peer the outage test kills), and for
# the chart and e2e: kube-controller-manager, helm and a real node (kubelet,
# kube-proxy, kube-scheduler, containerd, CNI plugins); all built from their Go
# modules, cached.
deps: $(STAMP) system-packages controlplane peers e2e-tools node ## install everything the tests need (venv from uv.lock, Debian packages, Go-built binaries)

SYSTEM_PACKAGES := softhsm2 buildah podman mmdebstrap runc iptables conntrack gcc libc6-dev prometheus
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f '$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

# The dev set, exactly as uv.lock pins it (uv resolves nothing here: seconds, not minutes).
# uv itself is pinned and kept in the git-ignored cache.
UV_VERSION := 0.13.9
UV := .cache/tools/bin/uv

$(UV):
	$(PY) -m venv .cache/tools
	.cache/tools/bin/pip install -q uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --python $(PY)
	@touch $(STAMP)

# After a change of pyproject.toml's dependencies: re-resolve and rewrite uv.lock.
lock: | $(UV) ## re-resolve uv.lock after a change of pyproject.toml's dependencies
	$(UV) lock
	$(UV) export $(IMAGE_EXPORT) -o image.requirements.txt >/dev/null

# What the image installs: the package's dependencies and every provider's SDK, locked.
IMAGE_EXPORT := --frozen --no-emit-project --extra aws --extra azure --extra gcp --extra pkcs11

controlplane:
	@bash devtools/controlplane/build.sh >/dev/null

e2e-tools:
	@bash devtools/e2e/build.sh >/dev/null

node:
	@bash devtools/node/build.sh >/dev/null

# The image, from the Dockerfile, by buildah, on the Debian base made here from
# packages (make base-image); layers cached by the Dockerfile's inputs. Prints the OCI
# archive the node imports, and the image's name.
image: system-packages ## build the image (buildah; every provider's SDK; Debian's python3)
	@bash devtools/image/build.sh

base-image: system-packages ## make the image's Debian base from packages (mmdebstrap; weekly)
	@bash devtools/image/base.sh

peers: $(STAMP)
	@$(BIN)/python -c 'from devtools.kmspeers import local_kms_binary; local_kms_binary()'

# The test command: static checks, then every test (unit, providers, chart,
# integration, adversarial), the installed chart end to end, then the coverage floor
# of the fast suites (pyproject: fail_under).
test: deps lint ## the README's test command: lint, every test, e2e, the coverage floor
	$(BIN)/pytest
	$(BIN)/pytest e2e -s
	$(BIN)/pytest tests/unit tests/providers tests/issuers -q --cov --cov-report=term

unit: $(STAMP) ## the unit and provider tests only (no control plane)
	$(BIN)/pytest tests/unit tests/providers tests/issuers

integration: deps ## the tests against the real control plane
	$(BIN)/pytest tests/integration

# The chart installed by helm into a control plane with a controller manager and a
# real node, its Pods containers of the image built from the Dockerfile; failover
# measured.
e2e: deps ## the installed chart end to end
	$(BIN)/pytest e2e -s

chart: deps ## the chart's and the Dockerfile's checks
	$(BIN)/pytest tests/chart

lint: $(STAMP) ## ruff, ruff format, mypy --strict, import-linter, the pre-commit hooks
	$(BIN)/ruff check operator tests bench devtools e2e
	$(BIN)/ruff format --check operator tests bench devtools e2e
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

fmt: $(STAMP) ## format and fix what ruff can (then make lint)
	$(BIN)/ruff check --fix operator tests bench devtools e2e
	$(BIN)/ruff format operator tests bench devtools e2e

sbom: $(STAMP) system-packages ## the image's CycloneDX SBOM (dist/sbom.cdx.json), read from the built image
	$(BIN)/python -m devtools.supplychain sbom

audit: $(STAMP) ## the image's locked set against a vulnerability database (says so if none)
	$(BIN)/python -m devtools.supplychain audit

help: ## this list
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# A real control plane for a person: prints the KUBECONFIG to export.
cluster: deps ## a control plane alone, for poking at by hand
	$(BIN)/python -m devtools.controlplane

bench: deps ## the crypto and KMS benchmarks
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/kms.py

# Fan-out against the peers (Sealed Secrets, External Secrets, built from their Go
# modules on first use: minutes, cached): bench/results/fanout.json. KEYS=1000 RUNS=1.
bench-fanout: deps bench-peers ## fan-out against the peers (KEYS=1000 RUNS=1)
	$(BIN)/python bench/fanout.py --keys $(or $(KEYS),1000) --runs $(or $(RUNS),1)

bench-peers: $(STAMP)
	@$(BIN)/python -m devtools.peers >/dev/null

# 100,000 keys on one replica (about an hour here): bench/results/scale.json.
bench-scale: deps ## 100,000 keys on one replica (KEYS=100000)
	$(BIN)/python bench/scale.py --keys $(or $(KEYS),100000)

clean: ## remove the venv and the tools' caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
