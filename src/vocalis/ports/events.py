"""Event sink port: where domain events (`conversation.*`, `handoff.requested`) go.

The composition root gives the process the transactional outbox (webhooks); tests and
embedders may record events instead.

Conversations live in the document store, which shares no transaction with the outbox.
`emit_with_change` makes a document-store change and its events one unit anyway when the
sink can hold events (`GuardedEventSink`, the outbox): the events are written first, held,
with a `Witness` that tells from the document store whether the change happened; the
change is made; the events are released (or dropped when the change did not happen). A
crash or a database error after the first write leaves held events that the outbox's
reconciler settles by looking at the witness.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

NamedEvent = tuple[str, Mapping[str, Any]]


class EventSink(Protocol):
    """Receives one named event with its payload (which carries `org_id`)."""

    async def __call__(self, name: str, payload: Mapping[str, Any]) -> None:
        """Record or forward the event; never raises for a delivery problem."""
        ...


@dataclass(frozen=True)
class Witness:
    """How the document store shows that a change happened: the document `doc_id` of the
    organisation's `collection` exists and has these field values (dotted paths)."""

    collection: str
    doc_id: str
    match: Mapping[str, Any] = field(default_factory=dict)

    def filter(self) -> dict[str, Any]:
        """The document-store filter that finds the document only after the change."""
        return {"_id": self.doc_id, **self.match}


@runtime_checkable
class GuardedEventSink(Protocol):
    """A sink that records events atomically with a change it cannot share a transaction
    with (see the module documentation)."""

    async def guarded(
        self,
        events: Sequence[NamedEvent],
        witness: Witness,
        change: Callable[[], Awaitable[bool]],
    ) -> bool:
        """Hold `events`, run `change` (True when it happened), then release or drop them;
        returns what `change` returned. Raises, without running `change`, when the events
        cannot be written."""
        ...


async def emit_with_change(
    sink: EventSink | Callable[[str, Mapping[str, Any]], Awaitable[None]],
    events: Sequence[NamedEvent],
    witness: Witness,
    change: Callable[[], Awaitable[bool]],
) -> bool:
    """Make `change` and record `events` if (and only if) it happened.

    With a guarded sink nothing can separate the two; with a plain one (a test's list) the
    events are sent after the change."""
    if isinstance(sink, GuardedEventSink):
        return await sink.guarded(events, witness, change)
    done = await change()
    if done:
        for name, payload in events:
            await sink(name, payload)
    return done
