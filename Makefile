# The two set-up commands of the README:
#   make book   builds the Jupyter Book into _build/html (creates .venv on first use)
#   make test   runs the whole test suite: ruff, then pytest (builds the book first: the
#               browser tests read the built pages)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test lint unit vendor release env clean

env: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/lock.txt -e '.[dev]'
	touch $@

# MathJax, require.js and the widget renderer, vendored from the npm registry (no CDN at view time).
vendor: $(STAMP)
	$(BIN)/python scripts/vendor_assets.py

# Student versions of the exercises, generated from autograder/source by nbgrader.
release: $(STAMP)
	$(BIN)/mlmcourse release

# The execution cache is keyed on the notebooks' code only: when the library they run changes
# (its code, the widgets' front ends, the shipped data), start from a clean build.
LIBRARY := $(shell find mlmcourse -type f -not -path '*/__pycache__/*' -not -path 'mlmcourse/grading/*')
_build/.library-stamp: $(LIBRARY)
	rm -rf _build
	mkdir -p _build
	touch $@

book: $(STAMP) vendor release _build/.library-stamp
	$(BIN)/jupyter-book build -W --keep-going .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

test: lint book
	$(BIN)/python -m pytest

clean:
	rm -rf _build _vendor autograder/release
