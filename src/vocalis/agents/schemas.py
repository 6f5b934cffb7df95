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

MAX_TOOLS = 32
MAX_FALLBACKS = 3


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
    timeout_s: float = Field(default=30.0, gt=0, le=300, description="Per request/chunk.")


class ModelSettings(BaseModel):
    """Which model answers: the embedded extractive responder (default) or an endpoint.

    The chain is always: the configured endpoint → each fallback → the extractive responder,
    moving on after timeouts and 5xx (with a circuit breaker per endpoint).
    """

    model_config = ConfigDict(extra="forbid")

    provider: Literal["extractive", "openai"] = Field(
        default="extractive",
        description="`extractive`: grounded answers from the knowledge bases, no model "
        "needed. `openai`: any OpenAI-compatible chat-completions server.",
    )
    model: ShortText | None = Field(default=None, description="Required for `openai`.")
    base_url: HttpBaseUrl | None = None
    api_key_secret: SecretPath | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    tool_choice: str | None = Field(
        default=None,
        max_length=64,
        description="`auto` (default), `required`, `none`, or a tool name that the first "
        "generation of every turn must call.",
    )
    fallbacks: list[ModelEndpoint] = Field(default_factory=list, max_length=MAX_FALLBACKS)

    @model_validator(mode="after")
    def _endpoint_complete(self) -> ModelSettings:
        if self.provider == "openai" and not self.model:
            raise ValueError("`model` is required when provider is `openai`")
        return self

    def endpoints(self) -> list[ModelEndpoint]:
        """The OpenAI-compatible endpoints of the chain, in order."""
        primary = (
            [
                ModelEndpoint(
                    model=self.model or "",
                    base_url=self.base_url,
                    api_key_secret=self.api_key_secret,
                    timeout_s=self.timeout_s,
                )
            ]
            if self.provider == "openai"
            else []
        )
        return primary + list(self.fallbacks)


class VoiceSettings(BaseModel):
    """How the agent sounds on the voice channel."""

    model_config = ConfigDict(extra="forbid")

    voice: ShortText | None = Field(default=None, description="Voice name; empty = default.")
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


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
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_TOOLS,
        description='Tool configurations `{"type": kind, ...}`: `search_knowledge`, '
        "`transfer_to_human`, `end_conversation`, `http_request`.",
    )
    knowledge_base_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = (
        Field(default_factory=list, max_length=20)
    )
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    end_of_conversation_phrases: list[ShortText] = Field(
        default_factory=list,
        max_length=20,
        description="A user message containing one of these ends the conversation after "
        "the agent's reply.",
    )
    analysis_plan: AnalysisPlan | None = None
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
    def _known_tool_choice(self) -> AgentConfig:
        choice = self.model.tool_choice
        if choice not in (None, "auto", "required", "none"):
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
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    knowledge_base_ids: list[str] | None = Field(default=None, max_length=20)
    voice: VoiceSettings | None = None
    end_of_conversation_phrases: list[ShortText] | None = Field(default=None, max_length=20)
    analysis_plan: AnalysisPlan | None = None
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
