#!/usr/bin/env bash
# Test-only extras that cannot be plain pins in pyproject (built from source, or --no-deps).
set -euo pipefail
PY="${1:-.venv/bin/python}"
echo "test extras: nothing extra yet"
