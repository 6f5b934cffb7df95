"""`vocalis doctor`: check every configured backend and explain failures in plain words."""

from __future__ import annotations

from collections.abc import Callable

from vocalis.core.production import EmbeddedFallbackRefused, refuse_embedded_fallbacks
from vocalis.settings import Settings

HINTS: dict[str, str] = {
    "database": "Check VOCALIS_DATABASE_URL (driver prefix postgresql+asyncpg:// or "
    "sqlite+aiosqlite://), that the server runs and that migrations ran (`vocalis migrate`).",
    "redis": "Check VOCALIS_REDIS_URL and that Redis answers PING; leave it empty for the "
    "embedded server.",
    "documents": "Check VOCALIS_DOCUMENT_STORE_URL (mongodb://…) or leave it empty for the "
    "embedded JSON table.",
    "objects": "Check VOCALIS_OBJECT_STORE_URL, VOCALIS_S3_ENDPOINT_URL and the S3 credentials "
    "(secrets s3/access_key_id, s3/secret_access_key), and that the bucket exists.",
    "secrets": "Check the secrets backend settings and that its token is valid.",
}


async def diagnose(settings: Settings, echo: Callable[[str], object] = print) -> list[str]:
    """Print one line per backend; return the names of those that failed."""
    from vocalis.wiring import build_backends

    refused = []
    try:  # what `vocalis serve` would refuse in production
        refuse_embedded_fallbacks(settings)
    except (EmbeddedFallbackRefused, ValueError) as exc:
        refused.append("production")
        echo(f"FAIL production: {exc}")
    try:
        backends = await build_backends(settings)
    except Exception as exc:  # report, never crash: this is a diagnostic tool
        echo(f"FAIL configuration: {type(exc).__name__}: {exc}")
        return [*refused, "configuration"]
    try:
        results = await backends.readiness(timeout=5.0)
        adapters = backends.describe()
    finally:
        await backends.close()
    failing = []
    for name, result in results.items():
        if result == "ok":
            echo(f"ok   {name:<10} ({adapters.get(name)})")
        else:
            failing.append(name)
            echo(f"FAIL {name:<10} ({adapters.get(name)}): {result}")
            echo(f"     hint: {HINTS.get(name, '')}")
    failing = refused + failing
    echo("all backends answer" if not failing else f"{len(failing)} backend(s) failing")
    return failing
