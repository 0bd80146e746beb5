# The two commands a newcomer runs: `make run` (the main job) and `make test`.
# Each creates the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench clean scene

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

# The main job: the whole DVC pipeline on the default params (the embedded `synthetic` dataset):
# download → split → validate → pretrain → embed → finetune → evaluate → compare.
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "results: results/comparison.parquet, reports/comparison.md"

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf data runs results reports

# The paper's "scene" dataset (MIML natural scenes) from its official layout at $(SCENE), with
# EfficientNet-Lite0 from ImageNet (the `lite` profile): BCE and RETDM beside the paper's Table II,
# as a DVC experiment (`dvc exp show`), ~25 min on 2 CPU cores.
SCENE ?= ../shared/datasets/miml_scene
scene: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --name scene-lite \
	  -S '~datasets' -S '+datasets={scene: {source: scene, from: $(abspath $(SCENE)), official_split: false, train: {profile: lite}}}' \
	  -S '~methods' -S '+methods={bce: {}, retdm: {}}' -S 'retdm_variants=[retdm]' -S 'deep_baselines=[]' -S 'feature_methods=[]'
	@echo "results: results/comparison.parquet, reports/comparison.md (scene beside the paper's Table II)"
