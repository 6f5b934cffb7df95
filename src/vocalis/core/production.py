"""`VOCALIS_ENV=production` means it: no embedded fallback unless the operator allows it.

Every backend Vocalis needs has an embedded default so that `vocalis run` works with no
service at all. In production each of them is a trap (a SQLite file in a container, a
Redis that dies with the pod, objects and vectors on a local disk, secrets in the
environment), so a production process refuses to start while any of them is in use,
naming each, unless it is listed in `VOCALIS_PRODUCTION_ALLOWED_FALLBACKS`.
"""

from __future__ import annotations

from vocalis.settings import Settings

# name -> (what is missing, what to set)
FALLBACKS: dict[str, tuple[str, str]] = {
    "sqlite": (
        "the relational database is SQLite in the data dir",
        "set VOCALIS_DATABASE_URL to PostgreSQL",
    ),
    "embedded_redis": (
        "Redis is the embedded redis-server in the data dir",
        "set VOCALIS_REDIS_URL",
    ),
    "local_objects": (
        "objects are files on the local disk",
        "set VOCALIS_OBJECT_STORE_URL to s3://bucket",
    ),
    "local_lancedb": (
        "knowledge vectors are in LanceDB on the local disk",
        "set VOCALIS_KNOWLEDGE_VECTOR_STORE=weaviate",
    ),
    "env_secrets": (
        "secrets are read from environment variables",
        "set VOCALIS_SECRETS_BACKEND=vault",
    ),
}


class EmbeddedFallbackRefused(RuntimeError):
    """A production process would run on embedded fallbacks it was not allowed."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        lines = [f"  - {name}: {FALLBACKS[name][0]}; {FALLBACKS[name][1]}" for name in names]
        super().__init__(
            "VOCALIS_ENV=production refuses to start on embedded fallbacks:\n"
            + "\n".join(lines)
            + "\nConfigure the real backends, or allow these on purpose with "
            f"VOCALIS_PRODUCTION_ALLOWED_FALLBACKS={','.join(names)}"
        )


def embedded_fallbacks(settings: Settings) -> list[str]:
    """The embedded fallbacks these settings use, by name (see `FALLBACKS`)."""
    used = []
    if not settings.database_url or settings.database_url.startswith("sqlite"):
        used.append("sqlite")
    if not settings.redis_url:
        used.append("embedded_redis")
    if not settings.object_store_url or settings.object_store_url.startswith("file:"):
        used.append("local_objects")
    if settings.knowledge_vector_store == "lancedb":
        used.append("local_lancedb")
    if settings.secrets_backend == "env":
        used.append("env_secrets")
    return used


def allowed_fallbacks(settings: Settings) -> set[str]:
    """The fallbacks the operator allowed; an unknown name is refused (a typo would
    otherwise allow nothing, silently)."""
    names = {n.strip() for n in settings.production_allowed_fallbacks.split(",") if n.strip()}
    unknown = sorted(names - set(FALLBACKS))
    if unknown:
        raise ValueError(
            f"VOCALIS_PRODUCTION_ALLOWED_FALLBACKS names unknown fallbacks {unknown}; "
            f"known: {', '.join(FALLBACKS)}"
        )
    return names


def refuse_embedded_fallbacks(settings: Settings) -> None:
    """Raise `EmbeddedFallbackRefused` when a production process would use a fallback
    that is not allowed; nothing outside production."""
    if settings.env != "production":
        return
    allowed = allowed_fallbacks(settings)
    refused = [name for name in embedded_fallbacks(settings) if name not in allowed]
    if refused:
        raise EmbeddedFallbackRefused(refused)
