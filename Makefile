# Two commands on a fresh clone: `make demo` runs the pipeline, `make test` runs the tests.
# Both create the virtualenv in .venv and install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test broker bench clean

demo: $(VENV)/.installed
	$(BIN)/python -m demo

test: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# `make broker ENGINE=kafka` (or `make bench ENGINE=kafka`) for Apache Kafka: needs Java 17+ and Maven.
ENGINE ?= tansu
broker: $(VENV)/.installed
	$(BIN)/python -m devbroker --engine $(ENGINE)

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python -m bench --engine $(ENGINE) --json bench-results.json --plot bench-results.png

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-registry.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis
