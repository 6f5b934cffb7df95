"""Generated references for sections 4, 7 and 11: document collections, the exception
hierarchy and the API permission levels, each from the declarations in the code."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from vocalis.docs_gen import _table, register

_SRC = Path(__file__).resolve().parents[1]


def _source(cls: type) -> str:
    """`core/errors.py` for a class defined in `vocalis/core/errors.py`."""
    try:
        path = Path(inspect.getfile(cls)).resolve()
        return path.relative_to(_SRC).as_posix()
    except (TypeError, ValueError):
        return cls.__module__


@register("collections.md")
def document_collections() -> str:
    """Every document-store collection: fields, indexes, retention."""
    from vocalis.core.collections import COLLECTIONS

    out = [
        "# Document collections\n",
        "MongoDB in production; embedded, the `json_documents` table of the relational "
        "database (one row per document; see [database.md](database.md#json_documents)). "
        "Declared once in code with `declare_collection` (`core/collections.py`); the API "
        "creates the declared indexes at start-up, and the suite checks that the documents a "
        "real run stores carry exactly these fields "
        "(`tests/conversations/test_collections.py`).\n",
        "MongoDB prefixes every index with `org_id` (each query is confined to one "
        "organisation); the embedded table needs none beyond its primary key "
        "`(collection, org_id, id)` and `(collection, org_id, created_at)`.\n",
    ]
    for collection in sorted(COLLECTIONS.values(), key=lambda c: c.name):
        out.append(f"## `{collection.name}`\n")
        out.append(f"{collection.description} Written by `{collection.owner}`.\n")
        rows = [
            [f"`{f.name}`", f.type, "always" if f.always else "sometimes", f.description]
            for f in collection.fields
        ]
        out.append(_table(["Field", "Type", "Present", "Description"], rows))
        indexes = [
            "(" + ", ".join(f"`{k}` {'asc' if d > 0 else 'desc'}" for k, d in index) + ")"
            for index in collection.indexes
        ]
        out.append("Indexes (after `org_id`): " + "; ".join(indexes) + ".\n")
        out.append(f"Retention: {collection.retention}\n")
    return "\n".join(out)


def _meaning(cls: type) -> str:
    """The class's own docstring (first paragraph), else its own code's catalogue text."""
    from vocalis.core.errors import CATALOGUE

    own = cls.__dict__.get("__doc__") or ""
    if own.strip():
        return " ".join(inspect.cleandoc(own).split("\n\n")[0].split())
    code = cls.__dict__.get("code")
    return CATALOGUE[code].when if isinstance(code, str) and code in CATALOGUE else ""


def _tree(cls: type, prefix: str, last: bool | None, lines: list[tuple[str, type]]) -> None:
    """Box-drawing tree lines under `cls` (vocalis classes only, public ones); `last` is
    None for a root."""
    branch = "" if last is None else ("└── " if last else "├── ")
    lines.append((prefix + branch + cls.__name__, cls))
    subclasses: list[type] = type.__subclasses__(cls)
    children = sorted(
        (
            c
            for c in subclasses
            if c.__module__.startswith("vocalis.") and not c.__name__.startswith("_")
        ),
        key=lambda c: c.__name__,
    )
    inner = prefix + ("" if last is None else ("    " if last else "│   "))
    for index, child in enumerate(children):
        _tree(child, inner, index == len(children) - 1, lines)


def _tree_block(roots: list[type], label: Callable[[type], str]) -> str:
    lines: list[tuple[str, type]] = []
    for root in roots:
        _tree(root, "", None, lines)
    width = max(len(text) for text, _ in lines) + 2
    body = "\n".join(f"{text:<{width}}{label(cls)}".rstrip() for text, cls in lines)
    return "```text\n" + body + "\n```\n"


def _classes(roots: list[type]) -> list[type]:
    lines: list[tuple[str, type]] = []
    for root in roots:
        _tree(root, "", None, lines)
    return [cls for _, cls in lines]


def _vocalis_exceptions() -> list[type]:
    """Every public exception class defined in a loaded `vocalis` module."""
    found: dict[str, type] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("vocalis.") or module is None:
            continue
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = value
    return [found[k] for k in sorted(found)]


@register("exceptions.md")
def exception_hierarchy() -> str:
    """The exception hierarchy, from the classes."""
    from vocalis.core.errors import CATALOGUE, VocalisError

    def client_label(cls: type) -> str:
        code = getattr(cls, "code", "")
        entry = CATALOGUE[code]
        own = "code" in cls.__dict__ or cls is VocalisError
        return f"{entry.code} {entry.status}" if own else f"({entry.code} {entry.status})"

    # Internal signals: exceptions outside `VocalisError`, under their own roots.
    signals = [c for c in _vocalis_exceptions() if not issubclass(c, VocalisError)]
    roots = sorted(
        (c for c in signals if not any(b in signals for b in c.__mro__[1:])),
        key=lambda c: c.__name__,
    )

    def signal_label(cls: type) -> str:
        base = next(b for b in cls.__mro__[1:] if b.__module__ == "builtins")
        return f"({base.__name__})" if cls in roots else ""

    rows = [
        [f"`{cls.__name__}`", f"`{_source(cls)}`", _meaning(cls)]
        for cls in _classes([VocalisError, *roots])
    ]
    return (
        "# Exception hierarchy\n\n"
        "Generated from the classes. Every error a client sees is a `VocalisError` with a "
        "code from the [catalogue](errors.md); the handlers turn it into problem+json with "
        "the code's HTTP status. A subclass without a code of its own answers with its "
        "parent's (shown in parentheses).\n\n"
        "## Client-facing: `VocalisError`\n\n"
        + _tree_block([VocalisError], client_label)
        + "\n## Internal signals\n\n"
        "Raised and handled inside Vocalis (retries, fallbacks, adapters), shown with their "
        "built-in base; one that escapes a request is logged as `unhandled_error` and "
        "answered `500 internal_error`.\n\n"
        + _tree_block(roots, signal_label)
        + "\n## Where each is defined\n\n"
        + _table(["Class", "Defined in", "Meaning"], rows)
    )


@register("permissions.md")
def permission_levels() -> str:
    """Roles, the scopes they grant and the operations each scope opens."""
    from vocalis.app import create_app
    from vocalis.core.scopes import RANK, ROLE_SCOPES, SCOPES, Role, can_grant

    roles = sorted(Role, key=lambda r: -RANK[r])
    matrix = [
        [f"`{scope}`", what, *("yes" if scope in ROLE_SCOPES[r] else "—" for r in roles)]
        for scope, what in SCOPES.items()
    ]
    grants = [
        [f"`{r.value}`", ", ".join(f"`{o.value}`" for o in roles if can_grant(r, o))] for r in roles
    ]
    spec = create_app().openapi()
    by_scope: dict[str, list[str]] = {scope: [] for scope in SCOPES}
    public: list[str] = []
    for path, operations in sorted(spec["paths"].items()):
        for method, op in operations.items():
            scopes = [s for req in op.get("security", []) for v in req.values() for s in v]
            name = f"`{method.upper()} {path}`"
            if not scopes:
                public.append(name)
            for scope in scopes:
                by_scope[scope].append(name)
    operations = [[f"`{s}`", len(ops), ", ".join(ops)] for s, ops in by_scope.items()]
    return (
        "# Permission levels\n\n"
        "Generated from the scope registry (`core/scopes.py`) and the scope each route "
        "declares (`Scoped(...)` in its signature). A key holds its role's scopes, or a "
        "subset chosen when it is created.\n\n"
        "## Scopes by role\n\n"
        + _table(["Scope", "Grants", *(f"`{r.value}`" for r in roles)], matrix)
        + "\n## Keys a role may create\n\n"
        "A key may create keys of its own role or a lower one, never with a scope it lacks "
        "itself.\n\n"
        + _table(["Role", "May create keys of"], grants)
        + "\n## Operations by scope\n\n"
        + _table(["Scope", "Operations", "Which"], operations)
        + "\nPublic operations (no key): "
        + ", ".join(public)
        + ".\n"
    )
