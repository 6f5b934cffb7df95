"""The events of `WS /v1/realtime`: OpenAI Realtime (GA) names and shapes, as models.

Client events are validated with the models in `CLIENT_EVENTS`; server events are built
from the models in `SERVER_EVENTS` (the WebSocket reference in the docs is generated from
both). Our additions are namespaced: `vocalis.*` events, and a `vocalis` object on
`session.created` and `response.done`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from vocalis.core.ids import new_id

Modality = Literal["text", "audio"]
ItemStatus = Literal["completed", "incomplete", "in_progress"]
FinalStatus = Literal["completed", "cancelled", "incomplete", "failed"]
CancelReason = Literal["turn_detected", "client_cancelled"]


def audio_only() -> list[Modality]:
    """The default output modalities: audio (with its transcript), as in OpenAI's GA API."""
    return ["audio"]


def text_only() -> list[Modality]:
    """Text output only."""
    return ["text"]


def event_id() -> str:
    """A server event id."""
    return new_id("event")


# --- session --------------------------------------------------------------------------------
PCM_RATES = (16_000, 24_000)
G711_RATE = 8_000


class AudioFormat(BaseModel):
    """An audio format: PCM16 at 24 kHz (default) or 16 kHz, or G.711 μ-law/A-law at 8 kHz."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = 24_000

    @model_validator(mode="after")
    def _supported_rate(self) -> AudioFormat:
        if self.type == "audio/pcm":
            if self.rate is None:
                self.rate = 24_000
            elif self.rate not in PCM_RATES:
                raise ValueError(f"audio/pcm rate must be one of {PCM_RATES}, not {self.rate}")
        elif "rate" in self.model_fields_set and self.rate not in (None, G711_RATE):
            raise ValueError(f"{self.type} is 8000 Hz only, not {self.rate}")
        else:
            self.rate = G711_RATE
        return self


class ServerVad(BaseModel):
    """Server voice-activity detection: turns end after `silence_duration_ms` of silence."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=2_000)
    silence_duration_ms: int = Field(default=500, ge=100, le=10_000)
    create_response: bool = Field(
        default=True, description="Answer automatically at the end of each spoken turn."
    )
    interrupt_response: bool = Field(
        default=True, description="Speech during a response cancels it (barge-in)."
    )
    idle_timeout_ms: int | None = Field(
        default=None,
        ge=1_000,
        le=600_000,
        description="After the agent's reply, this long without speech sends "
        "`input_audio_buffer.timeout_triggered` and the agent prompts the user.",
    )


Eagerness = Literal["low", "medium", "high", "auto"]
# Semantic turn detection asks the deployment's end-of-turn model (`smart-turn`), whose
# threshold and cap follow the eagerness (voice.pipeline.TurnModelConfig); with the
# `silence` detector it maps onto silence alone: the less eager, the longer the silence.
EAGERNESS_SILENCE_MS: dict[str, int] = {"low": 1_200, "medium": 700, "auto": 700, "high": 400}


