"""The prose documentation follows the template, and everything it points at exists.

- Every section of the technical-documentation template (1-13 and the numbered subsections)
  is a heading in `docs/*.md`, exactly once, each subsection in its section's file.
- Every relative link in `docs/*.md` resolves to a file or folder of the repository, and a
  `#fragment` on a Markdown link names a heading of that file.
- `docs/README.md` links every generated reference file.
- Every metric and `VOCALIS_*` variable the prose names exists in the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import vocalis.core.metrics  # noqa: F401  (declares every metric in REGISTRY)
from vocalis.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"

# (number, title) as the template names them; top-level sections are `# N. Title`,
# subsections `## N.M Title`.
TEMPLATE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("1", "Introduction"),
    ("2", "System Architecture Summary"),
    ("3", "API Documentation"),
    ("3.1", "REST Endpoints"),
    ("3.2", "WebSocket Endpoints"),
    ("3.3", "Webhooks"),
    ("4", "Data Models"),
    ("4.1", "Database Models (Postgres + MongoDB)"),
    ("4.2", "Redis Structures"),
    ("4.3", "S3 Object Structures"),
    ("4.4", "Vector DB (Weaviate)"),
    ("5", "Internal Components"),
    ("5.1", "Services"),
    ("5.2", "Workers"),
    ("5.3", "Agents (CrewAI/OpenAI/LangGraph)"),
    ("6", "Configurations"),
    ("6.1", "Environment Variables"),
    ("6.2", "Vault Secrets"),
    ("6.3", "Feature Flags"),
    ("7", "Error Handling"),
    ("8", "Logging & Metrics"),
    ("8.1", "Logging"),
    ("8.2", "Metrics"),
    ("8.3", "Tracing"),
    ("9", "DevOps & Deployment"),
    ("10", "Local Development Setup"),
    ("11", "Security Considerations"),
    ("12", "Known Issues & Limitations"),
    ("13", "Future Technical Enhancements"),
)

# Names in the prose that are not settings: the shell variable `vocalis run` prints and the
# test suite's own variables. `VOCALIS_SECRET_*` names are secret paths, not settings.
# Variables the docs name that are not settings: the CLI's key, the test suite's switches.
NOT_SETTINGS = frozenset(
    {
        "VOCALIS_API_KEY",
        "VOCALIS_TEST_PG_DSN",
        "VOCALIS_TEST_REDIS_URL",
        "VOCALIS_SCHEMATHESIS_LONG",
        "VOCALIS_DOCS_SOURCE_URL",
    }
)
SECRET_ENV_PREFIX = "VOCALIS_SECRET_"

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_METRIC_SPAN = re.compile(r"`(vocalis_[a-z0-9_]+)(?:\{[^`]*\})?`")
_SETTING = re.compile(r"\bVOCALIS_[A-Z0-9_]*\*?")


def prose_files() -> list[Path]:
    """The section pages and the index (not the generated reference)."""
    return sorted(DOCS.glob("*.md"))


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks."""
    found = []
    for _, line in prose_lines(path):
        match = _HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub generates for a Markdown file (duplicates get `-1`, `-2`…)."""
    seen: dict[str, int] = {}
    result = set()
    for _, text in headings(path):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def expected_heading(number: str, title: str) -> tuple[int, str]:
    """The heading a template section must have: `# N. Title` or `## N.M Title`."""
    return (1, f"{number}. {title}") if "." not in number else (2, f"{number} {title}")


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code."""
    for number, line in prose_lines(path):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            yield number, match.group(1)


def _all_prose() -> str:
    return "\n".join(line for path in prose_files() for _, line in prose_lines(path))


# --- template sections ------------------------------------------------------------------
def test_the_docs_folder_has_one_page_per_template_section_and_an_index() -> None:
    top_level = [n for n, _ in TEMPLATE_SECTIONS if "." not in n]
    pages = [p.name for p in prose_files() if p.name != "README.md"]
    assert (DOCS / "README.md").is_file()
    assert len(pages) == len(top_level), pages


