# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
VENV   := .venv
STAMP  := $(VENV)/.intdeploy-installed
PY     := $(VENV)/bin/python
# Parallel pytest workers for the simulator tests (2 cores here).
JOBS   ?= 2

.PHONY: setup demo test regress bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh

demo: $(STAMP)
	$(VENV)/bin/intdeploy demo

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not regress"

regress: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS)

bench: $(STAMP)
	$(VENV)/bin/intdeploy bench --out docs/perf/golden.json

clean:
	rm -rf build .pytest_cache .hypothesis
