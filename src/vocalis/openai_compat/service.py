"""Chat completions as conversation turns.

Without `user`, a request is a one-off (ephemeral) conversation: seeded with the request's
earlier user/assistant messages, answered, then ended and its checkpoints dropped (the
transcript stays, with `ephemeral: true`). With `user`, the agent keeps one active
conversation per user and the server holds the history: only the request's trailing user
message(s) are new. System and developer messages are ignored: the agent's own
instructions govern it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vocalis.agents.runtime import AgentRuntime
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.errors import RequestError
from vocalis.openai_compat.schemas import ChatCompletionRequest, ChatMessageIn

SOURCE = "chat.completions"


def split_messages(messages: Sequence[ChatMessageIn]) -> tuple[list[tuple[str, str]], str]:
    """The earlier (role, text) history, and the new user input (the trailing user messages)."""
    if messages[-1].role != "user":
        raise RequestError("The last message must have the role `user`.")
    start = len(messages)
    while start > 0 and messages[start - 1].role == "user":
        start -= 1
    new_input = "\n\n".join(m.text() for m in messages[start:] if m.text().strip()).strip()
    if not new_input:
        raise RequestError("The last user message has no text.")
    history: list[tuple[str, str]] = [
        (str(m.role), m.text())
        for m in messages[:start]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    return history, new_input


@dataclass
class CompletionTurn:
    """A started turn, and whether its conversation lives only for this request."""

    turn: conversations.Turn
    ephemeral: bool

    @property
    def conversation_id(self) -> str:
        """The conversation the completion ran in."""
        return self.turn.conversation_id


async def begin_completion(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    request: ChatCompletionRequest,
) -> CompletionTurn:
    """Find or start the conversation and begin its turn."""
    history, new_input = split_messages(request.messages)
    metadata = {"source": SOURCE, **(request.metadata or {})}
    conversation = None
    if request.user:
        conversation = await store.find_active_for_user(
            backends.documents, org_id, request.model, request.user
        )
    seed = conversation is None
    if conversation is None:
        conversation = await conversations.start_conversation(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            agent_id=request.model,
            channel="api",
            metadata=metadata,
            external_user=request.user,
            ephemeral=request.user is None,
            greet=False,
        )
    ephemeral = request.user is None
    try:
        if seed:
            await runtime.seed_history(conversation["_id"], history)
        turn = await conversations.begin_turn(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            conversation_id=conversation["_id"],
            content=new_input,
        )
    except BaseException:
        if ephemeral:
            await finish_completion(backends, runtime, org_id, conversation["_id"], ephemeral)
        raise
    return CompletionTurn(turn, ephemeral)


async def finish_completion(
    backends: Backends, runtime: AgentRuntime, org_id: str, conversation_id: str, ephemeral: bool
) -> None:
    """End a one-off conversation and drop its checkpoints (no-op for kept ones)."""
    if not ephemeral:
        return
    await conversations.end_conversation(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        reason="completed",
    )
    await runtime.forget(conversation_id)
