# Every target sets itself up: `make up` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=100000000000:glibc.malloc.arena_max=2

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
