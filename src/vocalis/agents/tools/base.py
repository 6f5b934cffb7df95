"""What a tool is, the registry of tool kinds, and the toolbox an agent runs with.

An agent's configuration lists tools as dicts with a `type` (the kind) and the kind's
options; `build_toolbox` turns them into `Tool`s. The toolbox validates each call's
arguments against the tool's JSON schema before running it, and turns every failure into
an error result the model can read — a tool never breaks the turn.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from vocalis.core.errors import ValidationFailed
from vocalis.core.ssrf import Allowlist, Resolver
from vocalis.ports.llm import ToolCall, ToolSpec
from vocalis.ports.retriever import NullRetriever, Passage, Retriever
from vocalis.ports.secrets import SecretProvider

# Called with an event name (e.g. `handoff.requested`) and its payload.
EventSink = Callable[[str, Mapping[str, Any]], Awaitable[None]]

BUILTIN_KIND_MODULES = (
    "vocalis.agents.tools.search_knowledge",
    "vocalis.agents.tools.transfer_to_human",
    "vocalis.agents.tools.end_conversation",
    "vocalis.agents.tools.http_request",
)
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-compatible APIs accept


class ToolConfigError(ValidationFailed):
    """An agent's tool configuration is invalid."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use while it runs: whose conversation, and the ports."""

    org_id: str
    agent_id: str
    conversation_id: str
    knowledge_base_ids: tuple[str, ...] = ()
    retriever: Retriever = field(default_factory=NullRetriever)
    secrets: SecretProvider | None = None
    outbound_allowlist: Allowlist = field(default_factory=Allowlist)
    resolver: Resolver | None = None  # DNS for the SSRF guard; None = the system's


@dataclass(frozen=True)
class ToolResult:
    """What a tool returns: text for the model, data for the transcript, and effects."""

    content: str
    data: Mapping[str, Any] = field(default_factory=dict)
    passages: tuple[Passage, ...] = ()  # citable passages (search_knowledge)
    is_error: bool = False
    handoff: bool = False  # the conversation goes to a person
    end_conversation: bool = False  # the conversation is over

    @property
    def terminal(self) -> bool:
        """Whether the turn ends after this tool (no further generation)."""
        return self.handoff or self.end_conversation


@runtime_checkable
class Tool(Protocol):
    """A callable capability offered to the model."""

    @property
    def kind(self) -> str:
        """The registered kind this tool was built from."""
        ...

    @property
    def spec(self) -> ToolSpec:
        """Name, description and argument schema shown to the model."""
        ...

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Run with validated arguments."""
        ...


ToolFactory = Callable[[Mapping[str, Any]], Tool]


@dataclass(frozen=True)
class ToolKind:
    """A kind of tool an agent may configure."""

    kind: str
    description: str
    factory: ToolFactory


TOOL_KINDS: dict[str, ToolKind] = {}


def register_tool_kind(kind: str, description: str) -> Callable[[ToolFactory], ToolFactory]:
    """Register a factory building tools of `kind` from their configuration."""

    def decorate(factory: ToolFactory) -> ToolFactory:
        if kind in TOOL_KINDS:
            raise ValueError(f"tool kind {kind!r} registered twice")
        TOOL_KINDS[kind] = ToolKind(kind, description, factory)
        return factory

    return decorate


def load_builtin_kinds() -> dict[str, ToolKind]:
    """Import the built-in tool modules (which register themselves); returns the registry."""
    for module in BUILTIN_KIND_MODULES:
        importlib.import_module(module)
    return TOOL_KINDS


def build_tool(config: Mapping[str, Any]) -> Tool:
    """One tool from its configuration `{"type": kind, ...options}`."""
    kinds = load_builtin_kinds()
    kind = config.get("type")
    if kind not in kinds:
        raise ToolConfigError(f"unknown tool type {kind!r}; known: {sorted(kinds)}")
    tool = kinds[str(kind)].factory(config)
    if not TOOL_NAME.match(tool.spec.name):
        raise ToolConfigError(f"tool name {tool.spec.name!r} must match {TOOL_NAME.pattern}")
    try:
        Draft202012Validator.check_schema(tool.spec.parameters)
    except SchemaError as exc:
        raise ToolConfigError(f"tool {tool.spec.name!r}: invalid schema: {exc.message}") from None
    return tool


class Toolbox:
    """The tools of one agent, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.spec.name in self.tools:
                raise ToolConfigError(f"two tools are named {tool.spec.name!r}")
            self.tools[tool.spec.name] = tool

    def specs(self) -> list[ToolSpec]:
        """The specs to bind to the model."""
        return [t.spec for t in self.tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    async def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Run one call; unknown tools, bad arguments and failures become error results."""
        tool = self.tools.get(call.name)
        if tool is None:
            return error_result(f"there is no tool named {call.name!r}")
        try:
            arguments = call.parsed_arguments()
        except ValueError as exc:
            return error_result(f"arguments are not a JSON object: {exc}")
        problems = sorted(
            Draft202012Validator(tool.spec.parameters).iter_errors(arguments), key=str
        )
        if problems:
            return error_result(
                "invalid arguments: " + "; ".join(_describe(p) for p in problems[:5])
            )
        try:
            return await tool.run(arguments, ctx)
        except Exception as exc:
            # Why: a failing tool must not end the turn; the model is told and can recover.
            return error_result(f"{call.name} failed: {exc}")


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def error_result(message: str) -> ToolResult:
    """A result telling the model that the call did not work."""
    return ToolResult(
        content=json.dumps({"error": message}), data={"error": message}, is_error=True
    )


def build_toolbox(configs: Sequence[Mapping[str, Any]]) -> Toolbox:
    """The toolbox for an agent's tool configurations."""
    return Toolbox(build_tool(c) for c in configs)


def option(config: Mapping[str, Any], key: str, default: Any) -> Any:
    """A configuration option, or its default when missing or null."""
    value = config.get(key)
    return default if value is None else value
