#!/usr/bin/env bash
# Step 7 (only when deploying or the smoke test failed): every Deployment back to its
# previous revision, then wait. The database is NOT downgraded: migrations are
# expand/contract, so the previous release runs on the new schema (deploy/README.md).
. "$(dirname "$0")/lib.sh"
if [ "${DRY_RUN:-0}" = 1 ]; then
  deployments="$(deployments_in "$(render_manifests)")"
else
  deployments="$(kubectl -n "$NAMESPACE" get deployments -l "$SELECTOR" -o name | sed 's|^deployment.apps/||')"
fi
for deployment in $deployments; do
  run kubectl -n "$NAMESPACE" rollout undo "deployment/$deployment"
done
for deployment in $deployments; do
  run kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout="${ROLLOUT_TIMEOUT:-10m}"
done
log "rolled back: $(echo $deployments | tr '\n' ' ')"
