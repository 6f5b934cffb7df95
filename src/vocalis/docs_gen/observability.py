"""Generated reference: trace spans with the attributes each one always has."""

from __future__ import annotations

from vocalis.docs_gen import _table, register


@register("spans.md")
def spans() -> str:
    """Span names, what each covers and its required attributes (checked against a run)."""
    from vocalis.core.tracing import REQUIRED_ATTRIBUTES, SPAN_ATTRIBUTES, SPAN_NAMES

    rows = [
        [
            f"`{name}`",
            what,
            ", ".join(f"`{a}`" for a in SPAN_ATTRIBUTES.get(name, ())) or "—",
            "yes" if name in SPAN_ATTRIBUTES else "—",
        ]
        # By name: modules add their spans when imported, in whatever order a process imports them.
        for name, what in sorted(SPAN_NAMES.items())
    ]
    return (
        "# Trace spans\n\n"
        "Names follow `<area>.<operation>` for Vocalis's own spans; client spans (database, "
        "Redis, outgoing HTTP) and request spans are the OpenTelemetry instrumentations' "
        "names. **Required attributes** are on every such span; the spans marked "
        "*checked* are verified against what runs emit (REST calls, a chat turn, a "
        "realtime text turn and a webhook delivery attempt, with an in-memory exporter: "
        "`tests/deploy/test_observability_truth.py`), which also fails on any span a run "
        "emits that this table does not name.\n\n"
        + _table(["Span", "Covers", "Required attributes", "Checked"], rows)
        + "\nInside a conversation's turn every Vocalis span, and every client span under it, "
        "also carries "
        + ", ".join(f"`{a}`" for a in REQUIRED_ATTRIBUTES)
        + " (client spans inherit them from their parent); spans outside a conversation "
        "(ingestion, webhook delivery, a request before it is authenticated) carry those of "
        "them that are known.\n"
    )
