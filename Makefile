# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PY) -m uv

.PHONY: demo demo-figures zoo prune-demo test test-fast lint bootstrap lock clean

# The small benchmark: the suite benchmarks/suites/demo.yaml (each method's tiny config on the synthetic
# dataset under the shared recipe; GraFT and TOP-ReID once more on their official recipes), two runs at a
# time (--workers), one thread each on any machine (OMP_NUM_THREADS=1: the numbers do not depend on the core
# count), then the report. DEMO_SEEDS=0,1,2 gives the README's three-seed table.
DEMO_SEEDS ?= 0
DEMO_WORKERS ?= 2
DEMO_SET ?=
DEMO_OUT ?= results/demo
DEMO_URI := sqlite:///$(abspath $(DEMO_OUT))/mlflow.db
REIDBENCH ?= $(BIN)/reidbench

$(VENV)/.synced: requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	@test -x $(BIN)/python || $(UV) venv --quiet --python $(PY) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

bootstrap: $(VENV)/.synced

demo: $(VENV)/.synced
	rm -rf $(DEMO_OUT)/mlflow.db $(DEMO_OUT)/mlartifacts
	OMP_NUM_THREADS=1 $(REIDBENCH) suite demo --seeds $(DEMO_SEEDS) --workers $(DEMO_WORKERS) $(addprefix --set ,$(DEMO_SET)) \
		--tracking-uri $(DEMO_URI) --experiment demo
	$(REIDBENCH) report --tracking-uri $(DEMO_URI) --experiment demo --format all --out $(DEMO_OUT)

# The README's table and figures (committed): re-run the demo; results/demo/leaderboard.md is written by the
# report, the training curves are copied to the top of results/demo/ (figures/ itself is not tracked), and
# page 1 of report.pdf (compiled by the report: needs pdflatex) is rendered with pdftoppm (poppler-utils).
demo-figures: demo
	cp $(DEMO_OUT)/figures/curves_synthetic.png $(DEMO_OUT)/curves_synthetic.png
	@test -f $(DEMO_OUT)/report.pdf || { echo "no $(DEMO_OUT)/report.pdf: install pdflatex (TeX Live)" >&2; exit 1; }
	pdftoppm -png -r 100 -f 1 -l 1 -singlefile $(DEMO_OUT)/report.pdf $(DEMO_OUT)/report_page1

# The demo's model zoo (committed): a folder per demo model under results/zoo/ (weights, config, model card,
# SHA256SUMS) and results/zoo.yaml listing them (local-path sources), from the demo store; run after `make demo`.
# The README's zoo table is `reidbench zoo list --markdown` (printed at the end).
ZOO_OUT ?= results/zoo
ZOO_FILE ?= results/zoo.yaml

zoo: $(VENV)/.synced
	rm -rf $(ZOO_OUT) $(ZOO_FILE)
	$(REIDBENCH) zoo export --tracking-uri $(DEMO_URI) --experiment demo --out $(ZOO_OUT) --zoo-file $(ZOO_FILE)
	$(REIDBENCH) zoo list --markdown --zoo-file $(ZOO_FILE)

# The pruning study at demo size: GraFT on the synthetic dataset, both schedules, 4 rounds of 20 % each with
# 2 fine-tuning epochs; its report (ablation tables with params / non-zero / GFLOPs / samples/s, the Pareto
# figure) goes to results/prune_demo/, the figure is copied to results/demo/pareto_synthetic.png.
PRUNE_OUT ?= results/prune_demo
PRUNE_URI := sqlite:///$(abspath $(PRUNE_OUT))/mlflow.db
prune-demo: $(VENV)/.synced
	rm -rf $(PRUNE_OUT)/mlflow.db $(PRUNE_OUT)/mlartifacts
	mkdir -p $(PRUNE_OUT)
	for schedule in unstructured-l1 structured; do \
		$(REIDBENCH) prune -m graft -d synthetic --seeds $(DEMO_SEEDS) --schedule $$schedule --rounds 4 \
			--fraction 0.2 --finetune-epochs 2 --tracking-uri $(PRUNE_URI) --experiment prune || exit 1; \
	done
	$(REIDBENCH) report --tracking-uri $(PRUNE_URI) --experiment prune --format latex --format markdown --format csv --out $(PRUNE_OUT)
	cp $(PRUNE_OUT)/figures/pareto_synthetic.png $(DEMO_OUT)/pareto_synthetic.png

# lint-imports: the layer rule ([tool.importlinter] in pyproject.toml, README "Layout").
test: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

# The tier for the edit-test loop: everything but the tests marked slow (those that train or start processes).
test-fast: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Re-pin after changing dependencies in pyproject.toml (names, versions and hashes only; no uv.lock).
lock:
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) results/mlflow.db results/mlartifacts results/demo/mlflow.db results/demo/mlartifacts
