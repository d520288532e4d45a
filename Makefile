# Every target sets itself up: `make up` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# The malloc tunables `dial` runs under, for the test and benchmark processes too (unless already set).
export GLIBC_TUNABLES ?= $(shell sed -n 's/^GLIBC_TUNABLES=//p' services/malloc.env)

.PHONY: setup up test bench protos clean qgis-plugin

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt -e ./clients/python -e '.[dev]'
	touch $(STAMP)

up: setup
	$(VENV)/bin/dial up

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks

protos: setup
	$(PY) protos/generate.py

# The QGIS plugin zip, with the DIAL client and grpcio/protobuf for QGIS's Python (clients/qgis/README.md).
qgis-plugin: setup
	$(PY) clients/qgis/build.py

clean:
	rm -rf $(VENV) .pytest_cache
