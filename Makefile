# The two commands a newcomer runs: `make run` (the main job) and `make test`.
# Each creates the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup browser run test fuzz bench bench-all clean scene

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

test: setup browser
	$(BIN)/python -m pytest -q

# The parsers (CSV, ARFF/XML, the official layouts, --set/params.yaml, archives) under property-based
# fuzzing: 10,000 random cases per test (FUZZ_EXAMPLES=N for another number), a new seed each run;
# the cases per parser are listed at the end. `make test` runs the same tests on a small fixed budget.
FUZZ_EXAMPLES ?= 10000
fuzz: setup
	RETDM_FUZZ=full RETDM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/fuzz

# Headless Chromium for tests/report/test_browser.py (Debian packages, ~15 s once). Without root or
# sudo, or off Debian, it says so and goes on; the browser test then skips with the reason.
BROWSER_PKGS := chromium chromium-driver
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "make browser: chromium is missing and installing it needs root or sudo; the browser test will skip"; exit 0; fi; \
	  command -v apt-get >/dev/null || { echo "make browser: no apt-get here; install chromium and chromedriver yourself, or the browser test will skip"; exit 0; }; \
	  echo "make browser: installing $(BROWSER_PKGS)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null 2>&1 || \
	  { $$sudo apt-get update -qq >/dev/null && $$sudo apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null; } || \
	  echo "make browser: could not install $(BROWSER_PKGS) (apt-get output above); the browser test will skip"; }

bench: setup
	$(BIN)/python bench/run_all.py

# Every benchmark (~70 min on 2 cores): the quick ones, memory, GPU throughput (a reduced CPU mode
# without CUDA), the Dask flow against the sequential one, Prefect against dvc repro, 3-seed training.
bench-all: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/run_all.py --all

clean:
	rm -rf data runs results reports

# The paper's "scene" dataset (MIML natural scenes) from its official layout at $(SCENE), with
# EfficientNet-Lite0 from ImageNet (the `lite` profile): BCE and RETDM beside the paper's Table II,
# as a DVC experiment (`dvc exp show`), ~12 min on 2 CPU cores.
SCENE ?= ../shared/datasets/miml_scene
scene: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --name scene-lite \
	  -S '~datasets' -S '+datasets={scene: {source: scene, from: $(abspath $(SCENE)), official_split: false, train: {profile: lite}}}' \
	  -S '~methods' -S '+methods={bce: {}, retdm: {}}' -S 'retdm_variants=[retdm]' -S 'deep_baselines=[]' -S 'feature_methods=[]' \
	  -S 'sweep.datasets=[]'
	@echo "results: results/comparison.parquet, reports/comparison.md (scene beside the paper's Table II)"
