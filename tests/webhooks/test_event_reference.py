"""The webhook event reference (`docs/reference/webhook-events.md`) is true: every event
type has a trigger, a realistic example that validates against its model and JSON schema
(as the outbox validates what it records), and names the modules that record it, each of
which really names the event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vocalis.events import registry
from vocalis.events.examples import EXAMPLES
from vocalis.events.registry import EVENTS, EventType, envelope

SRC = Path(__file__).resolve().parents[2] / "src"


def test_every_event_type_has_an_example_and_a_trigger() -> None:
    assert set(EXAMPLES) == set(EVENTS)
    for name, spec in EVENTS.items():
        assert spec.trigger, name
        assert spec.emitted_by, name


@pytest.mark.parametrize(("name", "spec"), list(EVENTS.items()), ids=list(EVENTS))
def test_each_example_validates_against_its_schema(name: str, spec: EventType) -> None:
    example: dict[str, Any] = EXAMPLES[name]
    schema = spec.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(example, schema, cls=jsonschema.Draft202012Validator)
    assert spec.validate(example)  # what `record_event` runs
    # Every documented field is shown (optional ones too): nothing in the table is unseen.
    assert set(schema["properties"]) <= set(example), set(schema["properties"]) - set(example)
    # The envelope is JSON as delivered.
    assert envelope(name, datetime.now(UTC), example)["data"] == example


@pytest.mark.parametrize(("name", "spec"), list(EVENTS.items()), ids=list(EVENTS))
def test_each_event_is_recorded_where_the_reference_says(name: str, spec: EventType) -> None:
    constant = next(k for k, v in vars(registry).items() if v is spec)
    for module in spec.emitted_by:
        text = (SRC / module).read_text()
        assert f'"{name}"' in text or f"{constant}." in text or f"{constant}," in text, (
            name,
            module,
        )


def test_a_wrong_example_is_caught() -> None:
    broken = dict(EXAMPLES["document.ready"], chunk_count="many")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, EVENTS["document.ready"].schema())
