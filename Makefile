# her2fish: `make demo` scores sample_images/ into results/; `make test` runs the test suite.
# Both create .venv with the Python found as $(PYTHON) (3.10 or newer) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.her2fish-installed
PYTEST_ARGS ?=

.PHONY: demo test install samples lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "her2fish needs Python 3.10 or newer; run make PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,parquet]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/her2fish score sample_images --out results --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

samples: $(STAMP)
	$(BIN)/python sample_images/make_samples.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) results .pytest_cache