class SemanticVad(BaseModel):
    """Semantic turn detection: `eagerness` sets how soon a pause ends the turn."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["semantic_vad"]
    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    # The endpointing it maps onto (the same attributes `ServerVad` has).
    @property
    def threshold(self) -> float:
        """Speech probability threshold."""
        return 0.5

    @property
    def prefix_padding_ms(self) -> int:
        """Audio kept before detected speech."""
        return 300

    @property
    def silence_duration_ms(self) -> int:
        """The silence that ends a turn at this eagerness."""
        return EAGERNESS_SILENCE_MS[self.eagerness]

    @property
    def idle_timeout_ms(self) -> int | None:
        """Semantic detection has no idle timeout (as in OpenAI's API)."""
        return None


TurnDetection = ServerVad | SemanticVad


class InputTranscription(BaseModel):
    """How input audio is transcribed (the deployment's STT engine does it)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class SessionAudioInput(BaseModel):
    """Input audio settings: the format of appended audio and how turns are detected."""

    model_config = ConfigDict(extra="allow")  # e.g. noise_reduction: reported, not applied

    format: AudioFormat = Field(default_factory=AudioFormat)
    transcription: InputTranscription | None = None
    turn_detection: TurnDetection | None = Field(
        default_factory=ServerVad,
        description="`server_vad`, `semantic_vad`, or null: the client commits each turn.",
    )


class SessionAudioOutput(BaseModel):
    """Output audio settings: the format of `response.output_audio.delta` and the voice."""

    model_config = ConfigDict(extra="allow")  # e.g. speed: reported, not applied

    format: AudioFormat = Field(default_factory=AudioFormat)
    voice: str | None = None


class SessionAudio(BaseModel):
    """Audio settings of the session."""

    model_config = ConfigDict(extra="allow")

    input: SessionAudioInput = Field(default_factory=SessionAudioInput)
    output: SessionAudioOutput = Field(default_factory=SessionAudioOutput)


class FunctionTool(BaseModel):
    """A function the client runs: offered to the agent's model beside its own tools."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = Field(default="", max_length=4_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceFunction(BaseModel):
    """Force one function tool."""

    type: Literal["function"] = "function"
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction


class TracingConfig(BaseModel):
    """Names for this session's traces (spans carry them as attributes)."""

    model_config = ConfigDict(extra="allow")

    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] | None = None


class PromptReference(BaseModel):
    """A stored prompt template (reported; the agent's instructions govern)."""

    model_config = ConfigDict(extra="allow")

    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


SessionType = Literal["realtime", "transcription"]
Include = Literal["item.input_audio_transcription.logprobs"]


class Session(BaseModel):
    """The effective session configuration, as `session.created`/`session.updated` show it.

    `type` `transcription` turns speech into text only (no responses). `instructions` are
    the client's additions to the agent's own (which are not shown); `tools` are the
    client's function tools, offered beside the agent's own.
    """

    type: SessionType = "realtime"
    object: Literal["realtime.session"] = "realtime.session"
    id: str
    model: str = Field(description="The agent's id.")
    output_modalities: list[Modality] = Field(default_factory=audio_only)
    instructions: str = ""
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: int | Literal["inf"] = "inf"
    tracing: Literal["auto"] | TracingConfig | None = None
    include: list[Include] | None = None
    prompt: PromptReference | None = None
    truncation: Literal["auto", "disabled"] | dict[str, Any] = "auto"
    audio: SessionAudio = Field(default_factory=SessionAudio)
    metadata: dict[str, str] | None = None

    @property
    def transcribes_only(self) -> bool:
        """Whether this is a transcription session (speech to text, no responses)."""
        return self.type == "transcription"

    def responds_to_turns(self) -> bool:
        """Whether a detected end of turn starts a response."""
        detection = self.audio.input.turn_detection
        return not self.transcribes_only and detection is not None and detection.create_response


