# Two commands matter: `make course` runs every notebook on the generated sample data,
# `make test` installs everything and runs the whole test suite (CI runs exactly this).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The real tiles the studies run on: `make density DATA=folder` runs a study on other tiles.
DATA ?= ../shared/data/deepglobe_sample/tiles_512

.PHONY: help install notebook-filter course site test test-unit test-notebooks test-smoke test-site lint lab bench density more-from-points propagation-limits scores-from-points active active-protocols self-training simulated-person clean

help:
	@echo "make course   run every notebook on the generated sample (executed copies + HTML in build/)"
	@echo "make site     the course's static site in build/site/ from the executed notebooks (runs make course first where they are missing or stale)"
	@echo "make test     install into .venv and run the unit tests, the notebooks (nbval) and the site's browser test"
	@echo "make lab      open the notebooks in JupyterLab (fast mode where there is no GPU)"
	@echo "make bench    run the benchmarks in benchmarks/ (JSON + one-line summaries)"
	@echo "make density  the label-density study on the real DeepGlobe tiles, real-tile recipe (3 seeds; resumable)"
	@echo "make more-from-points  propagation and self-training on the same tiles and points (3 seeds; resumable)"
	@echo "make propagation-limits  what held propagation back: the same blobs without their errors, every superpixel labelled, dense masks (3 seeds, after make self-training: its teachers are the points alone)"
	@echo "make scores-from-points  train from 30 simulated clicks per real tile, score from points and masks (3 seeds)"
	@echo "make active   active against random point picks over rounds on the same tiles (3 seeds; resumable)"
	@echo "make active-protocols  PixelPick and class-balanced against random picks, 10 points per tile first, each round retrained (3 seeds; resumable)"
	@echo "make simulated-person  a simulated person clicking on real tiles: the live head against ilastik's recipe and a full fine-tune on the same clicks (3 seeds, after make self-training: its teachers start)"
	@echo "make self-training  self-training from fully trained teachers against the same extra steps on the points alone (3 seeds; resumable)"
	@echo "make lint     ruff over the package, tests, benchmarks, notebooks and site/; the package's layers (lint-imports); the workflows (check-jsonschema)"
	@echo "make clean    remove the virtual environment, generated data, runs and build output"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lc_utils)" >/dev/null
	$(BIN)/python -m lc_utils.nbclean --install-hook >/dev/null
	touch $(STAMP)

# git sees notebooks through lc_utils.nbclean (.gitattributes): what JupyterLab saves into them
# (outputs, execution counts, the exact Python version) leaves `git status` clean.
notebook-filter:
	@git rev-parse --git-dir >/dev/null 2>&1 && \
		git config filter.lc-notebook.clean "$(BIN)/python -m lc_utils.nbclean" || true

install: $(STAMP) notebook-filter

course: $(STAMP)
	$(BIN)/python -m lc_utils.course

# The site renders the executed notebooks of build/ (LC_SITE_NOTEBOOKS=folder: another folder of
# executed notebooks, used as it is; the site goes to folder/site). Where build/ lacks a copy, or one
# is older than its notebook, site/build_site.py runs the course first. Sphinx warnings fail it.
site: $(STAMP)
	$(BIN)/python site/build_site.py

test: $(STAMP) lint test-unit test-notebooks test-smoke test-site

lint: $(STAMP)
	$(BIN)/ruff check lc_utils tests benchmarks notebooks site
	$(BIN)/lint-imports
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# tests/test_site.py reads the built site: test-site builds it (after the course) and runs it.
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/test_site.py

test-notebooks: $(STAMP)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		LC_FAST=1 LC_HEADLESS=1 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider notebooks; \
	else echo "no notebooks yet"; fi

# Full mode as a Colab GPU runs it (ResNet-50, full crops, batches and image size, the pretrained
# weights' offline fallback), capped to a few steps and images so that every full-mode line runs here.
test-smoke: $(STAMP)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		LC_FAST=0 LC_SMOKE=1 LC_HEADLESS=1 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider notebooks; \
	fi

