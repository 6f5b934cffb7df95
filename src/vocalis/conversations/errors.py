"""Error codes of conversations."""

from __future__ import annotations

from vocalis.core.errors import Conflict, register

CONVERSATION_ENDED = register(
    "conversation_ended",
    409,
    "Conversation ended",
    "A message was sent to a conversation that has ended; start a new conversation.",
)
CONVERSATION_BUSY = register(
    "conversation_busy",
    409,
    "Conversation busy",
    "The agent is still answering the previous message of this conversation; retry when "
    "it has finished.",
    retryable=True,
)


class ConversationEnded(Conflict):
    """The conversation has ended."""

    code = CONVERSATION_ENDED


class ConversationBusy(Conflict):
    """Another turn of the conversation is in progress."""

    code = CONVERSATION_BUSY
