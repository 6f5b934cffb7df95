"""Client-side function tools: declared by the caller, called by the model, run by the caller.

A transport (the realtime protocol's `session.update` tools) passes `ClientTool`s to a turn;
they are offered to the model beside the agent's own tools. When the model calls one, the
turn ends awaiting its output; the caller runs the function and starts the next turn with
`ToolOutput`s, which the model reads as the tools' results before it goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from vocalis.agents.tools.base import TOOL_NAME, ToolConfigError
from vocalis.core.errors import Conflict, ValidationFailed, register
from vocalis.ports.llm import ToolSpec

CLIENT_TOOL_NAME_TAKEN = register(
    "client_tool_name_taken",
    422,
    "Client tool name taken",
    "A client-side function tool has the name of one of the agent's own tools (or of "
    "another client tool); rename it.",
)
TOOL_OUTPUT_NOT_AWAITED = register(
    "tool_output_not_awaited",
    409,
    "Tool output not awaited",
    "A function call output names a call the conversation is not waiting for (unknown "
    "call id, already answered, or a later message moved the conversation on).",
)
UNANSWERED_OUTPUT = (
    '{"error": "the client sent no output for this call; the conversation moved on"}'
)


class ClientToolNameTaken(ValidationFailed):
    """A client tool's name is already used by the agent's tools."""

    code = CLIENT_TOOL_NAME_TAKEN


class ToolOutputNotAwaited(Conflict):
    """A tool output answers no call the conversation awaits."""

    code = TOOL_OUTPUT_NOT_AWAITED


@dataclass(frozen=True)
class ClientTool:
    """A function the caller runs: name, description and JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @property
    def spec(self) -> ToolSpec:
        """What the model is shown."""
        return ToolSpec(self.name, self.description, dict(self.parameters))


@dataclass(frozen=True)
class ToolOutput:
    """The caller's result of one client tool call."""

    call_id: str
    output: str


def check_client_tools(tools: Sequence[ClientTool], taken: Iterable[str]) -> None:
    """Refuse client tools with bad names or schemas, or names the agent already uses."""
    seen = set(taken)
    for tool in tools:
        if not TOOL_NAME.match(tool.name):
            raise ToolConfigError(f"tool name {tool.name!r} must match {TOOL_NAME.pattern}")
        try:
            Draft202012Validator.check_schema(tool.parameters)
        except SchemaError as exc:
            raise ToolConfigError(f"tool {tool.name!r}: invalid schema: {exc.message}") from None
        if tool.name in seen:
            raise ClientToolNameTaken(
                f"A tool named {tool.name!r} already exists; give the client tool another name."
            )
        seen.add(tool.name)


TOOL_CHOICES = ("auto", "none", "required")


def check_tool_choice(choice: str | None, names: Iterable[str]) -> None:
    """Refuse a tool choice that is neither a mode nor the name of an offered tool."""
    if choice is not None and choice not in TOOL_CHOICES and choice not in set(names):
        raise ToolConfigError(f"tool_choice {choice!r} names no offered tool")