class SessionPatch(BaseModel):
    """The part of `session.update` that a client may change (every GA field)."""

    model_config = ConfigDict(extra="allow")  # unknown fields are refused by name

    type: SessionType = "realtime"
    model: str | None = Field(
        default=None, max_length=128, description="Accepted; the session stays on its agent."
    )
    output_modalities: list[Modality] | None = Field(default=None, min_length=1, max_length=1)
    instructions: str | None = Field(default=None, max_length=32_000)
    tools: list[FunctionTool] | None = Field(default=None, max_length=64)
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    tracing: Literal["auto"] | TracingConfig | None = None
    include: list[Include] | None = None
    prompt: PromptReference | None = None
    truncation: Literal["auto", "disabled"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted; not applied.")
    reasoning: dict[str, Any] | None = Field(default=None, description="Accepted; not applied.")
    audio: SessionAudio | None = None
    metadata: dict[str, str] | None = None

    @field_validator(
        "output_modalities",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "audio",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # The session always has these; `null` would not replace them with anything.
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value

    def unsupported(self) -> list[str]:
        """Fields the client sent that are not part of the GA session."""
        return sorted(self.model_extra or {})

    def changes(self) -> dict[str, Any]:
        """The fields the client set that the effective session holds."""
        changes = self.model_dump(exclude_unset=True, exclude={"model"})
        return {k: v for k, v in changes.items() if k in Session.model_fields}


# --- client events --------------------------------------------------------------------------
class ClientEvent(BaseModel):
    """Fields every client event has."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(default=None, max_length=128)


class SessionUpdateEvent(ClientEvent):
    """Change the session's configuration."""

    type: Literal["session.update"]
    session: SessionPatch


class InputText(BaseModel):
    """Text typed by the user (or a system instruction)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["input_text"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=32_000)]


class OutputText(BaseModel):
    """What the assistant said, as text or as the transcript of its audio."""

    model_config = ConfigDict(extra="allow")  # `audio` of an output_audio part is not kept

    type: Literal["output_text", "output_audio", "text", "audio"] = "output_text"
    text: str | None = Field(default=None, max_length=32_000)
    transcript: str | None = Field(default=None, max_length=32_000)

    def words(self) -> str:
        """The part's text (or transcript)."""
        return self.text or self.transcript or ""


class _MessageInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["message"]
    id: str | None = Field(default=None, max_length=64)


class UserMessageItem(_MessageInput):
    """A user message with text content (audio input arrives through the audio buffer)."""

    role: Literal["user"]
    content: list[InputText] = Field(min_length=1, max_length=16)

    def text(self) -> str:
        """The message's text."""
        return "\n".join(part.text for part in self.content)


class SystemMessageItem(_MessageInput):
    """An instruction for the following responses (added to the agent's instructions)."""

    role: Literal["system"]
    content: list[InputText] = Field(min_length=1, max_length=16)

    def text(self) -> str:
        """The instruction's text."""
        return "\n".join(part.text for part in self.content)


class AssistantMessageItem(_MessageInput):
    """Something the assistant said (put into the conversation as history)."""

    role: Literal["assistant"]
    content: list[OutputText] = Field(min_length=1, max_length=16)

    def text(self) -> str:
        """The message's text."""
        return "\n".join(part.words() for part in self.content if part.words())


class FunctionCallOutputInput(BaseModel):
    """The result of a client-side function call (answered at the next `response.create`)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=128)
    output: str = Field(max_length=64_000)
    id: str | None = Field(default=None, max_length=64)


InputItem = Annotated[
    Annotated[
        UserMessageItem | SystemMessageItem | AssistantMessageItem, Field(discriminator="role")
    ]
    | FunctionCallOutputInput,
    Field(discriminator="type"),
]


class ConversationItemCreateEvent(ClientEvent):
    """Add an item: a user, system or assistant message, or a function call's output."""

    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: InputItem


class ConversationItemRetrieveEvent(ClientEvent):
    """Ask for an item of the conversation (`conversation.item.retrieved`)."""

    type: Literal["conversation.item.retrieve"]
    item_id: str = Field(max_length=64)


class ConversationItemDeleteEvent(ClientEvent):
    """Remove an item: input not yet answered, or the agent's last reply."""

    type: Literal["conversation.item.delete"]
    item_id: str = Field(max_length=64)


class ConversationItemTruncateEvent(ClientEvent):
    """The listener heard only `audio_end_ms` of a spoken reply: keep just that part."""

    type: Literal["conversation.item.truncate"]
    item_id: str = Field(max_length=64)
    content_index: int = Field(default=0, ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseParams(BaseModel):
    """Overrides for one response (other GA fields are accepted and not applied)."""

    model_config = ConfigDict(extra="allow")

    output_modalities: list[Modality] | None = Field(default=None, min_length=1, max_length=1)
    instructions: str | None = Field(default=None, max_length=32_000)
    metadata: dict[str, str] | None = None
    max_output_tokens: int | Literal["inf"] | None = None


class ResponseCreateEvent(ClientEvent):
    """Ask the agent to answer the conversation's new input (or its tools' outputs)."""

    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancelEvent(ClientEvent):
    """Stop the response in progress."""

    type: Literal["response.cancel"]
    response_id: str | None = None


class InputAudioBufferAppendEvent(ClientEvent):
    """Add base64 audio, in the session's input format, to the input audio buffer."""

    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommitEvent(ClientEvent):
    """End the user's turn now (manual turn detection): transcribe the buffered audio."""

    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClearEvent(ClientEvent):
    """Discard the buffered audio of the turn in progress."""

    type: Literal["input_audio_buffer.clear"]


CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    "session.update": SessionUpdateEvent,
    "conversation.item.create": ConversationItemCreateEvent,
    "conversation.item.retrieve": ConversationItemRetrieveEvent,
    "conversation.item.delete": ConversationItemDeleteEvent,
    "conversation.item.truncate": ConversationItemTruncateEvent,
    "response.create": ResponseCreateEvent,
    "response.cancel": ResponseCancelEvent,
    "input_audio_buffer.append": InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
}


# --- server events --------------------------------------------------------------------------
class ServerEvent(BaseModel):
    """Fields every server event has."""

    event_id: str = Field(default_factory=event_id)


class VocalisSession(BaseModel):
    """Which conversation this session talks in."""

    conversation_id: str
    agent_id: str
    agent_version: int
    resumed: bool = False


class SessionCreated(ServerEvent):
    """First event of every session."""

    type: Literal["session.created"] = "session.created"
    session: Session
    vocalis: VocalisSession


class SessionUpdated(ServerEvent):
    """The session's configuration after a `session.update`."""

    type: Literal["session.updated"] = "session.updated"
    session: Session


class ContentPart(BaseModel):
    """A text content part of an item."""

    type: Literal["input_text", "output_text", "text"]
    text: str = ""


class AudioContentPart(BaseModel):
    """An audio content part: what was said, as a transcript (the audio itself is streamed)."""

    type: Literal["input_audio", "output_audio", "audio"]
    transcript: str | None = None


AnyContentPart = Annotated[ContentPart | AudioContentPart, Field(discriminator="type")]


class MessageItem(BaseModel):
    """A conversation message item."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    status: ItemStatus = "completed"
    content: list[AnyContentPart] = Field(default_factory=list)


class FunctionCallItem(BaseModel):
    """A tool the agent called (tools run on the server; this is for information)."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["function_call"] = "function_call"
    status: ItemStatus = "completed"
    call_id: str
    name: str
    arguments: str = ""


class FunctionCallOutputItem(BaseModel):
    """The output the client gave for one of its function calls."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["function_call_output"] = "function_call_output"
    status: ItemStatus = "completed"
    call_id: str
    output: str


Item = MessageItem | FunctionCallItem
AnyItem = MessageItem | FunctionCallItem | FunctionCallOutputItem


class ConversationItemAdded(ServerEvent):
    """An item joined the conversation."""

    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None = None
    item: AnyItem


class ConversationItemDone(ServerEvent):
    """An item is final."""

    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None = None
    item: AnyItem


class ConversationItemRetrieved(ServerEvent):
    """The item asked for with `conversation.item.retrieve`."""

    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: AnyItem


class ConversationItemDeleted(ServerEvent):
    """An item was removed from the conversation."""

    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class ConversationItemTruncated(ServerEvent):
    """A spoken reply now holds only what was heard (up to `audio_end_ms`)."""

    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


class InputTokenDetails(BaseModel):
    """Where input tokens came from."""

    cached_tokens: int = 0
    text_tokens: int = 0
    audio_tokens: int = 0


class OutputTokenDetails(BaseModel):
    """What output tokens were."""

    text_tokens: int = 0
    audio_tokens: int = 0


class ResponseUsage(BaseModel):
    """Tokens of one response."""

    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: OutputTokenDetails = Field(default_factory=OutputTokenDetails)


class StatusError(BaseModel):
    """Why a response failed."""

    type: str
    code: str | None = None
    message: str | None = None


class StatusDetails(BaseModel):
    """Details of a response's final status."""

    type: FinalStatus
    reason: CancelReason | Literal["max_output_tokens", "content_filter"] | None = None
    error: StatusError | None = None


class Response(BaseModel):
    """A response of the agent."""

    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]
    status_details: StatusDetails | None = None
    output: list[Item] = Field(default_factory=list)
    conversation_id: str
    output_modalities: list[Modality] = Field(default_factory=text_only)
    max_output_tokens: int | Literal["inf"] = "inf"
    usage: ResponseUsage | None = None
    metadata: dict[str, str] | None = None


class ResponseCreated(ServerEvent):
    """A response started."""

    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseOutputItemAdded(ServerEvent):
    """A response started an output item."""

    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int
    item: Item


class ResponseOutputItemDone(ServerEvent):
    """An output item is final."""

    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int
    item: Item


class ResponseContentPartAdded(ServerEvent):
    """A message item started a content part."""

    type: Literal["response.content_part.added"] = "response.content_part.added"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: AnyContentPart


class ResponseContentPartDone(ServerEvent):
    """A content part is final."""

    type: Literal["response.content_part.done"] = "response.content_part.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: AnyContentPart


class ResponseOutputTextDelta(ServerEvent):
    """The next piece of the agent's text."""

    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputTextDone(ServerEvent):
    """The whole text of a content part (authoritative: the output guard may change it)."""

    type: Literal["response.output_text.done"] = "response.output_text.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    text: str


class ResponseFunctionCallArgumentsDelta(ServerEvent):
    """The next piece of a function call's arguments (sent whole, once)."""

    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDone(ServerEvent):
    """The agent called a tool with these arguments."""

    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class InputAudioBufferSpeechStarted(ServerEvent):
    """Server VAD heard the user start speaking (a response being spoken is cut off)."""

    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int = Field(description="Where the turn starts in the session's input audio.")
    item_id: str = Field(description="The user message item this speech will become.")


class InputAudioBufferSpeechStopped(ServerEvent):
    """Server VAD heard the end of the user's turn."""

    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferCommitted(ServerEvent):
    """The turn's audio became a user message item (transcription follows)."""

    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None = None
    item_id: str


class InputAudioBufferTimeoutTriggered(ServerEvent):
    """Nobody spoke for `idle_timeout_ms` after the agent's reply: the agent prompts the user."""

    type: Literal["input_audio_buffer.timeout_triggered"] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


class RateLimit(BaseModel):
    """One limit and what is left of it."""

    name: Literal["requests", "tokens"]
    limit: int
    remaining: int
    reset_seconds: float


class RateLimitsUpdated(ServerEvent):
    """The organisation's limits after a response (sent after each `response.done`)."""

    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit]


