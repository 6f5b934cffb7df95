"""The architecture diagrams are drawn from the real import graph."""

from __future__ import annotations

import ast

from vocalis.architecture_docs import _imported, architecture, import_graph, package_graph


def imports_of(
    source: str, module: str = "vocalis.voice.pipeline", package: bool = False
) -> set[str]:
    return _imported(ast.parse(source), module, package)


def test_imports_inside_functions_count() -> None:
    source = "def f():\n    from vocalis.realtime import protocol\n"
    assert "vocalis.realtime.protocol" in imports_of(source)


def test_relative_imports_resolve_against_the_module() -> None:
    assert "vocalis.voice.frames" in imports_of("from .frames import Frame")
    assert "vocalis.ports.stt" in imports_of("from ..ports import stt")


def test_relative_imports_in_a_package_init_resolve_against_the_package() -> None:
    found = imports_of("from .frames import Frame", module="vocalis.voice", package=True)
    assert "vocalis.voice.frames" in found


def test_third_party_imports_are_ignored() -> None:
    assert imports_of("import numpy\nfrom fastapi import FastAPI") == set()


def test_the_package_graph_knows_that_adapters_implement_ports() -> None:
    packages = package_graph(import_graph())
    assert "ports" in packages["adapters"]
    assert "adapters" not in packages["ports"]


def test_the_reference_has_both_diagrams() -> None:
    text = architecture()
    assert text.count("```mermaid") == 2
    assert "voice.pipeline" in text
