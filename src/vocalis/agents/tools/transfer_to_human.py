"""`transfer_to_human`: hand the conversation to a person (emits `handoff.requested`).

Option `destination` (E.164): on a phone call, the number the call is transferred to
(a cold transfer through the carrier) once the agent's last words were played.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vocalis.agents.tools.base import (
    Tool,
    ToolConfigError,
    ToolContext,
    ToolResult,
    option,
    register_tool_kind,
)
from vocalis.ports.llm import ToolSpec

KIND = "transfer_to_human"
DEFAULT_MESSAGE = "I'm connecting you with a member of our team now."
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def transfer_destination(tools: list[dict[str, Any]]) -> str | None:
    """The phone number an agent's `transfer_to_human` tool transfers calls to, if any."""
    for tool in tools:
        if tool.get("type") == KIND and tool.get("destination"):
            return str(tool["destination"])
    return None


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
    """A transfer_to_human tool (`message`: what the user is told; `destination`: where
    phone calls go)."""
    destination = config.get("destination")
    if destination is not None and not E164.fullmatch(str(destination)):
        raise ToolConfigError("transfer_to_human `destination` must be a number in E.164")
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