class InputAudioBufferCleared(ServerEvent):
    """The input audio buffer was emptied (`input_audio_buffer.clear`)."""

    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class TranscriptionUsage(BaseModel):
    """Seconds of audio transcribed."""

    type: Literal["duration"] = "duration"
    seconds: float


class InputAudioTranscriptionDelta(ServerEvent):
    """More of the transcript of the user's spoken item."""

    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class InputAudioTranscriptionCompleted(ServerEvent):
    """The final transcript of the user's spoken item."""

    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: TranscriptionUsage


class TranscriptionError(BaseModel):
    """Why a transcription failed."""

    type: str = "transcription_error"
    code: str | None = None
    message: str | None = None
    param: str | None = None


class InputAudioTranscriptionFailed(ServerEvent):
    """The user's spoken item could not be transcribed."""

    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: TranscriptionError


class ResponseOutputAudioDelta(ServerEvent):
    """The next chunk of the agent's speech: base64 audio in the session's output format."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioDone(ServerEvent):
    """The agent's speech for this content part is complete (or was cut off)."""

    type: Literal["response.output_audio.done"] = "response.output_audio.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int


class ResponseOutputAudioTranscriptDelta(ServerEvent):
    """Text of the speech that follows (sent as each sentence starts playing)."""

    type: Literal["response.output_audio_transcript.delta"] = (
        "response.output_audio_transcript.delta"
    )
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioTranscriptDone(ServerEvent):
    """What the listener heard: the whole reply, or the part spoken before a barge-in."""

    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    transcript: str


