"""API shapes of agents: the versioned configuration, create/update bodies and the view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from vocalis.agents.tools.base import ToolConfigError, build_toolbox

SecretPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,200}$", strip_whitespace=True)
]
HttpBaseUrl = Annotated[
    str, StringConstraints(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=500)
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ProviderId = Annotated[str, StringConstraints(pattern=r"^mpr_[A-Za-z0-9]{1,40}$")]

MAX_TOOLS = 32
MAX_FALLBACKS = 3
MAX_MCP_SERVERS = 10
MAX_HANDOFFS = 10
MAX_CREW_MEMBERS = 8
AgentId = Annotated[str, StringConstraints(pattern=r"^agt_[A-Za-z0-9]{1,40}$")]


class ModelEndpoint(BaseModel):
    """An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM)."""

    model_config = ConfigDict(extra="forbid")

    model: ShortText = Field(description="Model name as the server knows it.")
    base_url: HttpBaseUrl | None = Field(
        default=None,
        description="The server's `/v1` base URL; empty = api.openai.com. Checked by the "
        "SSRF guard (private addresses need `VOCALIS_OUTBOUND_ALLOWLIST`).",
        examples=["http://llm.internal:8080/v1"],
    )
    api_key_secret: SecretPath | None = Field(
        default=None,
        description="Path of the API key in the secrets store; empty for keyless servers.",
        examples=["llm/openai_api_key"],
    )
    provider_id: ProviderId | None = Field(
        default=None,
        description="A model provider registered at `/v1/model-providers`: its base URL and "
        "key are used (leave `base_url` and `api_key_secret` empty).",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=300, description="Per request/chunk.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelEndpoint:
        if self.provider_id and (self.base_url or self.api_key_secret):
            raise ValueError("give either `provider_id` or `base_url`/`api_key_secret`")
        return self


class ModelSettings(BaseModel):
    """Which model answers: the deployment's default model, an endpoint, or the embedded
    extractive responder.

    The chain is always: the configured endpoint (or the deployment's default) → each
    fallback → the extractive responder, moving on after timeouts and 5xx (with a circuit
    breaker per endpoint).
    """

    model_config = ConfigDict(extra="forbid")

    provider: Literal["default", "extractive", "openai"] = Field(
        default="default",
        description="`default`: the deployment's model (`VOCALIS_LLM_MODEL`), or the "
        "extractive responder when none is configured. `extractive`: grounded answers from "
        "the knowledge bases, no model needed. `openai`: any OpenAI-compatible "
        "chat-completions server, by `base_url` or by a registered `provider_id`.",
    )
    model: ShortText | None = Field(default=None, description="Required for `openai`.")
    base_url: HttpBaseUrl | None = None
    api_key_secret: SecretPath | None = None
    provider_id: ProviderId | None = Field(
        default=None,
        description="A model provider registered at `/v1/model-providers` (`openai` only).",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    tool_choice: str | None = Field(
        default=None,
        max_length=64,
        description="`auto` (default), `required`, `none`, or a tool name (a configured "
        "tool's, or an MCP server's) that the first generation of every turn must call.",
    )
    fallbacks: list[ModelEndpoint] = Field(default_factory=list, max_length=MAX_FALLBACKS)

    @model_validator(mode="after")
    def _endpoint_complete(self) -> ModelSettings:
        if self.provider == "openai" and not self.model:
            raise ValueError("`model` is required when provider is `openai`")
        if self.provider_id and self.provider != "openai":
            raise ValueError("`provider_id` needs provider `openai`")
        if self.provider_id and (self.base_url or self.api_key_secret):
            raise ValueError("give either `provider_id` or `base_url`/`api_key_secret`")
        return self

    def endpoints(self) -> list[ModelEndpoint]:
        """The OpenAI-compatible endpoints of the chain, in order."""
        primary = (
            [
                ModelEndpoint(
                    model=self.model or "",
                    base_url=self.base_url,
                    api_key_secret=self.api_key_secret,
                    provider_id=self.provider_id,
                    timeout_s=self.timeout_s,
                )
            ]
            if self.provider == "openai"
            else []
        )
        return primary + list(self.fallbacks)


class McpServerRef(BaseModel):
    """An MCP server (registered at `/v1/mcp-servers`) whose tools the agent may call."""

    model_config = ConfigDict(extra="forbid")

    server_id: Annotated[str, StringConstraints(pattern=r"^mcs_[A-Za-z0-9]{1,40}$")]
    allowed_tools: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = (
        Field(
            default=None,
            max_length=128,
            description="Only these of the server's tools; empty (null) = every tool it lists.",
        )
    )


class CrewMember(BaseModel):
    """One role agent of a CrewAI crew."""

    model_config = ConfigDict(extra="forbid")

    role: ShortText = Field(description="Who the member is, e.g. `Refund researcher`.")
    goal: str = Field(min_length=1, max_length=2000, description="What the member works for.")
    backstory: str = Field(default="", max_length=8000, description="The member's background.")
    tools: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None,
        max_length=MAX_TOOLS,
        description="Names of the agent's tools this member may call; null = every one.",
    )


class CrewSettings(BaseModel):
    """The crew of an agent on the `crewai` runtime."""

    model_config = ConfigDict(extra="forbid")

    process: Literal["sequential", "hierarchical"] = Field(
        default="sequential",
        description="`sequential`: one task per member in order, the last writes the reply; "
        "`hierarchical`: a manager delegates to the members and writes the reply.",
    )
    members: list[CrewMember] = Field(
        default_factory=list,
        max_length=MAX_CREW_MEMBERS,
        description="The role agents; empty = one member made of the agent's name and "
        "instructions.",
    )


class VoiceSettings(BaseModel):
    """How the agent sounds on the voice channel."""

    model_config = ConfigDict(extra="forbid")

    voice: ShortText | None = Field(default=None, description="Voice name; empty = default.")
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class ConversationLimits(BaseModel):
    """When a realtime conversation ends by itself (empty = the deployment's settings)."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout_s: int | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="Nobody speaks or types this long: ends with reason `timeout`.",
    )
    max_duration_s: int | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="This long after it started: ends with reason `max_duration`.",
    )


