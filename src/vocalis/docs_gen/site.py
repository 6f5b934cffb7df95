"""The documentation site: `docs/` built by MkDocs (Material theme) with strict checking.

`vocalis docs --site DIR` builds it; `vocalis docs --serve` builds it into the data
directory and serves it on http://127.0.0.1:8001/. Every broken link or anchor is a
warning, and a warning fails the build (`strict: true` in `mkdocs.yml`). MkDocs is in the
`docs` extra (`pip install 'vocalis[docs]'`; the test install has it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INSTALL_HINT = "pip install 'vocalis[docs]'"


class SiteBuildFailed(RuntimeError):
    """The site did not build; the message lists every warning the strict build counted."""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collected_warnings() -> Iterator[_Collect]:
    handler = _Collect()
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def build_site(site_dir: Path, config_file: Path = Path("mkdocs.yml")) -> list[str]:
    """Build the site into `site_dir` with strict checking; returns the pages written.

    Raises SiteBuildFailed with every warning (broken link, missing anchor, …) otherwise.
    """
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # the theme's banner, not a warning
    try:
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
        from mkdocs.exceptions import MkDocsException
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SiteBuildFailed(f"MkDocs is not installed: {INSTALL_HINT}") from exc
    if not config_file.is_file():
        raise SiteBuildFailed(f"no {config_file} here: run from the repository root")
    with _collected_warnings() as warnings:
        try:
            config = load_config(str(config_file), strict=True, site_dir=str(site_dir))
            build(config)
        except MkDocsException as exc:
            raise SiteBuildFailed("\n".join([*warnings.messages, str(exc)])) from exc
    if warnings.messages:  # strict mode aborts on these; belt and braces
        raise SiteBuildFailed("\n".join(warnings.messages))
    return sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html"))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log line per file."""


def site_server(
    site_dir: Path, *, host: str = "127.0.0.1", port: int = 8001
) -> ThreadingHTTPServer:
    """An HTTP server for the built site (not yet serving)."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    return ThreadingHTTPServer((host, port), handler)


def serve_site(site_dir: Path, *, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the built site until interrupted."""
    with (
        site_server(site_dir, host=host, port=port) as server,
        contextlib.suppress(KeyboardInterrupt),
    ):
        server.serve_forever()
