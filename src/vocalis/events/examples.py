"""A realistic `data` object of every webhook event type, for the generated reference
(`docs/reference/webhook-events.md`); `tests/webhooks/test_event_reference.py` validates
each one against its event's model and JSON schema."""

from __future__ import annotations

from typing import Any

_CONV = "cnv_01m8y4rdqads32sa73e2e67fga"
_AGENT = "agt_01m8y4rd0ebxwc04qkvs7zbfb7"
_CALL = {
    "provider": "twilio",
    "direction": "inbound",
    "from": "+14155550123",
    "to": "+14155550199",
    "provider_call_id": "CA5f0a1f8c3d2b4e6a9c7d1e2f3a4b5c6d",
    "phone_number_id": "pn_01m8y4h3ssk2x7r9t4v6w8y0z1",
    "duration_s": 184.2,
    "hangup_side": "caller",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "conversation.started": {
        "conversation_id": _CONV,
        "agent_id": _AGENT,
        "agent_version": 3,
        "channel": "voice",
        "started_at": "2026-01-01T11:57:00.000000Z",
        "metadata": {"customer_id": "cus_4521"},
    },
    "conversation.ended": {
        "conversation_id": _CONV,
        "agent_id": _AGENT,
        "agent_version": 3,
        "channel": "phone",
        "ended_at": "2026-01-01T12:00:04.200000Z",
        "reason": "user_ended",
        "message_count": 14,
        "duration_s": 184.2,
        "call": _CALL,
    },
    "conversation.analyzed": {
        "conversation_id": _CONV,
        "agent_id": _AGENT,
        "summary": "The caller asked where order 4521 was; the agent gave the Thursday delivery "
        "date from the shipping policy.",
        "outcome": "resolved",
        "sentiment": "positive",
        "fields": {"order_id": "4521", "follow_up_needed": False},
        "method": "model",
        "analyzed_at": "2026-01-01T12:00:09.000000Z",
        "call": _CALL,
    },
    "document.ready": {
        "knowledge_base_id": "kb_01m8y4h3ssg9z7nzems1dnstnb",
        "document_id": "doc_01m8y4h3ssm7yxt53zn5v7f1vg",
        "name": "shipping-policy.pdf",
        "version": 2,
        "chunk_count": 37,
    },
    "document.failed": {
        "knowledge_base_id": "kb_01m8y4h3ssg9z7nzems1dnstnb",
        "document_id": "doc_01m8y4h3st3k5m7p9r1t3v5x7z",
        "name": "scan-2019.pdf",
        "error_code": "document_empty",
        "error": "No text could be extracted from the document.",
    },
    "handoff.requested": {
        "conversation_id": _CONV,
        "agent_id": _AGENT,
        "reason": "The caller asked for a refund above the agent's limit.",
        "summary": "Refund of 240 EUR requested for order 4521 (damaged on arrival).",
        "last_user_message": "I want my money back, please.",
        "requested_at": "2026-01-01T11:59:12.000000Z",
    },
    "webhook.test": {
        "endpoint_id": "whe_01m8y4h3ss30d74tm7zwq4yqc1",
        "message": "This is a test event from Vocalis.",
    },
    "vocalis.dtmf": {
        "conversation_id": _CONV,
        "agent_id": _AGENT,
        "digit": "1",
        "provider": "twilio",
    },
}
