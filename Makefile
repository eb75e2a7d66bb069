# pyai: `make run` serves the archive, `make test` runs every test.
# Both set up what they need: a virtualenv in .venv, the native extension,
# and (as root, on Debian) the system tools the tests drive.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
ADDRESS ?= 127.0.0.1
# `make run` stores under ./archive on posix, unless CONFIG= names an INI file: then the
# file's prefix and backend apply, and PREFIX= or BACKEND= given too override them.
RUN_PREFIX := $(if $(filter undefined,$(origin PREFIX)),,--prefix $(PREFIX))
RUN_BACKEND := $(if $(filter undefined,$(origin BACKEND)),,-t $(BACKEND))
PREFIX ?= ./archive
BACKEND ?= posix
CONFIG ?=
PYTEST_ARGS ?=

# The HPSS binding is compiled against $(HPSS_ROOT)/include/hpss_api.h when it
# exists, else against the emulator in csrc/hpss_emu (see docs/storage.md, "HPSS").
HPSS_ROOT ?= /opt/hpss
export HPSS_ROOT

NATIVE_SOURCES := $(wildcard csrc/*.c csrc/*.h) pyai/native/_cimpl.pyx $(wildcard pyai/native/*.pxd) \
	$(wildcard csrc/hpss_emu/*.c csrc/hpss_emu/*.h) csrc/hpss_build.py
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
IO_EXT := pyai/native/_cimpl$(EXT_SUFFIX)
HPSS_EXT := pyai/hpss_client/_hpss$(EXT_SUFFIX)
# Rebuild the binding when HPSS_ROOT, or whether it holds the headers, changes.
HPSS_STAMP := build/hpss-root.stamp
SYSTEM_TOOLS := curl wget strace rclone
# Debian packages the tests drive that are no single command: gfal2's scripts (gfal-copy,
# gfal-stat, ...) and its HTTP/WebDAV plugin (tests/grid).  The tests run the scripts
# with GFAL_PYTHONBIN=/usr/bin/python3, so no `python` command is needed.
# systemd: systemd-analyze verifies deploy/pyai.service (tests/deploy; systemd need not run).
# nginx-light: the nginx that tests/deploy puts in front of pyai with deploy/nginx/pyai.conf.
# rclone (a tool and a package of that name): its webdav remote writes trees under namespace = paths (tests/paths).
# haproxy: tests/deploy/test_haproxy.py runs deploy/haproxy/haproxy.cfg in front of three instances.
# prometheus: its promtool checks a real scrape of /metrics (tests/ops/test_metrics.py).
# libh2o-evloop0.13: h2o's library exports picohttpparser, which parses plain GET/HEAD heads in C
# (pyai serves without it, every request then taking the full path; tests/unit/test_plain_request.py needs it).
RUN_PACKAGES := libh2o-evloop0.13
SYSTEM_PACKAGES := $(RUN_PACKAGES) gfal2-util-scripts gfal2-plugin-http systemd nginx-light haproxy prometheus logrotate

.PHONY: FORCE all venv compile debug run run-deps unit-deps test test-unit test-quick test-sanitized test-c test-python test-floors bench profile docs system-deps lint typecheck format clean \
	distclean fuzz fuzz-deps

all: compile

# What serving needs (`make run`): the build tools and pyai's own dependencies, at the
# versions requirements.txt pins; the test tools come only with the targets that use them.
$(VENV)/.run-installed: requirements.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.txt setuptools Cython cffi
	$(PY) -m pip install -q -c requirements.txt --no-build-isolation -e .
	touch $@

# Everything requirements.txt pins: the test suite's and the benchmarks' tools too.
$(VENV)/.installed: $(VENV)/.run-installed
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

$(HPSS_STAMP): FORCE
	@mkdir -p build
	@echo "$(HPSS_ROOT) $$(test -f $(HPSS_ROOT)/include/hpss_api.h && echo vendor || echo emulator)" > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

$(IO_EXT) $(HPSS_EXT) &: $(VENV)/.run-installed $(NATIVE_SOURCES) setup.py $(HPSS_STAMP)
	$(PY) setup.py -q build_ext --inplace --force

compile: $(IO_EXT) $(HPSS_EXT)

# Unoptimised, with debug symbols and Cython line tracing off: for gdb/valgrind.
debug: $(VENV)/.run-installed
	PYAI_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

run: compile run-deps
	$(VENV)/bin/pacifica-archiveinterface -a $(ADDRESS) -p $(PORT) \
	  $(if $(CONFIG),-c $(CONFIG) $(RUN_BACKEND) $(RUN_PREFIX),-t $(BACKEND) --prefix $(PREFIX))

# What serving is faster with: installed when root, else named (serving goes on without it).
run-deps:
	@missing=""; for pkg in $(RUN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: without$$missing plain GETs and HEADs take the slower full path (apt-get install$$missing)"; fi; \
	fi

# gfal2 (gfal-copy etc. and its HTTP plugin): the grid client tests (tests/grid).
# mariadb-server: the hsmsideband tests run a private MariaDB (unless PYAI_TEST_BACKENDS leaves hsmsideband out).
system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; done; \
	case " $${PYAI_TEST_BACKENDS-hsmsideband} " in *" hsmsideband "*) \
	  test -x /usr/sbin/mariadbd || command -v mariadbd >/dev/null || missing="$$missing mariadb-server";; esac; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system tools:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; fi; \
	fi

# The whole suite; the HTTP tests run against both I/O paths (PYAI_IMPL=c and =python).
test: compile venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The in-process tests alone (tests/unit: no server; of the system packages only h2o's parser
# library, which `make run` wants too, and strace, which traces the write-back): under a
# minute, for the edit-and-test loop.  Nothing is installed when both are there.
test-unit: compile venv unit-deps
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit

unit-deps: run-deps
	@command -v strace >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace; \
	  else echo "the unit tests need strace (apt-get install strace)"; exit 1; fi; }

# $(call copy_tree,DIR): the tree as git would commit it now (tracked files and untracked ones it
# does not ignore, as they are in the working tree; no build output), copied into DIR.
copy_tree = mkdir -p $(1) && git ls-files -z --cached --others --exclude-standard \
	| tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(1)

# One representative end-to-end case per feature (the tests marked quick): a few minutes.
test-quick: compile venv system-deps
	$(PY) -m pytest -m quick $(PYTEST_ARGS)

# The in-process tests again on a copy of the tree whose C parts are built with AddressSanitizer
# and UBSan (PYAI_SANITIZE=1): an overflow, a use after free or undefined behaviour in csrc/
# aborts the run.  The interpreter is not instrumented, so libasan is preloaded into it and
# leak checking is off (CPython frees little at exit).
SANITIZE_DIR ?= build/sanitize
test-sanitized: venv unit-deps
	rm -rf $(SANITIZE_DIR)
	$(call copy_tree,$(SANITIZE_DIR)/src)
	cd $(SANITIZE_DIR)/src && PYAI_SANITIZE=1 $(abspath $(PY)) setup.py -q build_ext --inplace
	cd $(SANITIZE_DIR)/src && export LD_PRELOAD=$$($${CC:-cc} -print-file-name=libasan.so) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 PYTHONPATH=$$PWD && \
	  $(abspath $(PY)) -c 'import os, pyai.native._cimpl as m; assert m.__file__.startswith(os.getcwd()), m.__file__' && \
	  $(abspath $(PY)) -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests/unit

test-c: compile venv system-deps
	PYAI_TEST_IMPLS=c $(PY) -m pytest $(PYTEST_ARGS)

test-python: compile venv system-deps
	PYAI_TEST_IMPLS=python $(PY) -m pytest $(PYTEST_ARGS)

# The oldest releases pyproject.toml admits (constraints/floors.txt), installed as a user
# would: from a clean copy of the tree (no extension, C file or build/ left by `make
# compile`), not editable, the extensions built by the floor setuptools/Cython/cffi.  The
# copy then loses pyai/, so the tests (and the servers they start) import the installed
# package.  The HTTP suite on posix, the sideband suite (peewee, PyMySQL), the HPSS,
# unit and metrics tests: about 5 minutes.
FLOORS ?= constraints/floors.txt
FLOORS_DIR ?= build/floors
FLOORS_VENV := $(FLOORS_DIR)/venv
FLOORS_PY := $(abspath $(FLOORS_VENV))/bin/python
FLOORS_TESTS ?= tests/integration tests/hostile/test_worker_lifecycle.py tests/sideband tests/hpss tests/unit tests/ops/test_metrics.py
test-floors: system-deps
	rm -rf $(FLOORS_DIR)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_PY) -m pip install -q --upgrade pip
	$(FLOORS_PY) -m pip install -q -c $(FLOORS) setuptools Cython cffi
	$(call copy_tree,$(FLOORS_DIR)/src)
	cd $(FLOORS_DIR)/src && $(FLOORS_PY) -m pip install -q --no-build-isolation -c $(abspath $(FLOORS)) '.[test]'
	rm -rf $(FLOORS_DIR)/src/pyai $(FLOORS_DIR)/src/build
	$(FLOORS_PY) -m pip freeze --all --exclude-editable | grep -iE '^(setuptools|cython|cffi|gunicorn|flask|werkzeug|peewee|pymysql|pyyaml|prometheus.client|defusedxml)=='
	cd $(FLOORS_DIR)/src && PYAI_TEST_BACKENDS="posix hsmsideband" $(FLOORS_PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) $(FLOORS_TESTS)

# Benchmarks (bench/): pyai against nginx on the same files, its pure-Python path and
# the raw storage (dd); prints one table and writes bench/results/*.json.  A whole full run (no
# QUICK=1, no BENCH_ARGS) also rewrites docs/performance.md's results and its chart (bench/report.py).
# QUICK=1 is the smoke run CI does (small sizes, one repetition, < 3 minutes).
# BENCH_ARGS are extra pytest arguments; BENCH_LARGE_SIZE etc. are read from the environment.
BENCH_ARGS ?=
bench: compile venv system-deps
	@missing=""; for pair in nginx:nginx-light wrk:wrk hey:hey curl:curl; do \
	  tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$tool >/dev/null || test -x /usr/sbin/$$tool || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "bench needs the packages:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; fi; \
	fi
	BENCH_QUICK=$(if $(filter 1 yes true,$(QUICK)),1,0) $(PY) -m pytest -c bench/pytest.ini bench $(BENCH_ARGS)
	$(if $(filter 1 yes true,$(QUICK))$(BENCH_ARGS),,$(PY) bench/report.py bench/results/latest.json docs/performance.md docs/img/bench.svg)

# A flame graph of one pyai worker under one load (bench/flamegraph.py): py-spy records the worker
# for 10 s while wrk (hey for HEAD) drives SCENARIO, one of small-get, small-head, small-put, large-get,
# large-put; written to bench/results/profile-$(SCENARIO).svg.  PROFILE_ARGS: e.g. --native --impl python.
SCENARIO ?= small-get
PROFILE_ARGS ?=
# The documentation site (docs/, mkdocs.yml) into build/site; --strict: a broken link fails it.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): requirements-docs.txt $(VENV)/.run-installed
	$(PY) -m pip install -q -r requirements-docs.txt
	touch $@

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict --quiet

PROFILE_STAMP := $(VENV)/.profile-installed
$(PROFILE_STAMP): requirements-profile.txt $(VENV)/.run-installed
	$(PY) -m pip install -q -r requirements-profile.txt
	touch $@

profile: compile $(PROFILE_STAMP)
	$(PY) bench/flamegraph.py $(SCENARIO) $(PROFILE_ARGS)

# Fuzzing (tests/fuzz): a libFuzzer harness of the C code that parses client bytes, the
# chunked decoder (csrc/pyai_chunked.c), built by clang with ASan and UBSan and with tiny
# buffers (every path reached by small inputs), run for FUZZ_SECONDS (CI: 60) or FUZZ_RUNS
# inputs, on the committed seeds (tests/fuzz/corpus) and what earlier runs found
# (build/fuzz/corpus-*).  A failing input is saved as build/fuzz/crash-* (rerun it:
# build/fuzz/fuzz_chunked <file>).  FUZZ_ARGS are more libFuzzer flags.  clang and its
# libFuzzer runtime are installed as root (Debian) when missing.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_ARGS ?=
FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_PACKAGES := clang libclang-rt-dev
FUZZ_CFLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -Icsrc -DCHUNKED_BUF=16 -DLINE_SLACK=8 -DMAX_RUNS=4 -DMERGE_MAX=3
FUZZ_CHUNKED_SOURCES := tests/fuzz/fuzz_chunked.c csrc/pyai_chunked.c csrc/pyai_io.c csrc/pyai_wait.c

fuzz-deps:
	@missing=""; command -v $(FUZZ_CC) >/dev/null || missing="$(FUZZ_PACKAGES)"; \
	if [ -z "$$missing" ] && command -v dpkg-query >/dev/null; then for pkg in $(FUZZ_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; done; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "fuzz needs the packages:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; fi; \
	fi

$(FUZZ_DIR)/fuzz_chunked: $(FUZZ_CHUNKED_SOURCES) $(wildcard csrc/*.h) | fuzz-deps
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_CHUNKED_SOURCES)

fuzz: $(FUZZ_DIR)/fuzz_chunked
	@mkdir -p $(FUZZ_DIR)/corpus-chunked
	$(FUZZ_DIR)/fuzz_chunked -max_total_time=$(FUZZ_SECONDS) $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS)) -timeout=10 \
	  -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_ARGS) $(FUZZ_DIR)/corpus-chunked tests/fuzz/corpus/chunked

# Code quality: ruff (lint and format, settings in pyproject.toml), mypy on the packages that
# carry the backend protocol, clang-format on csrc/ (.clang-format).  `make format` applies them.
# lint-imports (import-linter, [tool.importlinter] in pyproject.toml): the package layers, and
# only pyai.server imports gunicorn.
C_SOURCES := $(wildcard csrc/*.c csrc/*.h csrc/hpss_emu/*.c csrc/hpss_emu/*.h)
LINT_STAMP := $(VENV)/.lint-installed
$(LINT_STAMP): requirements-lint.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-lint.txt
	touch $@

lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $(C_SOURCES)
	$(VENV)/bin/lint-imports --no-logo --no-cache

typecheck: $(LINT_STAMP)
	$(VENV)/bin/mypy

format: $(LINT_STAMP)
	$(VENV)/bin/ruff check --fix-only -q .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(C_SOURCES)

clean:
	rm -rf build pyai/native/_cimpl.c pyai/*/*.so pyai/*/*.html .pytest_cache .benchmarks
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