class VocalisCitation(BaseModel):
    """A passage the answer cites as `[n]`, or one it was attributed to (`attributed`)."""

    n: int
    document_id: str
    document_name: str
    chunk_id: str
    text: str
    score: float = 0.0
    page: int | None = None
    section: str | None = None
    attributed: bool = Field(
        default=False,
        description="False: the reply cites this passage as `[n]`. True: the reply carries "
        "no marker and the output guard attributed it to this passage, which supports what "
        "it says (`n` is then the passage's number in the turn, not a marker in the text).",
    )


class VocalisSpeculation(BaseModel):
    """How a spoken reply was prepared: speculatively at a pause in the user's speech."""

    hit: bool = Field(
        False,
        description="The reply was prepared at the pause that ended the turn (transcription, "
        "agent and first clause's synthesis ran before the turn was confirmed).",
    )
    dropped: int = Field(
        0,
        description="Replies prepared at earlier pauses of the same turn and thrown away "
        "unheard because the user went on speaking.",
    )


class VocalisResponse(BaseModel):
    """Our additions to `response.done`."""

    conversation_id: str
    message_id: str | None = None
    citations: list[VocalisCitation] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(
        default_factory=dict,
        description="retrieve, first_token, generate, tools, total; spoken replies add "
        "endpointing (the silence that ended the turn), stt, tts_first_byte and "
        "first_audio_byte (end of the user's speech to the first byte of the answer).",
    )
    cost_usd: float = 0.0
    provider: str = ""
    model: str = ""
    flags: list[str] = Field(default_factory=list)
    handoff: bool = False
    conversation_ended: bool = False
    speculation: VocalisSpeculation = Field(default_factory=VocalisSpeculation)


