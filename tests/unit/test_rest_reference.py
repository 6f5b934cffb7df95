"""The REST reference shows, for every operation, its parameters, request body and
success response as field tables with an example, and each example validates against the
operation's schema in the OpenAPI document (issue 16). A new route gets its sections from
the generator; one whose example would not validate fails here."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vocalis.app import create_app
from vocalis.docs_gen.rest import JSON_MEDIA, Schemas, operation_reference, render_operation

ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


def _operations() -> list[tuple[str, str]]:
    return [
        (path, method)
        for path, item in _document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]


def _validate(schema: dict[str, Any], instance: Any) -> None:
    """`schema` with the document's components resolvable (`#/components/schemas/...`)."""
    wrapped = {**schema, "components": _document()["components"]}
    jsonschema.Draft202012Validator(wrapped).validate(instance)


@pytest.mark.parametrize(("path", "method"), _operations())
def test_every_example_validates_against_its_schema(path: str, method: str) -> None:
    ref = operation_reference(_document(), path, method)
    schemas = Schemas(_document())
    for parameter in ref.parameters:
        example = schemas.example(parameter.get("schema", {}), parameter["name"])
        _validate(parameter.get("schema", {}), example)
    if ref.body_media:
        assert ref.body_example is not None, "the request body has no example"
        _validate(ref.body_schema or {}, ref.body_example)
    assert ref.status, "no success response"
    if any(m in JSON_MEDIA for m in ref.response_media):
        assert ref.response_example is not None, "the response has no example"
        _validate(ref.response_schema or {}, ref.response_example)


@pytest.mark.parametrize(("path", "method"), _operations())
def test_every_operation_has_its_sections(path: str, method: str) -> None:
    text = "\n".join(render_operation(_document(), path, method))
    for section in ("**Parameters**", "**Request body**", "**Response**"):
        assert section in text
    operation = _document()["paths"][path][method]
    for parameter in operation.get("parameters", []):
        assert f"| `{parameter['name']}` |" in text
    if "requestBody" in operation:
        media = next(iter(operation["requestBody"]["content"]))
        assert "Example" in text.split("**Request body**")[1].split("**Response**")[0], media
    response = text.split("**Response**")[1].split("**Errors**")[0]
    assert "Example" in response or "No body" in response


def test_the_generated_page_carries_every_operation_without_bare_ranges() -> None:
    page = (ROOT / "docs/reference/rest-api.md").read_text()
    for path, method in _operations():
        heading = f"## `{method.upper()} {path}`"
        assert heading in page
        block = page.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        assert "**Parameters**" in block and "**Response**" in block, heading
        assert not re.search(r"`[45]XX`", block), heading


def test_examples_are_realistic() -> None:
    """Ids carry their resource's prefix, times are RFC 3339, bounds are respected."""
    schemas = Schemas(_document())
    agent = schemas.example({"$ref": "#/components/schemas/AgentOut"})
    assert agent["id"].startswith("agt_")
    assert re.match(r"^\d{4}-\d\d-\d\dT", agent["created_at"])
    assert schemas.example({"type": "string", "minLength": 12}) == "example" + "x" * 5
    assert schemas.example({"type": "integer", "minimum": 5, "maximum": 9}) == 5
    assert schemas.example({"type": "string", "enum": ["b", "a"]}) == "b"
    assert schemas.example({"type": "string", "examples": ["given"]}) == "given"


def test_a_wrong_example_is_caught() -> None:
    """What the first test relies on: a value outside the schema fails validation."""
    with pytest.raises(jsonschema.ValidationError):
        _validate({"$ref": "#/components/schemas/AgentCreate"}, {"name": ""})
