"""The documentation site: MkDocs (Material) builds `docs/` offline with strict checking.

- The real `mkdocs.yml` builds with no warning: every link and anchor resolves, every link
  into the repository (`../src/...`) names an existing file; a broken one fails the build.
- Navigation follows the template's 13 sections and lists every page; search is built.
- Diagrams are Mermaid: each one parses with the site's own (local, pinned) Mermaid, and a
  browser renders every diagram while nothing is fetched from another host.
- `vocalis docs --site` / `--serve` build and serve it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vocalis.cli import app as cli
from vocalis.docs_gen.site import SiteBuildFailed, build_site, site_server
from vocalis.docs_gen.site_hooks import MERMAID_URI, mermaid_asset, rewrite_repository_links

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"
CHROMIUM = "/usr/bin/chromium"
TEMPLATE_TITLES = (
    "Introduction",
    "System Architecture",
    "API Documentation",
    "Data Models",
    "Internal Components",
    "Configurations",
    "Error Handling",
    "Logging & Metrics",
    "DevOps & Deployment",
    "Local Development Setup",
    "Security Considerations",
    "Known Issues & Limitations",
    "Future Technical Enhancements",
)
_MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    try:
        build_site(out, CONFIG)
    except SiteBuildFailed as exc:
        pytest.fail(f"the documentation site does not build strictly:\n{exc}")
    return out


def _nav() -> list[Any]:
    from mkdocs.config import load_config

    nav = load_config(str(CONFIG)).nav
    assert isinstance(nav, list)
    return nav


def _nav_files(entries: list[Any]) -> list[str]:
    files: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def diagrams() -> list[tuple[str, str]]:
    """(page, Mermaid source) of every diagram in the documentation."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        for match in _MERMAID_BLOCK.finditer(path.read_text(encoding="utf-8")):
            found.append((path.relative_to(DOCS).as_posix(), match.group(1)))
    return found


# --- the build ----------------------------------------------------------------------------
def test_the_site_builds_strictly_with_a_page_for_every_markdown_file(site: Path) -> None:
    pages = {p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.md")}
    pages = {"index.html" if p == "README.html" else p for p in pages}
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert pages - built == set()


def test_navigation_follows_the_templates_13_sections_and_lists_every_page() -> None:
    nav = _nav()
    sections = [next(iter(e)) for e in nav if isinstance(e, dict)][1:]  # after Home
    assert sections == [f"{n}. {t}" for n, t in enumerate(TEMPLATE_TITLES, start=1)]
    listed = _nav_files(nav)
    markdown = sorted(
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if not p.relative_to(DOCS).as_posix().startswith("screenshots/")
    )
    assert sorted(set(listed)) == markdown, "add the page to `nav` in mkdocs.yml"
    assert len(listed) == len(set(listed))


def test_search_is_built_over_every_page(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text())
    locations = {doc["location"].partition("#")[0] for doc in index["docs"]}
    assert {"03-api.html", "reference/rest-api.html", "reference/errors.html"} <= locations


def test_the_site_ships_its_own_mermaid_and_no_web_fonts(site: Path) -> None:
    assert mermaid_asset() is not None, "run scripts/install-docs-assets.sh (make test does)"
    assert (site / MERMAID_URI).is_file()
    page = (site / "02-architecture.html").read_text()
    assert MERMAID_URI in page
    assert '<pre class="mermaid">' in page
    assert "fonts.googleapis.com" not in page


@pytest.mark.parametrize(
    "page",
    [
        "02-architecture.md",  # the architecture
        "reference/agent-graph.md",  # the agent graphs
        "reference/agent-runtimes.md",
        "05-internal-components.md",  # the voice pipeline and the event flow
    ],
)
def test_the_named_diagrams_exist(page: str) -> None:
    assert page in {p for p, _ in diagrams()}


def test_the_voice_pipeline_and_event_flow_are_drawn() -> None:
    sources = [src for page, src in diagrams() if page == "05-internal-components.md"]
    assert any("STT" in s and "TTS" in s and "VAD" in s for s in sources)
    assert any("outbox_events" in s and "dispatch_event" in s for s in sources)


# --- strictness -----------------------------------------------------------------------------
def _broken_project(tmp_path: Path, page: str) -> Path:
    """A one-page site inheriting the real configuration."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("# Home\n\n## Real heading\n")
    (tmp_path / "docs" / "page.md").write_text(page)
    (tmp_path / "exists.txt").write_text("x")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {CONFIG}\ndocs_dir: docs\n"
        f"hooks: [{ROOT / 'src/vocalis/docs_gen/site_hooks.py'}]\n"
        "nav: [README.md, page.md]\n"
    )
    return config


@pytest.mark.parametrize(
    ("link", "complaint"),
    [
        ("[a](README.md#no-such-heading)", "does not contain an anchor '#no-such-heading'"),
        ("[a](missing.md)", "target is not found"),
        ("[a](../no/such/file.py)", "does not exist in the repository"),
    ],
)
def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path, link: str, complaint: str) -> None:
    config = _broken_project(tmp_path, f"# Page\n\nSee {link}; [fine](README.md#real-heading).\n")
    with pytest.raises(SiteBuildFailed) as failed:
        build_site(tmp_path / "site", config)
    assert complaint in str(failed.value)


def test_links_into_the_repository_become_text_or_source_links(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "code.py").write_text("")
    page = "[`code.py`](../code.py) and [here](#x)\n```\n[kept](../nope.py)\n```\n"
    plain = rewrite_repository_links(
        page, page_dir=docs, docs_dir=docs, source_base_url="", where="p"
    )
    assert plain == "`code.py` and [here](#x)\n```\n[kept](../nope.py)\n```\n"
    linked = rewrite_repository_links(
        page, page_dir=docs, docs_dir=docs, source_base_url="https://git.test/blob/main/", where="p"
    )
    assert linked.startswith("[`code.py`](https://git.test/blob/main/code.py) and")


# --- serving and rendering ------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The site as `vocalis docs --serve` serves it."""
    server = site_server(site, port=0)  # a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_the_served_site_renders_every_diagram_without_fetching_elsewhere(
    served: str,
) -> None:
    from playwright.async_api import Request, async_playwright

    assert Path(CHROMIUM).exists(), "run scripts/install-test-extras.sh"  # noqa: ASYNC240
    outside: list[str] = []
    errors: list[str] = []
    pages = sorted({page for page, _ in diagrams()})
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()

            def track(request: Request) -> None:
                if not request.url.startswith((served, "data:", "blob:")):
                    outside.append(request.url)

            page.on("request", track)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{served}/index.html")
            # Every diagram parses with the site's own Mermaid.
            for name, source in diagrams():
                ok = await page.evaluate(
                    "async (src) => { try { await mermaid.parse(src); return ''; }"
                    " catch (e) { return String(e.message || e); } }",
                    source,
                )
                assert ok == "", f"{name}: {ok}"
            # And the theme renders every one of them on its page.
            for name in pages:
                html_name = name.removesuffix(".md") + ".html"
                await page.goto(f"{served}/{html_name}")
                wanted = sum(1 for p, _ in diagrams() if p == name)
                await page.wait_for_function(
                    "(n) => document.querySelectorAll('pre.mermaid').length === 0"
                    " && document.querySelectorAll('div.mermaid').length === n",
                    arg=wanted,
                    timeout=30_000,
                )
        finally:
            await browser.close()
    assert outside == []
    assert errors == []


def test_vocalis_docs_site_builds_the_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["docs", "--site", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "index.html").is_file()
