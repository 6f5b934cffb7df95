"""Architecture diagrams drawn from the import graph, so they cannot drift from the code.

`docs/reference/architecture.md` shows which top-level packages depend on which (the layers
the import contract enforces) and, module by module, the voice path from the transports
through the transport-neutral conversation to the engines' ports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from vocalis.docs_gen import register

PACKAGE = "vocalis"
ROOT = Path(__file__).resolve().parent
# Modules drawn in the voice-path diagram: their package prefixes.
VOICE_PATH = ("realtime", "transports", "telephony", "voice", "ports.speech", "ports.stt")
VOICE_PATH_PORTS = ("ports.stt", "ports.tts", "ports.vad", "ports.speech")


def module_name(path: Path) -> str:
    """`vocalis.voice.pipeline` for `.../vocalis/voice/pipeline.py`."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _imported(tree: ast.AST, current: str, is_package: bool) -> set[str]:
    """Every `vocalis.*` module a module imports, at any depth (in-function imports too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = current.split(".") if is_package else current.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base == PACKAGE or base.startswith(PACKAGE + "."):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (names that are not modules dropped)."""
    sources = {module_name(p): p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = _imported(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package -> the top-level packages it imports."""
    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        deps = packages.setdefault(_top(source), set())
        deps.update(_top(t) for t in targets if _top(t) != _top(source))
    return packages


def _node(name: str) -> str:
    return name.replace(".", "_")


def _mermaid(edges: Iterable[tuple[str, str]], nodes: Iterable[str]) -> str:
    lines = ["```mermaid", "flowchart LR"]
    lines += [f'  {_node(n)}["{n}"]' for n in sorted(set(nodes))]
    lines += [f"  {_node(a)} --> {_node(b)}" for a, b in sorted(set(edges))]
    return "\n".join(lines) + "\n```\n"


def _in_voice_path(module: str) -> bool:
    relative = module.removeprefix(PACKAGE + ".")
    return any(relative == p or relative.startswith(p + ".") for p in VOICE_PATH + VOICE_PATH_PORTS)


def voice_path(graph: dict[str, set[str]]) -> str:
    """The modules of the voice path and their imports among themselves."""
    modules = {m for m in graph if _in_voice_path(m) and not m.endswith(("docs", "__init__"))}
    short = {m: m.removeprefix(PACKAGE + ".") for m in modules}
    edges = [(short[a], short[b]) for a in modules for b in graph[a] if b in modules]
    return _mermaid(edges, short.values())


@register("architecture.md")
def architecture() -> str:
    """Package layers and the voice path, from the import graph."""
    graph = import_graph()
    packages = package_graph(graph)
    edges = [(a, b) for a, deps in packages.items() for b in deps]
    rows = "\n".join(
        f"| `{name}` | {', '.join(f'`{d}`' for d in sorted(deps)) or '(nothing)'} |"
        for name, deps in sorted(packages.items())
    )
    return (
        "# Architecture, from the import graph\n\n"
        "Drawn by `vocalis docs` from every `import` in `src/vocalis` (in-function imports "
        "included); the layer contract (`lint-imports`, run by `make test`) keeps it honest.\n\n"
        "## Packages and what they import\n\n"
        + _mermaid(edges, packages)
        + "\n| Package | Imports |\n|---|---|\n"
        + rows
        + "\n\n## The voice path, module by module\n\n"
        "Transports (`realtime`, `transports`, later `telephony`) translate wire messages to "
        "frames; `voice` is the transport-neutral conversation and its pipeline; the engines "
        "sit behind the speech ports.\n\n" + voice_path(graph)
    )