class ResponseDone(ServerEvent):
    """A response finished (completed, cancelled or failed)."""

    type: Literal["response.done"] = "response.done"
    response: Response
    vocalis: VocalisResponse


class VocalisToolResult(ServerEvent):
    """A server-side tool answered."""

    type: Literal["vocalis.tool.result"] = "vocalis.tool.result"
    response_id: str
    call_id: str
    name: str
    output: str
    is_error: bool = False


class VocalisHandoffRequested(ServerEvent):
    """The conversation was handed to a person."""

    type: Literal["vocalis.handoff.requested"] = "vocalis.handoff.requested"
    conversation_id: str
    reason: str


EndReason = Literal[
    "user_ended",
    "timeout",
    "max_duration",
    "disconnected",
    "agent_ended",
    "end_phrase",
    "error",
]


class VocalisConversationEnded(ServerEvent):
    """The conversation ended: `reason` says why (the socket closes after it)."""

    type: Literal["vocalis.conversation.ended"] = "vocalis.conversation.ended"
    conversation_id: str
    reason: str


class ErrorDetail(BaseModel):
    """What went wrong; the session stays usable."""

    type: Literal["invalid_request_error", "server_error"] = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = Field(default=None, description="The client event at fault.")


class ErrorEvent(ServerEvent):
    """A client event was refused or a response failed."""

    type: Literal["error"] = "error"
    error: ErrorDetail


