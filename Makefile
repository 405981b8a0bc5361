# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPO ?= model_repository
HTTP_PORT ?= 8000

.PHONY: venv repository serve test test-fast check bench bench-sim clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[build,dev,ray]'
	touch $@

venv: $(BIN)/.installed

$(REPO)/.complete: | $(BIN)/.installed
	$(BIN)/rheostat build-repository --output $(REPO)

repository: $(REPO)/.complete

serve: repository
	$(BIN)/rheostat serve --model-repository $(REPO) --http-port $(HTTP_PORT)

test: repository
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	RHEOSTAT_TEST_REPOSITORY=$(abspath $(REPO)) $(BIN)/python -m pytest

check: venv
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: repository
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python benchmarks/serving_overhead.py --model-repository $(REPO)
	$(BIN)/python benchmarks/ray_overhead.py --model-repository $(REPO)
	$(BIN)/python benchmarks/lifecycle.py --model-repository $(REPO)
	$(BIN)/python benchmarks/network_slo.py --model-repository $(REPO)
	$(BIN)/python benchmarks/network_sim.py --model-repository $(REPO)

# needs ../shared/data/proteus (Proteus' data: licensed for comparison only, not shipped)
bench-sim: venv
	$(BIN)/python benchmarks/proteus_compare.py

clean:
	rm -rf $(VENV) $(REPO) build
