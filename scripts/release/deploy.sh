#!/usr/bin/env bash
# Step 5: apply the release's manifests (the pushed image by digest) and wait for every
# Deployment to finish rolling out (maxUnavailable 0: old pods serve until new ones are ready).
. "$(dirname "$0")/lib.sh"
manifests="$(render_manifests)"
run kubectl apply -f "$manifests"
for deployment in $(deployments_in "$manifests"); do
  run kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout="${ROLLOUT_TIMEOUT:-10m}"
done
log "deployed ${IMAGE_REF:-$IMAGE:$TAG}"
