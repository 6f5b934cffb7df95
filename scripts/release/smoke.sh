#!/usr/bin/env bash
# Step 6: smoke test a running deployment at BASE_URL: the process answers (/healthz),
# every backend answers (/readyz, retried for SMOKE_TIMEOUT_S while pods settle), metrics
# are served, and with SMOKE_API_KEY an authenticated read works. Exit 1 on any failure.
. "$(dirname "$0")/lib.sh"
: "${BASE_URL:?set BASE_URL, e.g. https://vocalis.example.com or http://127.0.0.1:8000}"
deadline=$(( $(date +%s) + ${SMOKE_TIMEOUT_S:-60} ))
check() { # check NAME URL [curl args]: 2xx or fail
  local name="$1" url="$2"; shift 2
  if curl -fsS --max-time 10 -o /dev/null "$@" "$url"; then log "ok: $name"; else log "FAILED: $name"; return 1; fi
}
until check healthz "$BASE_URL/healthz" && check readyz "$BASE_URL/readyz"; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "FAILED: $BASE_URL is not healthy and ready after ${SMOKE_TIMEOUT_S:-60} s"
    exit 1
  fi
  sleep 2
done
metrics="$(curl -fsS --max-time 10 "$BASE_URL/metrics")"
grep -q '^vocalis_http_requests_total' <<<"$metrics" || { log "FAILED: /metrics has no vocalis_http_requests_total"; exit 1; }
log "ok: metrics"
if [ -n "${SMOKE_API_KEY:-}" ]; then
  check "authenticated GET /v1/org" "$BASE_URL/v1/org" -H "Authorization: Bearer $SMOKE_API_KEY"
  check "authenticated GET /v1/agents" "$BASE_URL/v1/agents" -H "Authorization: Bearer $SMOKE_API_KEY"
fi
log "smoke test passed"
