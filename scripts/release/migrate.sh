#!/usr/bin/env bash
# Step 4: migrate the database before any new pod starts (migrations are expand/contract:
# the running release keeps working on the new schema, see deploy/README.md).
#   TARGET=cluster (default): the migrate Job of the release's manifests, waited for.
#   TARGET=local: `vocalis migrate` against VOCALIS_DATABASE_URL (a laptop, a staging box).
. "$(dirname "$0")/lib.sh"
if [ "${TARGET:-cluster}" = local ]; then
  VOCALIS="${VOCALIS:-$(command -v vocalis || echo "$ROOT/.venv/bin/vocalis")}"
  run "$VOCALIS" migrate
  exit 0
fi
manifests="$(render_manifests)"
run kubectl -n "$NAMESPACE" delete job vocalis-migrate --ignore-not-found # Jobs are immutable
run kubectl apply -f "$manifests" -l 'app.kubernetes.io/component in (config,migrate)'
run kubectl -n "$NAMESPACE" wait --for=condition=complete job/vocalis-migrate --timeout="${MIGRATE_TIMEOUT:-15m}"
log "migrated"
