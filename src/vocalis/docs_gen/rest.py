"""The per-operation part of the REST reference: parameter, body and response field
tables and an example of each, generated from the OpenAPI document.

An example is the schema's own (`examples`/`example`) where it has one, else one built
deterministically from the schema: realistic values by format and field name (ids with
their resource's prefix, dates, e-mail addresses, URLs), an enum's first value, lengths
and bounds respected. `tests/unit/test_rest_reference.py` validates every example against
its schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# The prefix of each resource's ids (`core/ids.py: new_id`), by field name and by schema.
ID_PREFIXES: dict[str, str] = {
    "agent": "agt",
    "agent_version": "agv",
    "version": "agv",
    "conversation": "cnv",
    "message": "msg",
    "reply": "msg",
    "item": "item",
    "dead_letter": "dlq",
    "delivery": "dlv",
    "attempt": "att",
    "document": "doc",
    "kb": "kb",
    "knowledge_base": "kb",
    "key": "key",
    "api_key": "key",
    "server": "mcs",
    "mcp_server": "mcs",
    "provider": "mpr",
    "model_provider": "mpr",
    "org": "org",
    "organization": "org",
    "phone_number": "pn",
    "user": "usr",
    "member": "mem",
    "webhook": "whe",
    "event": "evt",
    "session": "sess",
    "call": "call",
    "response": "resp",
}
SCHEMA_PREFIXES: dict[str, str] = {
    "Agent": "agt",
    "AgentVersion": "agv",
    "Conversation": "cnv",
    "Message": "msg",
    "DeadLetter": "dlq",
    "Delivery": "dlv",
    "Attempt": "att",
    "Document": "doc",
    "KnowledgeBase": "kb",
    "ApiKey": "key",
    "McpServer": "mcs",
    "ModelProvider": "mpr",
    "Org": "org",
    "PhoneNumber": "pn",
    "Webhook": "whe",
    "TestEvent": "evt",
    "Upload": "doc",
    "ClientSecret": "sess",
    "Session": "sess",
}
# OpenAI-compatible objects keep OpenAI's ids.
OPENAI_IDS: dict[str, str] = {
    "ChatCompletion": "chatcmpl-01jd8x3k2m4n5p6q7r8s9t0vwx",
    "TextCompletion": "cmpl-01jd8x3k2m4n5p6q7r8s9t0vwx",
    "Model": "gpt-4o-mini",
    "PromptReference": "pmpt_support_v1",
    "ToolCall": "call_01jd8x3k2m4n5p6q7r8s9t0vwx",
    "ToolCallIn": "call_01jd8x3k2m4n5p6q7r8s9t0vwx",
    "ToolCallOut": "call_01jd8x3k2m4n5p6q7r8s9t0vwx",
    "ToolResult": "call_01jd8x3k2m4n5p6q7r8s9t0vwx",
}
# Nullable fields whose realistic value in an example is null (the last page, no replay).
NULL_NAMES = frozenset({"next_cursor", "replay_task_id", "replayed_at", "discarded_at"})
# Realistic values of string fields by name (a schema's own example wins).
NAMED_VALUES: dict[str, str] = {
    "description": "Answers billing questions.",
    "first_message": "Hello! How can I help you today?",
    "api_key_secret": "llm/openai_api_key",
    "tool_choice": "auto",
    "role": "Refund researcher",
    "goal": "Find the customer's order and the refund policy that applies.",
    "summary_instructions": "Summarise the caller's request in two sentences.",
    "success_criteria": "The caller's question is answered.",
    "document_name": "faq.md",
    "section": "Resetting your password",
    "content_redacted": "My card number is [REDACTED].",
    "disabled_reason": "too many failed deliveries",
    "external_user": "crm-user-42",
    "task_name": "vocalis.knowledge.ingest_document",
    "task_id": "3f2b8c1e-5d4a-4e6f-9b7c-2a1d0e9f8c7b",
    "queue": "default",
    "error_type": "TimeoutError",
    "error": "the model server did not answer within 30 s",
    "last_error": "connection refused",
    "ended_reason": "user_hangup",
    "api_key_last4": "3f9a",
    "prefix": "vk_live_3f9a",
    "content_type": "text/markdown",
    "checksum": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "owned_by": "vocalis",
    "system_fingerprint": "fp_vocalis",
    "provider_call_id": "CA0123456789abcdef0123456789abcdef",
    "response_body": "ok",
    "message": "Rate limit reached.",
    "end_of_conversation_phrase": "goodbye",
    "allowed_tool": "lookup_order",
    "event_type": "conversation.ended",
    "header_name": "X-Request-ID",
    "scope": "agents:read",
    "arguments": '{"order_id": "A-1042"}',
    "chunk_id": "doc_01jd8x3k2m4n5p6q7r8s9t0vwx:0",
    "source": "crm",
    "arg": "doc_01jd8x3k2m4n5p6q7r8s9t0vwx",
}
EXAMPLE_ID_BODY = "01jd8x3k2m4n5p6q7r8s9t0vwx"
EXAMPLE_TIME = "2026-01-15T09:30:00Z"
MAX_DEPTH = 10


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


@dataclass
class Reference:
    """One operation's parameters, body and success response, with their examples."""

    method: str
    path: str
    parameters: list[dict[str, Any]]
    body_media: str | None
    body_schema: dict[str, Any] | None
    body_required: bool
    body_example: Any
    status: str | None
    response_media: list[str]
    response_schema: dict[str, Any] | None
    response_example: Any
    response_description: str