class AnalysisPlan(BaseModel):
    """What the post-conversation analysis extracts."""

    model_config = ConfigDict(extra="forbid")

    summary: bool = Field(default=True, description="Write a summary of the conversation.")
    summary_instructions: str | None = Field(default=None, max_length=4000)
    success_criteria: str | None = Field(
        default=None, max_length=4000, description="What a successful conversation achieves."
    )
    structured_data_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema (draft 2020-12) of the fields to extract from the transcript.",
    )

    @field_validator("structured_data_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value


class AgentConfig(BaseModel):
    """Everything one version of an agent holds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    instructions: str = Field(default="", max_length=32_000, description="The system prompt.")
    first_message: str | None = Field(
        default=None,
        max_length=2000,
        description="Said by the agent when a conversation starts; empty = the user starts.",
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    runtime: Literal["langgraph", "openai_agents", "crewai"] = Field(
        default="langgraph",
        description="What runs the agent's turns: the LangGraph state graph (default), the "
        "OpenAI Agents SDK (with `handoffs`), or CrewAI (an optional extra).",
    )
    handoffs: list[AgentId] = Field(
        default_factory=list,
        max_length=MAX_HANDOFFS,
        description="Agents of the same organisation this one may hand the conversation to "
        "(`openai_agents` runtime).",
    )
    crew: CrewSettings | None = Field(
        default=None,
        description="The crew of role agents and its process (`crewai` runtime).",
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_TOOLS,
        description='Tool configurations `{"type": kind, ...}`: `search_knowledge`, '
        "`transfer_to_human`, `end_conversation`, `http_request`.",
    )
    knowledge_base_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = (
        Field(default_factory=list, max_length=20)
    )
    mcp_servers: list[McpServerRef] = Field(
        default_factory=list,
        max_length=MAX_MCP_SERVERS,
        description="MCP servers whose tools are offered beside `tools`, listed live each turn.",
    )
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    end_of_conversation_phrases: list[ShortText] = Field(
        default_factory=list,
        max_length=20,
        description="A user message containing one of these ends the conversation after "
        "the agent's reply.",
    )
    analysis_plan: AnalysisPlan | None = None
    limits: ConversationLimits = Field(default_factory=ConversationLimits)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)

    @field_validator("tools")
    @classmethod
    def _valid_tools(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            build_toolbox(value)
        except ToolConfigError as exc:
            raise ValueError(exc.detail) from None
        return value

    @model_validator(mode="after")
    def _handoffs_need_the_sdk(self) -> AgentConfig:
        if self.handoffs and self.runtime != "openai_agents":
            raise ValueError("`handoffs` need `runtime: openai_agents`")
        return self

    @model_validator(mode="after")
    def _crew_needs_crewai(self) -> AgentConfig:
        if self.crew is not None and self.runtime != "crewai":
            raise ValueError("`crew` needs `runtime: crewai`")
        if self.crew is not None:
            names = {t.spec.name for t in build_toolbox(self.tools).tools.values()}
            for member in self.crew.members:
                unknown = [n for n in member.tools or () if n not in names]
                if unknown and not self.mcp_servers:  # MCP tools are known when listed
                    raise ValueError(f"crew member {member.role!r}: no tool {unknown[0]!r}")
        return self

    @model_validator(mode="after")
    def _known_tool_choice(self) -> AgentConfig:
        choice = self.model.tool_choice
        # An MCP server's tools are known only when it is listed: a name is taken on trust.
        # Handoff tools (`transfer_to_<agent>`) are named by the SDK runtime at run time.
        dynamic = self.mcp_servers or self.handoffs
        if choice not in (None, "auto", "required", "none") and not dynamic:
            names = {t.spec.name for t in build_toolbox(self.tools).tools.values()}
            if choice not in names:
                raise ValueError(f"model.tool_choice {choice!r} names no configured tool")
        return self


class AgentCreate(AgentConfig):
    """A new agent."""


class AgentUpdate(BaseModel):
    """A change to an agent: given fields replace the current ones (objects whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = Field(default=None, max_length=32_000)
    first_message: str | None = Field(default=None, max_length=2000)
    model: ModelSettings | None = None
    runtime: Literal["langgraph", "openai_agents", "crewai"] | None = None
    handoffs: list[AgentId] | None = Field(default=None, max_length=MAX_HANDOFFS)
    crew: CrewSettings | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    knowledge_base_ids: list[str] | None = Field(default=None, max_length=20)
    mcp_servers: list[McpServerRef] | None = Field(default=None, max_length=MAX_MCP_SERVERS)
    voice: VoiceSettings | None = None
    end_of_conversation_phrases: list[ShortText] | None = Field(default=None, max_length=20)
    analysis_plan: AnalysisPlan | None = None
    limits: ConversationLimits | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=32)


class AgentOut(AgentConfig):
    """An agent at its current version."""

    object: Literal["agent"] = "agent"
    id: str
    version: int = Field(description="Current version; each update adds one.")
    created_at: datetime
    updated_at: datetime

    @field_validator("tools")
    @classmethod
    def _valid_tools(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return value  # validated when stored


class AgentVersionOut(BaseModel):
    """One immutable version of an agent's configuration."""

    object: Literal["agent.version"] = "agent.version"
    agent_id: str
    version: int
    config: AgentConfig
    created_at: datetime
