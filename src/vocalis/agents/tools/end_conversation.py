"""`end_conversation`: the agent ends the conversation (after a goodbye)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vocalis.agents.tools.base import Tool, ToolContext, ToolResult, option, register_tool_kind
from vocalis.ports.llm import ToolSpec

KIND = "end_conversation"
DEFAULT_MESSAGE = "Goodbye, and thank you for getting in touch!"


@dataclass(frozen=True)
class EndConversation:
    """Marks the conversation as finished once this turn's reply is delivered."""

    spec: ToolSpec
    message: str = DEFAULT_MESSAGE
    kind: str = KIND

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Ends the turn; the caller ends the conversation."""
        reason = str(arguments.get("reason") or "The conversation is complete.")
        return ToolResult(
            content=self.message,
            data={"reason": reason, "message": self.message},
            end_conversation=True,
        )


@register_tool_kind(KIND, "End the conversation after saying goodbye.")
def build(config: Mapping[str, Any]) -> Tool:
    """An end_conversation tool (`message`: the closing line when the model gives none)."""
    spec = ToolSpec(
        name=option(config, "name", KIND),
        description=option(
            config,
            "description",
            "End the conversation when the user says goodbye or has nothing more to ask.",
        ),
        parameters={
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "additionalProperties": False,
        },
    )
    return EndConversation(spec=spec, message=str(option(config, "message", DEFAULT_MESSAGE)))