SERVER_EVENTS: dict[str, type[ServerEvent]] = {
    model.model_fields["type"].default: model
    for model in (
        SessionCreated,
        SessionUpdated,
        ConversationItemAdded,
        ConversationItemDone,
        ConversationItemRetrieved,
        ConversationItemDeleted,
        ConversationItemTruncated,
        ResponseCreated,
        ResponseOutputItemAdded,
        ResponseContentPartAdded,
        ResponseOutputTextDelta,
        ResponseOutputTextDone,
        ResponseContentPartDone,
        ResponseOutputItemDone,
        ResponseFunctionCallArgumentsDelta,
        ResponseFunctionCallArgumentsDone,
        InputAudioBufferSpeechStarted,
        InputAudioBufferSpeechStopped,
        InputAudioBufferCommitted,
        InputAudioBufferCleared,
        InputAudioBufferTimeoutTriggered,
        InputAudioTranscriptionDelta,
        InputAudioTranscriptionCompleted,
        InputAudioTranscriptionFailed,
        ResponseOutputAudioTranscriptDelta,
        ResponseOutputAudioDelta,
        ResponseOutputAudioDone,
        ResponseOutputAudioTranscriptDone,
        ResponseDone,
        RateLimitsUpdated,
        VocalisToolResult,
        VocalisHandoffRequested,
        VocalisConversationEnded,
        ErrorEvent,
    )
}


def _fields(model: type[BaseModel]) -> str:
    names = [name for name in model.model_fields if name not in ("type", "event_id")]
    return ", ".join(f"`{n}`" for n in names) or "—"


def reference_markdown() -> str:
    """The WebSocket reference (client and server events) for the generated docs."""
    lines = [
        "# Realtime WebSocket events",
        "",
        "`WS /v1/realtime?model=<agent id>` (or `agent_id=`, or `conversation_id=` to resume "
        "an active conversation), `Authorization: Bearer <api key>` with the "
        "`conversations:write` scope, or a short-lived client secret from "
        "`POST /v1/realtime/client_secrets` as the Bearer value or as `?token=`. Event names "
        "and shapes are OpenAI Realtime's (GA); ours are namespaced `vocalis.*`. Every event "
        "carries `type` and `event_id`.",
        "",
        "Audio: `session.audio.input.format` / `session.audio.output.format` are "
        '`{"type": "audio/pcm", "rate": 24000}` (default) or `16000`, or `audio/pcmu` / '
        "`audio/pcma` (G.711 at 8 kHz). Binary WebSocket frames are accepted as raw input "
        "audio once the client has declared `audio.input.format` with `session.update`. With "
        "`turn_detection` `server_vad` or `semantic_vad` the server finds turns and answers "
        "each one; with `null` the client sends `input_audio_buffer.commit` and "
        "`response.create`. Speech during a spoken answer cancels it (`response.done` with "
        "status `cancelled`, reason `turn_detected`), and the stored message keeps only the "
        "words that were played.",
        "",
        'Replies are spoken (`output_modalities` `["audio"]`, the GA default) unless the '
        'session asks for `["text"]`. `session.update` accepts every GA session field; '
        "what each one does here is in section 3.2 of the documentation. A `transcription` "
        "session turns speech into text only.",
        "",
        "Each event's fields, a validated example and (for client events) the server events "
        "it produces follow the two summary tables.",
        "",
        "## Client events",
        "",
        "| Event | Meaning | Fields |",
        "|---|---|---|",
    ]
    for name, client_model in CLIENT_EVENTS.items():
        doc = (client_model.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{name}` | {doc} | {_fields(client_model)} |")
    lines += ["", "## Server events", "", "| Event | Meaning | Fields |", "|---|---|---|"]
    for name, server_model in SERVER_EVENTS.items():
        doc = (server_model.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{name}` | {doc} | {_fields(server_model)} |")
    from vocalis.realtime.reference import event_sections  # its examples import this module

    return "\n".join(lines) + "\n\n" + event_sections() + "\n"
