# Two commands set everything up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint bench clean

# Installing takes a minute or two on a fresh machine: each step says what it does, and pip shows
# the packages as it collects and installs them (its progress bars on a terminal).
PIP_PROGRESS = --progress-bar on

$(BIN)/veritee: pyproject.toml
	@echo "==> [1/3] creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] updating pip"
	$(BIN)/pip install --quiet --upgrade pip
	@echo "==> [3/3] installing veritee and its dependencies (about a minute)"
	$(BIN)/pip install $(PIP_PROGRESS) -e .
	@touch $@

$(VENV)/.test-installed: $(BIN)/veritee
	@echo "==> [1/4] system packages the tests use (.ci/system-packages.sh)"
	bash .ci/system-packages.sh
	@echo "==> [2/4] test dependencies"
	$(BIN)/pip install --quiet -e '.[test]'
	@echo "==> [3/4] TPM dependencies"
	$(BIN)/pip install --quiet -e '.[tpm]'
	@echo "==> [4/4] comparison verifiers"
	$(BIN)/pip install --quiet -e '.[compare]'
	@touch $@

demo: $(BIN)/veritee
	@echo "==> running the demo (veritee demo)"
	$(BIN)/veritee demo

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto

bench: $(VENV)/.test-installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
