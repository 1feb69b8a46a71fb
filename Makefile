# Two entry points, each self-sufficient on a fresh machine:
#   make run   - create .venv, install, run the whole demo (synth -> ... -> serve)
#   make test  - create .venv, install, run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and exactly: any later resolver step then sees 2.13.0 satisfied and
# never reaches for the multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/portrait demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/offline_store.py
	$(BIN)/python bench/ingest.py --students 100000
	$(BIN)/python bench/features.py --students 100000
	$(BIN)/python bench/privacy.py --students 100000

clean:
	rm -rf .portrait .pytest_cache
