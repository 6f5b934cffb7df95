"""MkDocs hooks of the documentation site (`mkdocs.yml` names this file under `hooks:`).

- **Links into the repository** (`[core/ids.py](../src/vocalis/core/ids.py)`): pages read
  in the repository link to source files beside `docs/`, which the site does not contain.
  Each such link must name an existing file or folder (a warning otherwise, which fails the
  strict build); on the site it points at `extra.source_base_url` + the path when that is
  set, else it becomes its plain text.
- **Mermaid without a CDN**: when the test install put a pinned `mermaid.min.js` in the
  virtualenv (`scripts/install-docs-assets.sh`), the site ships it and the theme uses it
  instead of fetching one.

Imported by MkDocs only (the `docs` extra); nothing in the application imports it.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.plugins.vocalis")

MERMAID_URI = "assets/mermaid/mermaid.min.js"
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def mermaid_asset() -> Path | None:
    """The pinned local copy of Mermaid installed into the virtualenv, if any."""
    path = Path(sys.prefix) / "share" / "vocalis-docs" / "mermaid.min.js"
    return path if path.is_file() else None


def repository_link(
    text: str, target: str, *, page_dir: Path, docs_dir: Path, source_base_url: str
) -> str | None:
    """The replacement for a link that leaves `docs_dir`, or None when it stays inside.

    Raises FileNotFoundError when the repository path does not exist.
    """
    if _EXTERNAL.match(target) or target.startswith("#"):
        return None
    path_part = target.partition("#")[0]
    resolved = (page_dir / path_part).resolve()
    if resolved.is_relative_to(docs_dir.resolve()):
        return None
    if not resolved.exists():
        raise FileNotFoundError(str(resolved))
    repo_path = resolved.relative_to(docs_dir.resolve().parent).as_posix()
    if source_base_url:
        return f"[{text}]({source_base_url.rstrip('/')}/{repo_path})"
    return text


def rewrite_repository_links(
    markdown: str, *, page_dir: Path, docs_dir: Path, source_base_url: str, where: str
) -> str:
    """`markdown` with every link into the repository checked and rewritten."""
    out = []
    fenced = False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced or "](" not in line:
            out.append(line)
            continue

        def replace(match: re.Match[str]) -> str:
            try:
                new = repository_link(
                    match["text"],
                    match["target"],
                    page_dir=page_dir,
                    docs_dir=docs_dir,
                    source_base_url=source_base_url,
                )
            except FileNotFoundError:
                log.warning(
                    "%s links to '%s', which does not exist in the repository",
                    where,
                    match["target"],
                )
                return match["text"]
            return match[0] if new is None else new

        out.append(_LINK.sub(replace, line))
    return "".join(out)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Load the local Mermaid before the theme looks for one."""
    if mermaid_asset() is not None and MERMAID_URI not in config.extra_javascript:
        config.extra_javascript.append(MERMAID_URI)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Ship the local Mermaid with the site."""
    from mkdocs.structure.files import File

    asset = mermaid_asset()
    if asset is not None:
        files.append(File.generated(config, MERMAID_URI, abs_src_path=str(asset)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **_: Any) -> str:
    """Check and rewrite the page's links into the repository."""
    src = page.file.abs_src_path
    if src is None:
        return markdown
    return rewrite_repository_links(
        markdown,
        page_dir=Path(src).parent,
        docs_dir=Path(config.docs_dir),
        source_base_url=str(config.extra.get("source_base_url") or ""),
        where=page.file.src_uri,
    )
