"""The runtime port: how an agent's turn is run, chosen per agent (`"runtime"`).

Every runtime is driven the same way by `AgentRuntime.run` — the one interface the
conversations service (REST, SSE, `/v1/chat/completions`, the realtime WebSocket) and the
voice paths call — and answers with the same events: `TextDelta`s as text streams, then
`ToolCallEvent`/`ToolResultEvent` pairs, `GuardFlag`s, and a `FinalMessage` last carrying
the reply, citations, tool calls, usage (tokens, cost, provider, model), latency and flags.
Each gets the agent's tools (built-in and MCP), retrieval with citations, the guards, the
model chain (endpoints, deployment default, registered providers, fallbacks, the extractive
responder) and the same spans and metrics.

- `langgraph` (default): the compiled state graph of `vocalis.agents.graph`.
- `openai_agents`: the OpenAI Agents SDK (`vocalis.agents.runtimes.openai_agents`), with
  handoffs between agents of one organisation.
- `crewai`: a crew of role agents (`vocalis.agents.runtimes.crew`); an optional extra (see
  `CREWAI_INSTALL`). Its dependencies are heavy and are not installed by default: an agent on
  `crewai` is refused with `agent_runtime_unavailable` while the package is absent.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from vocalis.core.errors import RequestError, register

RuntimeName = Literal["langgraph", "openai_agents", "crewai"]
RUNTIMES: tuple[RuntimeName, ...] = ("langgraph", "openai_agents", "crewai")
CREWAI_INSTALL = (
    "pip install 'vocalis[crewai]' && pip install --no-deps crewai==1.15.30 crewai-core==1.15.30"
)

AGENT_RUNTIME_UNAVAILABLE = register(
    "agent_runtime_unavailable",
    422,
    "Agent runtime not installed",
    "The agent's `runtime` needs an optional extra that this deployment has not installed "
    f"(`crewai`: `{CREWAI_INSTALL}`).",
)
CLIENT_TOOLS_UNSUPPORTED = register(
    "client_tools_unsupported",
    422,
    "Client tools not supported by this runtime",
    "The agent's runtime (`openai_agents`) does not run client-side function tools (realtime "
    "`session.tools`, chat-completions `tools`) yet; use the `langgraph` runtime for them.",
)
AGENT_HANDOFF_NOT_FOUND = register(
    "agent_handoff_not_found",
    422,
    "Unknown handoff agent",
    "An agent's `handoffs` name an agent that is not one of its organisation's live agents.",
)


def runtime_available(name: str) -> bool:
    """Whether the runtime's packages are installed."""
    if name == "crewai":
        return importlib.util.find_spec("crewai") is not None
    return True


def require_runtime(name: str) -> None:
    """Raise `agent_runtime_unavailable` when the runtime's packages are missing."""
    if not runtime_available(name):
        raise RequestError(
            f"The {name!r} runtime is not installed in this deployment; the operator installs "
            f"it with `{CREWAI_INSTALL}`, or choose `langgraph` or `openai_agents`.",
            code=AGENT_RUNTIME_UNAVAILABLE,
        )
