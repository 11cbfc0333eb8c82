# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PY) -m uv

.PHONY: demo test lint bootstrap lock clean

$(VENV)/.synced: requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	@test -x $(BIN)/python || $(UV) venv --quiet --python $(PY) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

bootstrap: $(VENV)/.synced

demo: $(VENV)/.synced
	$(BIN)/reidbench run --method late_fusion --dataset synthetic

test: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.synced
	$(BIN)/ruff check .

# Re-pin after changing dependencies in pyproject.toml (names, versions and hashes only; no uv.lock).
lock:
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) results/mlflow.db results/mlartifacts