@pytest.mark.parametrize(
    ("number", "title"), TEMPLATE_SECTIONS, ids=[n for n, _ in TEMPLATE_SECTIONS]
)
def test_template_section_has_exactly_one_heading(number: str, title: str) -> None:
    wanted = expected_heading(number, title)
    where = [path.name for path in prose_files() for h in headings(path) if h == wanted]
    assert len(where) == 1, f"heading {'#' * wanted[0]} {wanted[1]!r} found in {where or 'no file'}"


@pytest.mark.parametrize(
    ("number", "title"),
    [s for s in TEMPLATE_SECTIONS if "." in s[0]],
    ids=[n for n, _ in TEMPLATE_SECTIONS if "." in n],
)
def test_subsection_sits_in_its_sections_page(number: str, title: str) -> None:
    parent_number = number.split(".")[0]
    parent_title = dict(TEMPLATE_SECTIONS)[parent_number]
    parent = expected_heading(parent_number, parent_title)
    pages = [p for p in prose_files() if parent in headings(p)]
    assert pages, f"no page has section {parent_number}"
    assert expected_heading(number, title) in headings(pages[0])


# --- links ------------------------------------------------------------------------------
def _broken_links() -> list[str]:
    broken = []
    for path in prose_files():
        own_anchors = anchors(path)
        for line, target in links(path):
            if _EXTERNAL.match(target):
                continue
            file_part, _, fragment = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.name}:{line}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif fragment and resolved.suffix == ".md":
                targets = own_anchors if resolved == path else anchors(resolved)
                if fragment not in targets:
                    broken.append(f"{where} (no heading #{fragment})")
    return broken


def test_every_relative_link_points_at_an_existing_file_and_heading() -> None:
    assert _broken_links() == []


def test_the_link_check_notices_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See [gone](missing.md) and [here](#nowhere).\n\n## Real heading\n")
    found = list(links(page))
    assert found == [(1, "missing.md"), (1, "#nowhere")]
    assert not (tmp_path / "missing.md").exists()
    assert "nowhere" not in anchors(page)
    assert "real-heading" in anchors(page)


def test_links_inside_code_are_not_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("`[a](b.md)`\n\n```\n[c](d.md)\n```\n[e](f.md)\n")
    assert [t for _, t in links(page)] == ["f.md"]


def test_heading_anchors_follow_githubs_rules() -> None:
    assert slug("3.1 REST Endpoints") == "31-rest-endpoints"
    assert slug("Errors: `application/problem+json`") == "errors-applicationproblemjson"
    assert slug("Backends: ports and adapters") == "backends-ports-and-adapters"


def test_the_index_links_every_generated_reference_file() -> None:
    linked = {target.partition("#")[0] for _, target in links(DOCS / "README.md")}
    missing = [
        f"reference/{p.name}"
        for p in sorted((DOCS / "reference").glob("*.md"))
        if f"reference/{p.name}" not in linked
    ]
    assert missing == [], "add these to the table in docs/README.md"


def test_the_index_links_every_section_page() -> None:
    linked = {target.partition("#")[0] for _, target in links(DOCS / "README.md")}
    pages = [p.name for p in prose_files() if p.name != "README.md"]
    assert [p for p in pages if p not in linked] == []


# --- names the prose uses ---------------------------------------------------------------
def _registered_metrics() -> set[str]:
    names = set()
    for collector in list(REGISTRY._collector_to_names):
        describe = getattr(collector, "describe", None)
        for metric in describe() if describe else []:
            suffix = "_total" if metric.type == "counter" else ""
            names.add(metric.name + suffix)
    return names


def test_every_metric_named_in_the_prose_is_registered() -> None:
    named = set(_METRIC_SPAN.findall(_all_prose()))
    assert named, "the prose should name metrics"
    assert sorted(named - _registered_metrics()) == []


def test_every_vocalis_variable_named_in_the_prose_is_a_setting() -> None:
    settings = {f"VOCALIS_{name.upper()}" for name in Settings.model_fields}
    unknown = []
    for name in sorted(set(_SETTING.findall(_all_prose()))):
        if name in NOT_SETTINGS or name.startswith(SECRET_ENV_PREFIX):
            continue
        if name.endswith(("*", "_")):  # a prefix: `VOCALIS_TASK_*`, "the prefix `VOCALIS_`"
            if not any(s.startswith(name.rstrip("*")) for s in settings):
                unknown.append(name)
        elif name not in settings:
            unknown.append(name)
    assert unknown == []
