"""Generated reference: webhook events, their payload schemas, signing and retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from vocalis.events.examples import EXAMPLES
from vocalis.events.registry import API_VERSION, EVENTS, envelope
from vocalis.settings import Settings
from vocalis.workers.retry import RetryPolicy, parse_schedule

_EXAMPLE_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = ["| Field | Type | Required | Description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or " or ".join(
            str(option.get("type")) for option in prop.get("anyOf", [])
        )
        if "enum" in prop:
            kind = " \\| ".join(f"`{v}`" for v in prop["enum"])
        elif prop.get("format"):
            kind = f"{kind} ({prop['format']})"
        description = prop.get("description", "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {description} |"
        )
    return "\n".join(rows) + "\n"


def webhook_events() -> str:
    """Every webhook event type with its `data` schema, and the delivery rules."""
    defaults = Settings.model_construct()
    schedule = RetryPolicy.from_schedule(parse_schedule(defaults.webhook_retry_schedule))
    out = [
        "# Webhook events\n",
        "Endpoints are managed at `/v1/webhooks`; each subscribes to a list of event types "
        "(empty = all). Every event is one JSON `POST` in a versioned envelope:\n",
        "```json\n"
        + json.dumps(envelope("conversation.ended", _EXAMPLE_TIME, {"...": "..."}), indent=2)
        + "\n```\n",
        f"The current `api_version` is `{API_VERSION}`. Within a version fields may be added "
        "to `data` (ignore the ones you do not know); removing or changing one needs a new "
        "version.\n",
        "## Signatures (Standard Webhooks)\n",
        "- `webhook-id`: the event id; the same on every retry and replay, so deduplicate on it.",
        "- `webhook-timestamp`: Unix seconds of this attempt; refuse old ones (5 minutes).",
        '- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, '
        "keyed with the base64-decoded part of the endpoint's `whsec_…` secret (shown when "
        "the endpoint is created or its secret rotated; stored encrypted).",
        "- Verify with any Standard Webhooks library, e.g. `standardwebhooks` for Python: "
        "`Webhook(secret).verify(body, headers)`.\n",
        "## Delivery and retries\n",
        "- Answer 2xx within `VOCALIS_WEBHOOK_TIMEOUT_S` "
        f"({defaults.webhook_timeout_s:g} s by default); anything else is a failed attempt.",
        f"- Retries: {schedule.describe()} (`VOCALIS_WEBHOOK_RETRY_SCHEDULE`). Every attempt "
        "is recorded (status code, latency, first 2 KB of the answer, error) and listed at "
        "`GET /v1/webhooks/{id}/deliveries`.",
        "- After the last retry the delivery is `failed` and lands in the dead-letter store "
        "(`/v1/admin/dead-letters`); replaying it there, or "
        "`POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`, sends it again with the "
        "same `webhook-id`.",
        f"- An endpoint is disabled after {defaults.webhook_disable_after_failures} "
        "consecutive failed attempts (`VOCALIS_WEBHOOK_DISABLE_AFTER_FAILURES`) or at once "
        'when it answers `410 Gone`; re-enable it with `PATCH` `{"enabled": true}`.',
        "- Every URL passes the SSRF guard when the endpoint is saved and again on every "
        "attempt; private addresses need `VOCALIS_OUTBOUND_ALLOWLIST`.",
        "- Events are written in the same database transaction as the change they report "
        "(transactional outbox), so none is lost while the broker is down.\n",
        "## Event types\n",
        "| Event | Meaning | Sent when |",
        "|---|---|---|",
    ]
    out += [
        f"| [`{name}`](#{name.replace('.', '')}) | {spec.description} | {spec.trigger} |"
        for name, spec in EVENTS.items()
    ]
    out.append("")
    for name, spec in EVENTS.items():
        schema = spec.schema()
        out.append(f"### `{name}`\n")
        out.append(f"{spec.description}\n")
        out.append(f"**Sent when:** {spec.trigger}\n")
        out.append(
            "Recorded by: " + ", ".join(f"`src/{module}`" for module in spec.emitted_by) + "\n"
        )
        out.append(_fields(schema))
        out.append("Example (validated against the schema below):\n")
        out.append(
            "```json\n"
            + json.dumps(envelope(name, _EXAMPLE_TIME, EXAMPLES[name]), indent=2)
            + "\n```\n"
        )
        out.append(
            "<details><summary>JSON schema of <code>data</code></summary>\n\n```json\n"
            + json.dumps(schema, indent=2)
            + "\n```\n</details>\n"
        )
    return "\n".join(out)
