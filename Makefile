# The two commands a newcomer runs: `make run` (the main job) and `make test`.
# Each creates the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Python's bytecode cache stays on: every DVC stage is a fresh Python process importing ~1,500
# modules (torch, pandas, …), and without .pyc files (some environments set
# PYTHONDONTWRITEBYTECODE; pip installs with --no-compile) each stage compiles them all again,
# about 4 s per stage on 2 cores. The first stage writes the cache into .venv; the rest read it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup lock browser run test bench bench-all clean scene compare publish-run publish-scene publish-compare mutation fuzz crash

# The whole environment from requirements.lock: every package at one version, each file checked
# against its sha256 (pip --require-hashes), so a fresh machine gets byte for byte what the results
# came from. `make lock` makes it again from the pins of requirements-dev.txt.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-compile --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

# requirements.lock (this environment) and infra/requirements-worker.lock (the Docker worker's):
# resolved by uv from requirements*.txt on PyPI for every platform (--universal: markers say which
# package where), with the hashes of every file PyPI has for each version. Run after changing a pin.
UV_COMPILE = $(BIN)/uv pip compile --generate-hashes --universal --python-version 3.11 --no-config -q
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV_COMPILE) requirements-dev.txt -o requirements.lock
	$(UV_COMPILE) requirements.txt infra/requirements-worker.txt -o infra/requirements-worker.lock

# The main job: the whole DVC pipeline on the default params (the embedded `synthetic` dataset):
# download → split → validate → pretrain → embed → finetune → evaluate → compare. A dvc.lock or
# .dvc/tmp/rwlock that a killed run cut short is first set aside (pipelines/lockfile.py), so that the
# run goes on.
run: setup
	@start=$$(date +%s); $(BIN)/python -m pipelines.lockfile && PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro && \
	echo $$(( $$(date +%s) - start )) > results/run.seconds
	@echo "results: results/comparison.parquet, reports/comparison.md, reports/index.html ('dvc metrics show')"

test: setup browser
	$(BIN)/python -m pytest -q

# The parsers (CSV, ARFF/XML, the official layouts, --set/params.yaml, archives) under property-based
# fuzzing: 10,000 random cases per parser (FUZZ_EXAMPLES=N for another number), a new seed each run;
# the cases per parser are listed at the end and recorded in results/published/fuzz.json (README's
# fuzzing block: `retdm publish --readme`). `make test` runs the same tests on a small fixed budget.
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

# Crash consistency (~80 min on 2 cores): `dvc repro` of the tiny pipeline killed with SIGKILL (its
# whole process group) at 20 seeded random points, each in a fresh temporary copy, then run to the
# end; dvc.lock, results/ and `dvc status` must equal an uninterrupted run's (tests/crash_consistency.py).
# Recorded in results/published/crash.json (README's reliability block).
crash: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m tests.crash_consistency --kills 20 --publish

clean:
	rm -rf data runs results reports

# Mutation testing of the core (mutmut, configured in pyproject.toml's [tool.mutmut]): every mutant of
# retdm/losses/, metrics, neighbours, train/stages and shallow/base + mlknn against the tests that reach
# it, from scratch (mutants/ is removed first: mutmut does not notice changed tests), then the
# score, checked against the survivors explained in tests/mutation_survivors.md and recorded in
# results/published/mutation.json (tests/mutation_score.py). About two hours on 2 idle cores.
# `mutmut browse` / `mutmut show NAME` inspect a run; `mutmut run NAME` retests one mutant.
MUTATION_JOBS ?= 2
mutation: setup
	rm -rf mutants
	@start=$$(date +%s); OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATION_JOBS); \
	$(BIN)/python tests/mutation_score.py --record --seconds $$(( $$(date +%s) - start ))

# The full comparison: every method of params.yaml on `synthetic`, training seeds 0, 1 and 2, and the
# α × β sweep of each seed, as a DVC experiment in a temporary copy (`--temp`: params.yaml and every
# tracked file stay as they are). `dvc exp show` then lists its metrics, `dvc exp apply compare`
# brings its outputs into the workspace, and `make publish-compare` records it for the README. Its
# wall time goes to results/compare.seconds.
compare: setup
	@export PATH="$(CURDIR)/$(BIN):$$PATH"; start=$$(date +%s); \
	dvc exp remove compare >/dev/null 2>&1; \
	dvc exp run --temp --name compare -S 'seeds=[0,1,2]' -S 'sweep.datasets=[synthetic]' && \
	mkdir -p results && echo $$(( $$(date +%s) - start )) > results/compare.seconds && \
	dvc exp show --only-changed --no-pager -n 1 || exit 1

# The paper's "scene" dataset (MIML natural scenes) from its official layout at $(SCENE), with
# EfficientNet-Lite0 from ImageNet (the `lite` profile): every method of the paper's Table II, the
# equal-epochs control bce_ft, the linear probe (the floor every fine-tuned method must beat) and
# retdm_imgnbr (the paper's future work: image neighbours too) over seeds 0, 1 and 2 beside the
# paper's Table II, as a DVC experiment in a temporary copy, like `make compare` (`make
# publish-scene` records it).
SCENE ?= ../shared/datasets/miml_scene
scene: setup
	@export PATH="$(CURDIR)/$(BIN):$$PATH"; start=$$(date +%s); \
	dvc exp remove scene >/dev/null 2>&1; \
	dvc exp run --temp --name scene -S 'seeds=[0,1,2]' \
	  -S '~datasets' -S '+datasets={scene: {source: scene, from: $(abspath $(SCENE)), inputs: $(abspath $(SCENE)), official_split: false, train: {profile: lite}}}' \
	  -S '~methods' -S '+methods={bce: {}, bce_ft: {}, linear_probe: {}, retdm: {}, retdm_oneway: {}, retdm_imgnbr: {}, asl: {}, center_loss: {}, mlknn: {}, lmmo_knn: {}, mlspl: {}, c2ae: {}}' \
	  -S 'retdm_variants=[retdm, retdm_oneway, retdm_imgnbr]' -S 'deep_baselines=[bce_ft, asl, center_loss]' -S 'probes=[linear_probe]' \
	  -S 'feature_methods=[mlknn, lmmo_knn, mlspl, c2ae]' -S 'sweep.datasets=[]' && \
	mkdir -p results && echo $$(( $$(date +%s) - start )) > results/scene.seconds && \
	dvc exp show --only-changed --no-pager -n 1 || exit 1

# Record a finished run in results/published/ (what README.md's result tables are made from) and
# rewrite those tables: publish-run after `make run`, publish-compare / publish-scene after theirs.
publish-run: setup
	$(BIN)/retdm publish default --command "make run" --seconds "$$(cat results/run.seconds)" --readme
publish-compare publish-scene: publish-%: setup
	$(BIN)/retdm publish $* --exp $* --command "make $*" --seconds "$$(cat results/$*.seconds)" --readme
