# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
VENV   := .venv
STAMP  := $(VENV)/.intdeploy-installed
PY     := $(VENV)/bin/python
# Parallel pytest workers for the simulator tests (2 cores here).
JOBS   ?= 2

.PHONY: setup demo test regress bench soak fuzz formal clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh

# The bundled digits network on the default 8x8 top under Verilator, all 360 test images, bit-exact
# against golden (docs/run.md); `intdeploy demo` prints the four NEMO representations (golden only).
demo: $(STAMP)
	$(VENV)/bin/intdeploy run --sim verilator

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not regress"

regress: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS)

bench: $(STAMP)
	$(VENV)/bin/intdeploy perf --out docs/perf

# Random networks and configurations, golden vs RTL, for a bounded time: make soak ARGS="--minutes 30 --seed 7"
ARGS   ?= --minutes 10
soak: $(STAMP)
	$(VENV)/bin/intdeploy soak $(ARGS)

# The fuzzers at 10,000 examples each (docs/reliability.md)
fuzz: $(STAMP)
	INTDEPLOY_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q -p no:xdist tests/test_fuzz.py -k fuzz_

# Every formal proof, then every planted bug (each must fail), with summary tables (docs/formal.md)
formal: $(STAMP)
	$(PY) -m formal.run && $(PY) -m formal.run --mutants

clean:
	rm -rf build .pytest_cache .hypothesis
