#!/usr/bin/env bash
# Step 1: build the image from the repository root (docker build; BuildKit).
. "$(dirname "$0")/lib.sh"
run docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE:$TAG" \
  --label "org.opencontainers.image.revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label "org.opencontainers.image.version=$TAG" "$ROOT"
remember IMAGE_BUILT "$IMAGE:$TAG"
log "built $IMAGE:$TAG"
