# ionlab: `make run` starts the demo lab, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIM_LIB := build/sim/libwlmData.so
SIM_SRC := $(wildcard drivers/highfinesse/sim/*.c drivers/highfinesse/sim/*.h)
CC ?= cc

.PHONY: run test bench lint sim clean venv

venv: $(STAMP)

# Reinstall only when pyproject.toml changed (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ionlab run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) sim
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check drivers services tools hgext tests bench

sim: $(SIM_LIB)

$(SIM_LIB): $(SIM_SRC)
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -shared -fPIC -o $@ $(filter %.c,$(SIM_SRC)) -lm -lpthread

clean:
	rm -rf $(VENV) build var .pytest_cache .ruff_cache test-artifacts *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
