# Every target installs what it needs first, so each works from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint format demo bench soak sandbox clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) -m benchmarks

# The reliability scenarios at full size (1M rows with faults, kill -9 x10, restarts): a table.
soak: $(STAMP)
	PYTHONPATH=tests $(PY) -m reliability.soak

sandbox: $(STAMP)
	$(PY) -m kaleyra_async sandbox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out
