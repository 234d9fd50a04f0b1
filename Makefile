# Every target creates the virtual environment and installs what it needs on
# first use, so a fresh clone needs only Python 3.11+ and make.

# The first Python 3.11+ on PATH, newest first.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo "$$p" && break; done)
VENV := .venv
PY := $(VENV)/bin/python
SERVICE_REQUIREMENTS := $(wildcard services/*/requirements.txt)

.DEFAULT_GOAL := help
.PHONY: help install test lint format clean

help:
	@echo "make run     start the whole stack on http://127.0.0.1:$${PORT:-8080}"
	@echo "make test    install and run the whole test suite"
	@echo "make lint    ruff check and format check at 88 columns"
	@echo "make format  apply ruff's formatting"

$(VENV)/.installed: requirements-dev.txt $(SERVICE_REQUIREMENTS)
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt \
		$(foreach r,$(SERVICE_REQUIREMENTS),-r $(r))
	@touch $@

install: $(VENV)/.installed

# The whole suite: every test once on the embedded backends (and against
# PostgreSQL and the emulators where their tests start or find them), then the
# end-to-end tests again on the Google backends' emulators (mk/e2e.mk).
test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-e2e-cloud

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf build .pytest_cache .ruff_cache

-include mk/*.mk
