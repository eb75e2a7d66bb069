# pyai: `make run` serves the archive, `make test` runs every test.
# Both set up what they need: a virtualenv in .venv, the native extension,
# and (as root, on Debian) the system tools the tests drive.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
ADDRESS ?= 127.0.0.1
PREFIX ?= ./archive
BACKEND ?= posix
CONFIG ?=
PYTEST_ARGS ?=

NATIVE_SOURCES := $(wildcard csrc/*.c csrc/*.h) pyai/_io.pyx $(wildcard pyai/*.pxd)
IO_EXT := pyai/_io$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
SYSTEM_TOOLS := curl wget

.PHONY: all venv compile debug run test test-c test-python system-deps clean distclean

all: compile

$(VENV)/.installed: requirements.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

venv: $(VENV)/.installed

$(IO_EXT): $(VENV)/.installed $(NATIVE_SOURCES) setup.py
	$(PY) setup.py -q build_ext --inplace

compile: $(IO_EXT)

# Unoptimised, with debug symbols and Cython line tracing off: for gdb/valgrind.
debug: $(VENV)/.installed
	PYAI_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

run: compile
	$(VENV)/bin/pacifica-archiveinterface -t $(BACKEND) -a $(ADDRESS) -p $(PORT) --prefix $(PREFIX) $(if $(CONFIG),-c $(CONFIG))

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system tools:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; fi; \
	fi

# The whole suite; the HTTP tests run against both I/O paths (PYAI_IMPL=c and =python).
test: compile system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-c: compile system-deps
	PYAI_TEST_IMPLS=c $(PY) -m pytest $(PYTEST_ARGS)

test-python: compile system-deps
	PYAI_TEST_IMPLS=python $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build pyai/_io.c pyai/*.so pyai/*.html .pytest_cache .benchmarks
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
