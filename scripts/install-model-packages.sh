#!/usr/bin/env bash
# Registry packages that carry model files only; installed without their dependencies.
# - pipecat-ai ships Smart Turn v3.2 (`pipecat/audio/turn/smart_turn/data/
#   smart-turn-v3.2-cpu.onnx`, BSD-2-Clause), the default end-of-turn model. Vocalis reads
#   the file (SHA-256-checked in adapters/smart_turn.py) and imports no pipecat code, so
#   the framework's own dependencies (numba, llvmlite, Pillow, ~245 MB) are left out.
#   The test extra installs the same version with its dependencies (a peer client).
set -euo pipefail
PY="${1:-.venv/bin/python}"
"$PY" -m pip install --quiet --no-deps 'pipecat-ai==1.14.0'
