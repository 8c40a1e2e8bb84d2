# rolecall — `make run` starts a local cluster with the operator and a demo; `make test` runs everything.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := .testbed/run
CACHE_BIN = $(shell $(PY) -c 'import os;print(os.path.join(os.environ.get("ROLECALL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),"rolecall"),"bin"))')
PYTEST_ARGS ?=

.PHONY: help venv plugin engines cluster-bins image lock crds crds-check lint scan old-image compat-bins manifests test test-quick fuzz unit run stop demo bench bench-deps bench-bed \
	bench-fanout bench-latency bench-api bench-scale bench-watch bench-clients bench-shards bench-purge clean
help:
	@echo "make run    - build the image, start the local cluster, helm-install rolecall (the operator runs as a pod),"
	@echo "             apply a demo of all four kinds (LOCAL_OPERATOR=1: the operator as a local process)"
	@echo "make test   - install everything, start a cluster, run lint + the whole test suite (what CI runs)"
	@echo "make test-quick - the same without the slow fault tests (marker faults), for the inner loop"
	@echo "make fuzz   - a longer, random-seeded fuzz of every kind against the apiserver and operator, and of"
	@echo "             clearOldData's deleted set against real PostgreSQL and SQLite"
	@echo "make stop   - stop what 'make run' started"
	@echo "make crds   - regenerate crds/ from the pydantic models (then make manifests)"
	@echo "make manifests - render the chart's install for both admission modes into manifests/rendered/"
	@echo "make lint   - ruff, mypy, import-linter, the requirements.lock check"
	@echo "make scan   - checkov's Kubernetes checks on the chart's renderings (hack/checkov.yaml: the exceptions)"
	@echo "make plugin - install kubectl-rolecall into .testbed/plugin (bin/kubectl-rolecall), as pipx would"
	@echo "make image  - build the operator image with podman (BASE=<image> for another base than Debian's)"
	@echo "make old-image - build the image of the release the upgrade test starts from ($(OLD_RELEASE))"
	@echo "make lock   - regenerate requirements.lock (hashed runtime dependencies) after changing pyproject.toml"

# The kubectl plugin installed the way users install it (its own venv, like pipx), for the tests to run.
PLUGIN_VENV := .testbed/plugin
$(PLUGIN_VENV)/.installed: plugin/pyproject.toml $(wildcard operator/rolecall_cli/*.py operator/rolecall/api/*.py operator/rolecall/api/v1alpha1/*.py)
	rm -rf $(PLUGIN_VENV) plugin/build
	$(PY) -m venv $(PLUGIN_VENV)
	$(PLUGIN_VENV)/bin/pip install -q --upgrade pip
	$(PLUGIN_VENV)/bin/pip install -q ./plugin
	rm -rf plugin/build
	touch $@
plugin: $(PLUGIN_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is required")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@
venv: $(VENV)/.installed

engines:
	bash hack/install-engines.sh

cluster-bins:
	bash hack/build-cluster-bins.sh

# The compatibility bed's control plane: the oldest supported Kubernetes (COMPAT_KUBE_VERSION in
# hack/versions.env), cached per version like cluster-bins.
compat-bins: cluster-bins
	bash hack/build-cluster-bins.sh --compat

image: venv
	bash hack/install-image-tools.sh
	BASE="$(BASE)" SOURCE="$(SOURCE)" bash hack/build-image.sh

lock: venv
	bash hack/check-lock.sh --update

crds: venv
	$(BIN)/rolecall-crds --out crds --admission manifests/admission-policies.yaml --chart-files charts/rolecall/files
	cp crds/*.rolecall.dev.yaml charts/rolecall/files/crds/
	cp manifests/user-roles.yaml charts/rolecall/templates/

# The chart's default install in both admission modes, for `kubectl apply` without Helm (manifests/rendered/).
manifests: cluster-bins
	bash hack/render-manifests.sh

crds-check: venv
	$(BIN)/rolecall-crds --out crds --check

lint: venv
	$(BIN)/ruff check operator hack tests benchmarks
	$(BIN)/mypy
	PYTHONPATH=operator $(BIN)/lint-imports
	bash hack/check-lock.sh

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The chart's renderings through checkov's Kubernetes checks (exceptions and reasons: hack/checkov.yaml).
scan: cluster-bins
	bash hack/scan-chart.sh

# The image of the last build before the install work, for the upgrade test (cached in podman's storage).
OLD_RELEASE := b4594e4
old-image: venv
	bash hack/build-old-image.sh $(OLD_RELEASE)

test: venv plugin engines cluster-bins compat-bins image old-image lint scan
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test-quick: venv plugin engines cluster-bins compat-bins image old-image lint scan
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/pytest -m "not faults" $(PYTEST_ARGS)

fuzz: venv engines cluster-bins
	PATH="$(CACHE_BIN):$$PATH" ROLECALL_FUZZ_RANDOM=1 ROLECALL_FUZZ_EXAMPLES=$${ROLECALL_FUZZ_EXAMPLES:-10} \
		$(BIN)/pytest -s --timeout=7200 tests/integration/test_fuzz_specs_are_refused_readably_or_settle.py \
		tests/engines/test_clear_old_data_property_deleted_set_is_exactly_the_older_rows.py $(PYTEST_ARGS)

# The operator runs in the cluster from the image; LOCAL_OPERATOR=1 runs it as a local process instead.
run: venv plugin engines cluster-bins $(if $(LOCAL_OPERATOR),,image)
	PATH="$(CACHE_BIN):$$PATH" PYTHONPATH=hack $(BIN)/python -m testbed.demo up --dir $(RUN_DIR) \
		$(if $(LOCAL_OPERATOR),--local-operator)

stop:
	PYTHONPATH=hack $(BIN)/python -m testbed.demo down --dir $(RUN_DIR)

bench: bench-bed bench-fanout bench-latency bench-api bench-watch bench-clients bench-purge bench-scale bench-shards

bench-deps: venv engines cluster-bins
	$(BIN)/pip install -q -e '.[bench]'

bench-bed: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.bed_startup

bench-fanout: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.fanout

bench-latency: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.latency --cpu-profile

bench-api: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.api_cost

bench-scale: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.scale --profile

bench-watch: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.watch_delay

bench-clients: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.memcached_clients

bench-shards: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.shards

bench-purge: bench-deps
	PATH="$(CACHE_BIN):$$PATH" $(BIN)/python -m benchmarks.purge

clean: stop
	rm -rf .testbed $(VENV)
