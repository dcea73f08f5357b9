# her2fish: `make demo` scores sample_images/ into results/; `make test` runs the test suite.
# Both create .venv with the Python found as $(PYTHON) (3.10 or newer) on first use.
# `make test` also installs the napari plugin's extras (napari, PyQt6, pytest-qt, npe2) and runs
# the widget tests under Xvfb when xvfb-run exists (Debian: see .ci/run for the packages);
# without it they are skipped. `make test GUI=0` leaves the napari extras out.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.her2fish-installed
GUI_STAMP := $(VENV)/.her2fish-gui-installed
PYTEST_ARGS ?=
GUI    ?= 1
XVFB_RUN := $(shell command -v xvfb-run 2>/dev/null)

ifeq ($(GUI),1)
TEST_DEPS := $(GUI_STAMP)
else
TEST_DEPS := $(STAMP)
endif
ifneq ($(XVFB_RUN),)
PYTEST := $(XVFB_RUN) -a -s "-screen 0 1280x1024x24" $(BIN)/python -m pytest
else
PYTEST := $(BIN)/python -m pytest
endif

.PHONY: demo test install samples screenshot lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "her2fish needs Python 3.10 or newer; run make PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,parquet]"
	touch $(STAMP)

$(GUI_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,parquet,napari,gui-test]"
	touch $(GUI_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/her2fish score sample_images --out results --overwrite

test: $(TEST_DEPS)
	@test -n "$(XVFB_RUN)" || echo "note: xvfb-run not found: the napari widget tests are skipped (Debian: apt-get install xvfb)"
	$(PYTEST) $(PYTEST_ARGS)

samples: $(STAMP)
	$(BIN)/python sample_images/make_samples.py

screenshot: $(GUI_STAMP)
	$(XVFB_RUN) $(if $(XVFB_RUN),-a -s "-screen 0 1920x1200x24") $(BIN)/python docs/make_screenshot.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) results .pytest_cache