# The site in Chromium: every notebook page shows its executed notebook's figures, no internal link
# is broken, the search works.
test-site: site
	LC_SITE_REQUIRED=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_site.py

lab: $(STAMP) notebook-filter
	$(BIN)/python -m lc_utils.lab

bench: $(STAMP)
	$(BIN)/python -m benchmarks

density: $(STAMP)
	$(BIN)/python -m benchmarks.label_density --data $(DATA) \
		--strategies uniform --points-per-mp 100 1000 10000 \
		--also stratified:1000 --seeds 0 1 2 --weights none --crop 128 --batch-size 8 --epochs 10 \
		--samples-per-epoch 960 --lr 3e-4 --dice-weight 1.0 --val-window 128 --val-overlap 0.5 \
		--out benchmarks/results/label_density_deepglobe.json

more-from-points: $(STAMP)
	$(BIN)/python -m benchmarks.label_density --data $(DATA) \
		--strategies uniform uniform+propagation uniform+self-training uniform+propagation+self-training \
		--points-per-mp 100 1000 --superpixel-area 900 --self-training-rounds 1 \
		--seeds 0 1 2 --weights none --crop 128 --batch-size 8 --epochs 10 \
		--samples-per-epoch 960 --lr 3e-4 --dice-weight 1.0 --val-window 128 --val-overlap 0.5 \
		--reuse benchmarks/results/label_density_deepglobe.json \
		--out benchmarks/results/more_from_points_deepglobe.json

propagation-limits: $(STAMP)
	$(BIN)/python -m benchmarks.propagation_limits --like benchmarks/results/self_training_deepglobe.json \
		--points-per-mp 100 --superpixel-area 900 --seeds 0 1 2 --out benchmarks/results/propagation_limits_deepglobe.json

scores-from-points: $(STAMP)
	$(BIN)/python -m benchmarks.scores_from_points --data $(DATA) \
		--points-per-tile 30 --seeds 0 1 2 --out benchmarks/results/scores_from_points_deepglobe.json

active: $(STAMP)
	$(BIN)/python -m benchmarks.active_selection --data $(DATA) \
		--budgets 5 10 20 40 --selections margin random --seeds 0 1 2 --min-distance 16 \
		--epochs 10 --fine-tune-epochs 5 --out benchmarks/results/active_deepglobe.json

# PixelPick's protocol: a warm start of 10 points per tile, every round trained again from the
# fresh model; its own rounds folder, since its round 0 is not `make active`'s
active-protocols: $(STAMP)
	$(BIN)/python -m benchmarks.active_selection --data $(DATA) \
		--budgets 10 20 40 --selections random pixelpick class-balanced --seeds 0 1 2 --min-distance 16 \
		--epochs 10 --retrain --top-share 0.05 --val-images 32 --work runs/active_protocols \
		--out benchmarks/results/active_protocols_deepglobe.json

self-training: $(STAMP)
	$(BIN)/python -m benchmarks.self_training --data $(DATA) --points-per-mp 100 1000 --seeds 0 1 2 \
		--val-images 32 --epochs 10 --extra-epochs 5 --color-jitter 0.4 \
		--out benchmarks/results/self_training_deepglobe.json

simulated-person: $(STAMP)
	$(BIN)/python -m benchmarks.simulated_person --like benchmarks/results/self_training_deepglobe.json \
		--points-per-mp 1000 --seeds 0 1 2 --clicked-tiles 16 --score-at 0 1 2 5 10 20 50 \
		--fine-tune-at 10 50 --fine-tune-epochs 2 --out benchmarks/results/simulated_person_deepglobe.json

clean:
	rm -rf $(VENV) build runs data/sample .pytest_cache .ruff_cache .hypothesis .import_linter_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
