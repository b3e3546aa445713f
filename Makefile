# `make test` and `make demo` set everything up on a fresh machine (virtual environment,
# install, data) and then run. FLOWFORGE_DATA defaults to ../shared/data when it exists;
# otherwise the data are looked for in the per-user cache and system locations, then downloaded.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
export FLOWFORGE_DATA ?= $(if $(wildcard $(SHARED_DATA)/mnist),$(SHARED_DATA),)
DEMO_DIR ?= runs/demo

.PHONY: test demo install data clean lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

data: install
	$(BIN)/flowforge data mnist fashion-mnist

lint: install
	$(BIN)/ruff check src tests benchmarks

test: data
	$(BIN)/python -m pytest -q

demo: data
	rm -rf $(DEMO_DIR)
	$(BIN)/flowforge train demo-fashion-mnist --run-dir $(DEMO_DIR)
	$(BIN)/flowforge eval $(DEMO_DIR) --split test
	$(BIN)/flowforge sample $(DEMO_DIR) --temperature 0.7 --n 80 --sweep --interpolate --class-edit 7:5
	@echo "demo report: $(DEMO_DIR)/report.md"

clean:
	rm -rf $(VENV) runs .pytest_cache
