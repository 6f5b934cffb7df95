#!/usr/bin/env bash
# Step 3: push, and remember the image by digest (what is deployed is exactly what was
# scanned, whatever later happens to the tag).
. "$(dirname "$0")/lib.sh"
run docker push "$IMAGE:$TAG"
if [ "${DRY_RUN:-0}" = 1 ]; then
  ref="$IMAGE:$TAG"
else
  ref="$(docker inspect --format '{{index .RepoDigests 0}}' "$IMAGE:$TAG")"
fi
remember IMAGE_REF "$ref"
log "pushed $ref"
