# ionlab: `make run` starts the demo lab, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SIM_LIB := build/sim/libwlmData.so
SIM_SRC := $(wildcard drivers/highfinesse/sim/*.c drivers/highfinesse/sim/*.h)
CC ?= cc

.PHONY: run test bench lint sim clean venv

venv: $(TEST_STAMP)

# Reinstall only when pyproject.toml or the compiled line-protocol reader changed (or the
# venv is new). `make run` installs what running needs; test, lint and bench add the test
# extras (Playwright, ruff, ...).
$(STAMP): pyproject.toml services/logger/ingest/_simplelines.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/ionlab run $(RUN_ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP) sim
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check drivers services tools hgext tests bench

sim: $(SIM_LIB)

$(SIM_LIB): $(SIM_SRC)
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -shared -fPIC -o $@ $(filter %.c,$(SIM_SRC)) -lm -lpthread

clean:
	rm -rf $(VENV) build var .pytest_cache .ruff_cache test-artifacts *.egg-info
	rm -f services/logger/ingest/_simplelines.*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
