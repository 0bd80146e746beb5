# The two commands a newcomer runs: `make run` (the main job) and `make test`.
# Each creates the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/synthetic
RUNS ?= runs/synthetic
PROFILE ?= cpu

.PHONY: setup run test bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

# Train BCE (= the pretrain stage) and RETDM on the embedded dataset, print both rows of metrics.
run: setup
	$(BIN)/retdm data synth --out $(DATA)
	$(BIN)/retdm train --data $(DATA)/labels.parquet --out $(RUNS) --method retdm --profile $(PROFILE)
	$(BIN)/retdm evaluate --data $(DATA)/labels.parquet --runs $(RUNS) -m bce -m retdm --out results/synthetic_metrics.parquet

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(DATA) $(RUNS) results
