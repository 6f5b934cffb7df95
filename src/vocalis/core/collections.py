"""The one registry of document-store collections: fields, indexes and retention.

A domain declares each collection it owns once with `declare_collection` and creates the
declared indexes from it at start-up; `vocalis docs` generates
`docs/reference/collections.md` from the declarations, and the tests check that the
documents a real run stores carry exactly the declared fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DocField:
    """One top-level field of a collection's documents."""

    name: str
    type: str
    description: str
    always: bool = True  # on every document; False: only when the description says


@dataclass(frozen=True)
class Collection:
    """A document-store collection as declared by the domain that owns it."""

    name: str
    description: str
    owner: str  # the module that writes it
    fields: tuple[DocField, ...]
    indexes: tuple[tuple[tuple[str, int], ...], ...]
    retention: str

    @property
    def field_names(self) -> frozenset[str]:
        """Every declared top-level field name (including the store's `org_id`)."""
        return frozenset(f.name for f in self.fields)

    @property
    def required(self) -> frozenset[str]:
        """The fields every document carries."""
        return frozenset(f.name for f in self.fields if f.always)

    def index_specs(self) -> list[list[tuple[str, int]]]:
        """The indexes in the form `DocumentStore.ensure_indexes` takes."""
        return [list(index) for index in self.indexes]


COLLECTIONS: dict[str, Collection] = {}

# Added by every document store to every document: tenants never share a document.
ORG_ID = DocField("org_id", "string", "The owning organisation (added by the store).")


def declare_collection(
    name: str,
    *,
    description: str,
    owner: str,
    fields: Sequence[DocField],
    indexes: Sequence[Sequence[tuple[str, int]]],
    retention: str,
) -> Collection:
    """Declare a collection once."""
    if name in COLLECTIONS:
        raise ValueError(f"collection {name!r} declared twice")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"collection {name!r} declares a field twice")
    all_fields = (ORG_ID, *fields) if "org_id" not in names else tuple(fields)
    declared = {f.name for f in all_fields}
    for index in indexes:
        unknown = [key for key, _ in index if key.split(".")[0] not in declared]
        if unknown:
            raise ValueError(f"collection {name!r}: index on undeclared fields {unknown}")
    COLLECTIONS[name] = Collection(
        name=name,
        description=description,
        owner=owner,
        fields=all_fields,
        indexes=tuple(tuple(index) for index in indexes),
        retention=retention,
    )
    return COLLECTIONS[name]
