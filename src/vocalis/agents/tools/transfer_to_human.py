"""`transfer_to_human`: hand the conversation to a person (emits `handoff.requested`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vocalis.agents.tools.base import Tool, ToolContext, ToolResult, option, register_tool_kind
from vocalis.ports.llm import ToolSpec

KIND = "transfer_to_human"
DEFAULT_MESSAGE = "I'm connecting you with a member of our team now."


@dataclass(frozen=True)
class TransferToHuman:
    """Ends the agent's part of the turn and asks for a person to take over."""

    spec: ToolSpec
    message: str = DEFAULT_MESSAGE
    kind: str = KIND

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Marks the turn as a handoff; the graph's handoff node emits the event."""
        reason = str(arguments.get("reason") or "The user asked for a person.")
        return ToolResult(
            content=self.message,
            data={"reason": reason, "message": self.message},
            handoff=True,
        )


@register_tool_kind(KIND, "Transfer the conversation to a person (emits handoff.requested).")
def build(config: Mapping[str, Any]) -> Tool:
    """A transfer_to_human tool (`message`: what the user is told)."""
    spec = ToolSpec(
        name=option(config, "name", KIND),
        description=option(
            config,
            "description",
            "Transfer the conversation to a human agent when the user asks for a person, or "
            "when you cannot help.",
        ),
        parameters={
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a sentence."}},
            "additionalProperties": False,
        },
    )
    return TransferToHuman(spec=spec, message=str(option(config, "message", DEFAULT_MESSAGE)))