class Schemas:
    """The components of one OpenAPI document: reading, flattening and examples."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components: dict[str, Any] = document.get("components", {}).get("schemas", {})
        self.request = False

    def resolve(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        seen = 0
        while schema and "$ref" in schema and seen < 20:
            schema = self.components.get(_ref_name(schema), {})
            seen += 1
        return schema or {}

    @staticmethod
    def non_null(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The schema without its `null` branch, and whether it had one."""
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if not branches:
                continue
            others = [b for b in branches if b.get("type") != "null"]
            if len(others) < len(branches) and len(others) == 1:
                merged = {k: v for k, v in schema.items() if k != key}
                return {**others[0], **merged}, True
        return schema, False

    # --- describing -----------------------------------------------------------------

    def type_text(self, schema: dict[str, Any]) -> str:
        schema, nullable = self.non_null(schema)
        suffix = " or null" if nullable else ""
        if "$ref" in schema:
            return f"`{_ref_name(schema)}`{suffix}"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " or ".join(self.type_text(b) for b in schema[key]) + suffix
        kind = schema.get("type")
        if kind == "array":
            return f"array of {self.type_text(schema.get('items', {}))}{suffix}"
        if "const" in schema:
            return f"`{json.dumps(schema['const'])}`"
        text = kind if isinstance(kind, str) else "object" if "properties" in schema else "any"
        if schema.get("format"):
            text += f" ({schema['format']})"
        elif schema.get("contentMediaType") == "application/octet-stream":
            text += " (binary file)"
        return text + suffix

    def constraints(self, schema: dict[str, Any]) -> str:
        schema, _ = self.non_null(schema)
        schema = {**self.resolve(schema), **{k: v for k, v in schema.items() if k != "$ref"}}
        parts = []
        names = {
            "minimum": "≥ {}",
            "exclusiveMinimum": "> {}",
            "maximum": "≤ {}",
            "exclusiveMaximum": "< {}",
            "minLength": "min length {}",
            "maxLength": "max length {}",
            "minItems": "min items {}",
            "maxItems": "max items {}",
            "pattern": "pattern `{}`",
        }
        for key, template in names.items():
            if key in schema:
                value = schema[key]
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                parts.append(template.format(value))
        if "enum" in schema:
            parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
        items = schema.get("items")
        if isinstance(items, dict) and schema.get("type") == "array":
            inner = self.constraints(items)
            if inner:
                parts.append(f"each: {inner}")
        return "; ".join(parts)

    def field_rows(
        self,
        schema: dict[str, Any] | None,
        prefix: str = "",
        depth: int = 0,
        seen: tuple[str, ...] = (),
    ) -> list[list[str]]:
        """Field, type, required, default, constraints, description; nested objects
        flattened with dotted names, arrays as `field[]`."""
        resolved = self.resolve(self.non_null(schema or {})[0])
        required = set(resolved.get("required", []))
        rows: list[list[str]] = []
        for name, prop in resolved.get("properties", {}).items():
            inner, _ = self.non_null(prop)
            target = self.resolve(inner)
            description = prop.get("description") or target.get("description") or ""
            default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
            rows.append(
                [
                    f"`{prefix}{name}`",
                    self.type_text(prop),
                    "yes" if name in required else "no",
                    default,
                    self.constraints(prop),
                    str(description),
                ]
            )
            ref = _ref_name(inner)
            if depth >= MAX_DEPTH or (ref and ref in seen):
                continue
            marks = (*seen, ref) if ref else seen
            if target.get("properties"):
                rows += self.field_rows(target, f"{prefix}{name}.", depth + 1, marks)
            elif target.get("type") == "array":
                items, _ = self.non_null(target.get("items", {}))
                item_ref = _ref_name(items)
                if self.resolve(items).get("properties") and item_ref not in seen:
                    rows += self.field_rows(
                        items, f"{prefix}{name}[].", depth + 1, (*marks, item_ref)
                    )
        return rows

    # --- examples -------------------------------------------------------------------

    def example(
        self, schema: dict[str, Any] | None, name: str = "", owner: str = "", request: bool = False
    ) -> Any:
        """An example of `schema`; a request's leaves out the optional fields that are
        empty (null) unless given."""
        self.request = request
        return self._example(schema or {}, name, owner, 0)

    def _example(self, schema: dict[str, Any], name: str, owner: str, depth: int) -> Any:
        if "examples" in schema and isinstance(schema["examples"], list) and schema["examples"]:
            return schema["examples"][0]
        if "example" in schema:
            return schema["example"]
        if "$ref" in schema:
            ref = _ref_name(schema)
            return self._example(self.components.get(ref, {}), name, ref, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        if name in NULL_NAMES and self.non_null(schema)[1]:
            return None
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
                default = schema.get("default")
                if default is not None:
                    return default
                return self._example(branches[0], name, owner, depth)
        if "allOf" in schema:
            return self._example(schema["allOf"][0], name, owner, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind is None:
            kind = "object" if "properties" in schema else "string" if not schema else None
        if "default" in schema and schema["default"] is not None and kind != "object":
            return schema["default"]
        if kind == "object":
            if depth >= MAX_DEPTH:
                return {}
            out: dict[str, Any] = {}
            required = set(schema.get("required", []))
            for prop, sub in schema.get("properties", {}).items():
                if (
                    self.request
                    and prop not in required
                    and self.non_null(sub)[1]
                    and sub.get("default") is None
                    and "examples" not in sub
                ):
                    continue
                out[prop] = self._example(sub, prop, owner, depth + 1)
            extra = schema.get("additionalProperties")
            if not out and isinstance(extra, dict) and extra:
                out["source"] = self._example(extra, "source", owner, depth + 1)
            return out
        if kind == "array":
            if depth >= MAX_DEPTH:
                return []
            item = self._example(schema.get("items", {}), _singular(name), owner, depth + 1)
            return [item] * max(1, int(schema.get("minItems", 1)))
        if kind == "integer":
            return int(self._number(schema, 1))
        if kind == "number":
            return float(self._number(schema, 0.5))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        if kind == "string":
            return self._string(schema, name, owner)
        return {}

    @staticmethod
    def _number(schema: dict[str, Any], fallback: float) -> float:
        value = fallback
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        if "exclusiveMaximum" in schema:
            value = min(value, schema["exclusiveMaximum"] - (1 if fallback == 1 else 0.1))
        return value

    def _string(self, schema: dict[str, Any], name: str, owner: str) -> str:
        value = self._string_value(schema, name, owner)
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            value = _PATTERN_EXAMPLES.get(pattern, value)
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(value) < low:
            value += "x" * (low - len(value))
        if high is not None and len(value) > int(high):
            value = value[: int(high)]
        return value

    def _string_value(self, schema: dict[str, Any], name: str, owner: str) -> str:
        fmt = schema.get("format", "")
        by_format = {
            "date-time": EXAMPLE_TIME,
            "date": "2026-01-15",
            "time": "09:30:00Z",
            "email": "ada@example.com",
            "uri": "https://example.com/hooks/vocalis",
            "uuid": "3f2b8c1e-5d4a-4e6f-9b7c-2a1d0e9f8c7b",
            "duration": "PT30S",
            "ipv4": "192.0.2.10",
            "password": "s3cret-example",
        }
        if fmt in by_format:
            return by_format[fmt]
        if schema.get("contentMediaType") == "application/octet-stream":
            return "<binary file>"
        key = name.lower()
        if key == "id" and owner in OPENAI_IDS:
            return OPENAI_IDS[owner]
        if key in NAMED_VALUES:
            return NAMED_VALUES[key]
        if key == "id" or key.endswith("_id") or key.endswith("_ids") or key == "handoffs":
            base = key.removesuffix("_ids").removesuffix("_id").removesuffix("s")
            prefix = ID_PREFIXES.get(base) if key != "id" else _schema_prefix(owner)
            if key == "handoffs":
                prefix = "agt"
            if prefix:
                return f"{prefix}_{EXAMPLE_ID_BODY}"
        if key.endswith("_at") or key in ("created", "updated", "expires"):
            return EXAMPLE_TIME
        if "email" in key:
            return "ada@example.com"
        if key.endswith("url") or key == "endpoint":
            return "https://example.com/hooks/vocalis"
        if key in ("phone_number", "number", "to", "from", "from_number", "to_number"):
            return "+14155550123"
        if key in ("language", "lang"):
            return "en"
        if key == "model":
            lowered = owner.lower()
            if "transcription" in lowered or "translation" in lowered:
                return "whisper-1"
            if "speech" in lowered:
                return "tts-1"
            if "embedding" in lowered:
                return "text-embedding-3-small"
            return "gpt-4o-mini"
        if key == "voice":
            return "alloy"
        if key in ("name", "title"):
            return "Support agent"
        if key in ("instructions", "prompt", "content", "text", "input", "query"):
            return "How do I reset my password?"
        if key == "secret":
            return "whsec_example"
        if key == "object":
            return "list"
        return "example"


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def _schema_prefix(owner: str) -> str | None:
    for stem in sorted(SCHEMA_PREFIXES, key=len, reverse=True):
        if owner.startswith(stem):
            return SCHEMA_PREFIXES[stem]
    return None


# Example values for the patterns the schemas use where a name-based value does not fit.
_PATTERN_EXAMPLES: dict[str, str] = {
    r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$": "en-GB",
    r"^\+[1-9][0-9]{6,14}$": "+14155550123",
    r"^[A-Za-z0-9_./-]{1,200}$": "support/faq.md",
    r"^https?://[^\s/?#]+[^\s]*$": "https://example.com/hooks/vocalis",
    r"^[A-Za-z0-9_-]+$": "example_name",
    r"^agt_[A-Za-z0-9]{1,40}$": "agt_" + EXAMPLE_ID_BODY,
    r"^mpr_[A-Za-z0-9]{1,40}$": "mpr_" + EXAMPLE_ID_BODY,
    r"^mcs_[A-Za-z0-9]{1,40}$": "mcs_" + EXAMPLE_ID_BODY,
}

JSON_MEDIA = ("application/json", "application/problem+json")


def _parameter_example(schemas: Schemas, parameter: dict[str, Any]) -> Any:
    if "example" in parameter:
        return parameter["example"]
    return schemas.example(parameter.get("schema", {}), parameter["name"])


def operation_reference(document: dict[str, Any], path: str, method: str) -> Reference:
    """Everything the reference shows about one operation beyond its errors."""
    schemas = Schemas(document)
    operation = document["paths"][path][method]
    body = operation.get("requestBody", {})
    body_media = next(iter(body.get("content", {})), None)
    body_schema = body["content"][body_media].get("schema") if body_media else None
    body_example = None
    if body_media:
        given = body["content"][body_media]
        body_example = given.get("example", schemas.example(body_schema, request=True))
    successes = sorted(s for s in operation.get("responses", {}) if s.startswith("2"))
    status = successes[0] if successes else None
    response = operation["responses"][status] if status else {}
    content = response.get("content", {})
    media = list(content)
    response_schema = None
    response_example: Any = None
    if content:
        first = next((m for m in media if m in JSON_MEDIA), media[0])
        response_schema = content[first].get("schema")
        response_example = content[first].get(
            "example", schemas.example(response_schema) if first in JSON_MEDIA else None
        )
    return Reference(
        method=method,
        path=path,
        parameters=operation.get("parameters", []),
        body_media=body_media,
        body_schema=body_schema,
        body_required=bool(body.get("required")),
        body_example=body_example,
        status=status,
        response_media=media,
        response_schema=response_schema,
        response_example=response_example,
        response_description=str(response.get("description", "")),
    )


def _parameter_description(parameter: dict[str, Any]) -> str:
    text = parameter.get("description") or parameter.get("schema", {}).get("description")
    if text:
        return str(text)
    name = str(parameter["name"])
    if parameter.get("in") == "path" and name.endswith("_id"):
        return f"ID of the {name.removesuffix('_id').replace('_', ' ')}."
    return str(parameter.get("schema", {}).get("title", ""))


FIELD_HEADERS = ["Field", "Type", "Required", "Default", "Constraints", "Description"]


def render_operation(document: dict[str, Any], path: str, method: str) -> list[str]:
    """Markdown lines: Parameters, Request body and Response, each with its example."""
    from vocalis.docs_gen import _table

    schemas = Schemas(document)
    ref = operation_reference(document, path, method)
    out = ["**Parameters**\n"]
    if ref.parameters:
        rows = []
        for p in ref.parameters:
            schema = p.get("schema", {})
            default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
            rows.append(
                [
                    f"`{p['name']}`",
                    p.get("in", ""),
                    schemas.type_text(schema),
                    "yes" if p.get("required") else "no",
                    default,
                    schemas.constraints(schema),
                    _parameter_description(p),
                ]
            )
        out.append(
            _table(
                ["Name", "In", "Type", "Required", "Default", "Constraints", "Description"], rows
            )
        )
        sample = {
            p["name"]: _parameter_example(schemas, p) for p in ref.parameters if p["in"] == "path"
        }
        url = path
        for name, value in sample.items():
            url = url.replace("{" + name + "}", str(value))
        query = [
            f"{p['name']}={_parameter_example(schemas, p)}"
            for p in ref.parameters
            if p["in"] == "query" and p.get("required")
        ]
        out.append(f"Example: `{method.upper()} {url}{'?' + '&'.join(query) if query else ''}`\n")
    else:
        out.append("None.\n")
    out.append("**Request body**\n")
    if ref.body_media:
        name = _schema_label(schemas, ref.body_schema)
        required = "required" if ref.body_required else "optional"
        out.append(f"`{ref.body_media}`{name}, {required}.\n")
        rows = schemas.field_rows(ref.body_schema)
        if rows:
            out.append(_table(FIELD_HEADERS, rows))
        out.append(_example_block(ref.body_media, ref.body_example))
    else:
        out.append("None.\n")
    out.append(f"**Response** `{ref.status}`\n" if ref.status else "**Response**\n")
    if ref.response_description:
        out.append(f"{ref.response_description}\n")
    if ref.response_media:
        label = _schema_label(schemas, ref.response_schema)
        out.append(", ".join(f"`{m}`" for m in ref.response_media) + f"{label}.\n")
        rows = schemas.field_rows(ref.response_schema)
        if rows:
            out.append(_table(FIELD_HEADERS, rows))
        media = next((m for m in ref.response_media if m in JSON_MEDIA), ref.response_media[0])
        out.append(_example_block(media, ref.response_example))
    else:
        out.append("No body.\n")
    return out


def _schema_label(schemas: Schemas, schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    inner, _ = schemas.non_null(schema)
    if "$ref" in inner:
        return f" (`{_ref_name(inner)}`)"
    if inner.get("type") == "array" and "$ref" in inner.get("items", {}):
        return f" (array of `{_ref_name(inner['items'])}`)"
    return ""


def _example_block(media: str, example: Any) -> str:
    if media in JSON_MEDIA or media == "multipart/form-data":
        label = " (the form's fields)" if media == "multipart/form-data" else ""
        text = json.dumps(example, indent=2, ensure_ascii=False)
        return f"Example{label}:\n\n```json\n{text}\n```\n"
    if media.startswith("audio/"):
        return f"Example: binary audio (`{media}`).\n"
    if media == "text/event-stream":
        return "Example: `event: message.delta` / `data: {...}` lines.\n"
    return f"Example: a `{media}` document.\n"
