"""The OpenAI Realtime serializer of a voice conversation (as Pipecat's `serializers/`).

`attach_voice(session, config=…)` gives a `RealtimeSession` its voice: client events —
`input_audio_buffer.append` (base64) and binary frames in the session's input format,
`.commit`, `.clear`, and `response.create`/`.cancel` once voice runs — become the
conversation's in-frames (`vocalis.voice.inputs`), decoded to PCM16 here; the
conversation's out-events (`vocalis.voice.events`) become server events, with each
response's items written by the one `ResponseEmitter` that text turns use too. Everything
else (the agent, barge-in, what was heard, recordings, latency) is the conversation's.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Any

from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import service as conversations
from vocalis.core import audio, errors
from vocalis.core.errors import VocalisError
from vocalis.realtime.emitter import ResponseEmitter
from vocalis.realtime.protocol import (
    AudioContentPart,
    ConversationItemAdded,
    ConversationItemDone,
    InputAudioBufferAppendEvent,
    InputAudioBufferCleared,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioTranscriptionCompleted,
    InputAudioTranscriptionDelta,
    InputAudioTranscriptionFailed,
    InputTokenDetails,
    MessageItem,
    OutputTokenDetails,
    Response,
    ResponseCreateEvent,
    ResponseUsage,
    SemanticVad,
    Session,
    StatusDetails,
    StatusError,
    TranscriptionError,
    TranscriptionUsage,
    VocalisCitation,
    VocalisConversationEnded,
    VocalisHandoffRequested,
    VocalisResponse,
    VocalisSpeculation,
)
from vocalis.realtime.session import ClientEventError, ClientHandler, RealtimeSession
from vocalis.voice.conversation import VoiceConversation, VoiceInputError, open_voice_conversation
from vocalis.voice.events import (
    ConversationEndedEvent,
    HandoffRequestedEvent,
    InputCleared,
    InputCommitted,
    ResponseAudio,
    ResponseDoneEvent,
    ResponseStartedEvent,
    ResponseTextDelta,
    ResponseToolCall,
    ResponseToolResult,
    ResponseTranscriptDelta,
    SpeechStartedEvent,
    SpeechStoppedEvent,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    VoiceErrorEvent,
    VoiceEvent,
)
from vocalis.voice.inputs import (
    AudioInput,
    Cancel,
    ClearInput,
    CommitInput,
    Configure,
    InputFrame,
    Respond,
    TextInput,
    TruncatePlayed,
    TurnDetection,
    VoiceSettings,
)


def input_format(session: Session) -> audio.AudioFormat:
    """The wire format of the caller's audio."""
    return audio.AudioFormat.parse(session.audio.input.format.model_dump())


def output_format(session: Session) -> audio.AudioFormat:
    """The wire format of the agent's audio."""
    return audio.AudioFormat.parse(session.audio.output.format.model_dump())


def voice_settings(session: Session) -> VoiceSettings:
    """The conversation's voice settings from the realtime session's."""
    detection = session.audio.input.turn_detection
    turn_detection = (
        None
        if detection is None
        else TurnDetection(
            threshold=detection.threshold,
            silence_ms=float(detection.silence_duration_ms),
            prefix_padding_ms=float(detection.prefix_padding_ms),
            create_response=detection.create_response,
            interrupt_response=detection.interrupt_response,
            # semantic_vad: the end-of-turn model decides; server_vad: silence alone.
            eagerness=detection.eagerness if isinstance(detection, SemanticVad) else None,
        )
    )
    return VoiceSettings(
        turn_detection=turn_detection,
        modalities=tuple(session.output_modalities),
        voice=session.audio.output.voice,
        output_rate=output_format(session).sample_rate,
    )


class RealtimeVoice:
    """The voice of one realtime session: client events in, server events out."""

    def __init__(self, session: RealtimeSession, *, config: AgentConfig) -> None:
        self.session = session
        self.conversation: VoiceConversation = open_voice_conversation(
            backends=session.backends,
            runtime=session.runtime,
            org_id=session.org_id,
            conversation_id=session.conversation_id,
            agent_id=str(session.conversation["agent_id"]),
            config=config,
            settings=voice_settings(session.session),
            sink=self.on_event,
            begin_turn=self._begin_turn,
        )
        self._responses: dict[str, ResponseEmitter] = {}
        self._previous: dict[str, str | None] = {}  # user item → the item before it
        self._binary_declared = False
        self._text_handlers: dict[str, ClientHandler] = {}

    def attach(self, *, binary_declared: bool = False) -> RealtimeVoice:
        """Register the audio events' handlers on the session."""
        session = self.session
        self._binary_declared = binary_declared
        for name in ("session.update", "response.create", "response.cancel"):
            self._text_handlers[name] = session.handlers[name]
        session.handlers.update(
            {
                "session.update": self.on_session_update,
                "response.create": self.on_response_create,
                "response.cancel": self.on_response_cancel,
                "input_audio_buffer.append": self.on_append,
                "input_audio_buffer.commit": self.on_commit,
                "input_audio_buffer.clear": self.on_clear,
            }
        )
        session.on_binary = self.on_binary
        session.on_close.append(self.conversation.close)
        return self

    async def _push(self, frame: InputFrame) -> None:
        try:
            await self.conversation.push(frame)
        except VoiceInputError as exc:
            raise ClientEventError(exc.code, exc.message) from None

    # --- client events ---------------------------------------------------------------------
    async def on_session_update(self, raw: dict[str, Any]) -> None:
        """The text handler, then the voice settings are applied to the conversation."""
        await self._text_handlers["session.update"](raw)
        audio_patch = (raw.get("session") or {}).get("audio") or {}
        if isinstance(audio_patch, dict) and "format" in (audio_patch.get("input") or {}):
            self._binary_declared = True
        await self._push(Configure(voice_settings(self.session.session)))

    async def on_append(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.append`: base64 audio in the session's input format."""
        event = InputAudioBufferAppendEvent.model_validate(raw)
        limit = self.session.backends.settings.voice_max_frame_bytes
        if len(event.audio) > 4 * (limit // 3 + 1):
            raise ClientEventError(
                errors.REALTIME_AUDIO_FRAME_TOO_LARGE,
                f"An append may carry at most {limit} bytes of audio.",
                param="audio",
            )
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientEventError(
                audio.INVALID_AUDIO, "`audio` must be base64-encoded audio.", param="audio"
            ) from None
        await self._ingest(data)

    async def on_binary(self, data: bytes) -> None:
        """A binary frame: raw audio in the declared input format."""
        sender = self.session.sender
        if not self._binary_declared:
            await sender.error(
                errors.REALTIME_UNSUPPORTED_FRAME,
                "Binary frames are raw audio: declare `audio.input.format` with "
                "`session.update` first, or send `input_audio_buffer.append`.",
            )
            return
        try:
            await self._ingest(data)
        except ClientEventError as exc:
            await sender.error(exc.code, exc.message, param=exc.param)
        except VocalisError as exc:
            await sender.error(exc.code, exc.detail)

    async def _ingest(self, data: bytes) -> None:
        limit = self.session.backends.settings.voice_max_frame_bytes
        if len(data) > limit:
            raise ClientEventError(
                errors.REALTIME_AUDIO_FRAME_TOO_LARGE,
                f"One audio frame may carry at most {limit} bytes.",
            )
        fmt = input_format(self.session.session)
        pcm = audio.decode(data, fmt)  # raises on odd PCM16 byte counts
        await self._push(AudioInput(pcm=pcm, sample_rate=fmt.sample_rate))

    async def on_commit(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.commit`: the buffered audio is the user's turn."""
        InputAudioBufferCommitEvent.model_validate(raw)
        await self._push(CommitInput())

    async def on_clear(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.clear`: forget the buffered audio."""
        InputAudioBufferClearEvent.model_validate(raw)
        await self._push(ClearInput())

    async def on_response_create(self, raw: dict[str, Any]) -> None:
        """With voice running, replies go through the conversation (spoken when audio is on)."""
        conversation = self.conversation
        if not conversation.active and not conversation.settings.speaks:
            await self._text_handlers["response.create"](raw)
            return
        ResponseCreateEvent.model_validate(raw)
        if conversation.replying:
            raise ClientEventError(
                errors.REALTIME_RESPONSE_ACTIVE,
                "A response is already in progress; cancel it or wait for `response.done`.",
            )
        for item_id, text in self.session.pending:
            await self._push(TextInput(item_id=item_id, text=text))
        self.session.pending.clear()
        await self._push(Respond(without_input=bool(self.session.tool_outputs)))

    async def _begin_turn(
        self, text: str, message_id: str | None, *, speculative: bool = False
    ) -> conversations.Turn:
        """Voice turns begin as the session's text turns do (instructions, client tools)."""
        return await self.session.begin_turn(text, message_id=message_id, speculative=speculative)

    async def on_response_cancel(self, raw: dict[str, Any]) -> None:
        """Cancel the spoken reply in progress (or the text one)."""
        if not self.conversation.active or not self.conversation.replying:
            await self._text_handlers["response.cancel"](raw)
            return
        await self._push(Cancel())

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """`conversation.item.truncate`: keep only what the client played of a spoken reply."""
        await self._push(TruncatePlayed(item_id=item_id, audio_end_ms=float(audio_end_ms)))

    # --- out-events ------------------------------------------------------------------------
    async def on_event(self, event: VoiceEvent) -> None:
        """One out-event of the conversation as server events."""
        if isinstance(event, ResponseAudio | ResponseTranscriptDelta | ResponseTextDelta):
            await self._reply_content(event)
        elif isinstance(event, ResponseStartedEvent | ResponseDoneEvent):
            await self._reply_lifecycle(event)
        elif isinstance(event, ResponseToolCall | ResponseToolResult):
            await self._tool(event)
        elif isinstance(event, SpeechStartedEvent | SpeechStoppedEvent | InputCommitted):
            await self._user_speech(event)
        elif isinstance(event, TranscriptionDelta | TranscriptionCompleted | TranscriptionFailed):
            await self._transcription(event)
        else:
            await self._conversation(event)

    async def _user_speech(
        self, event: SpeechStartedEvent | SpeechStoppedEvent | InputCommitted
    ) -> None:
        send = self.session.sender.send
        if isinstance(event, SpeechStartedEvent):
            await send(
                InputAudioBufferSpeechStarted(
                    audio_start_ms=int(event.audio_start_ms), item_id=event.item_id
                )
            )
        elif isinstance(event, SpeechStoppedEvent):
            await send(
                InputAudioBufferSpeechStopped(
                    audio_end_ms=int(event.audio_end_ms), item_id=event.item_id
                )
            )
        else:
            previous, self.session.last_item_id = self.session.last_item_id, event.item_id
            self._previous[event.item_id] = previous
            await send(InputAudioBufferCommitted(previous_item_id=previous, item_id=event.item_id))
            item = MessageItem(
                id=event.item_id,
                role="user",
                status="in_progress",
                content=[AudioContentPart(type="input_audio", transcript=None)],
            )
            await send(ConversationItemAdded(previous_item_id=previous, item=item))

    async def _transcription(
        self, event: TranscriptionDelta | TranscriptionCompleted | TranscriptionFailed
    ) -> None:
        send = self.session.sender.send
        if isinstance(event, TranscriptionDelta):
            await send(InputAudioTranscriptionDelta(item_id=event.item_id, delta=event.delta))
            return
        if isinstance(event, TranscriptionFailed):
            error = TranscriptionError(code=event.code, message=event.message)
            await send(InputAudioTranscriptionFailed(item_id=event.item_id, error=error))
            return
        await send(
            InputAudioTranscriptionCompleted(
                item_id=event.item_id,
                transcript=event.transcript,
                usage=TranscriptionUsage(seconds=round(event.audio_seconds, 3)),
            )
        )
        item = MessageItem(
            id=event.item_id,
            role="user",
            content=[AudioContentPart(type="input_audio", transcript=event.transcript)],
        )
        previous = self._previous.pop(event.item_id, None)
        await send(ConversationItemDone(previous_item_id=previous, item=item))

    async def _reply_lifecycle(self, event: ResponseStartedEvent | ResponseDoneEvent) -> None:
        if isinstance(event, ResponseStartedEvent):
            response = Response(
                id=event.response_id,
                status="in_progress",
                conversation_id=self.session.conversation_id,
                output_modalities=["audio"] if event.speaks else ["text"],
                max_output_tokens=self.session.session.max_output_tokens,
            )
            emitter = ResponseEmitter(self.session.sender, response)
            self._responses[event.response_id] = emitter
            await emitter.created()
            return
        emitter = self._responses.pop(event.response_id)
        await emitter.done(
            event.status,
            self._vocalis(event),
            details=_details(event),
            usage=_usage(event),
            final=event.heard,
        )
        if event.message_id is not None:
            self.session.last_item_id = event.message_id

    async def _reply_content(
        self, event: ResponseAudio | ResponseTranscriptDelta | ResponseTextDelta
    ) -> None:
        emitter = self._responses.get(event.response_id)
        if emitter is None:
            return
        spoken = not isinstance(event, ResponseTextDelta)
        if emitter.open_message is None:  # the reply's message item opens with its first words
            first = emitter.last_message_id is None  # the first one is the stored reply's item
            await emitter.begin_message(audio=spoken, item_id=event.item_id if first else None)
        if isinstance(event, ResponseTextDelta):
            await emitter.text(event.delta)
        elif isinstance(event, ResponseTranscriptDelta):
            await emitter.transcript(event.delta)
        else:
            fmt = output_format(self.session.session)
            pcm = event.pcm
            if event.sample_rate != fmt.sample_rate:  # the format changed mid-reply
                pcm = audio.resample(pcm, event.sample_rate, fmt.sample_rate)
            await emitter.audio(base64.b64encode(audio.encode(pcm, fmt)).decode("ascii"))

    async def _tool(self, event: ResponseToolCall | ResponseToolResult) -> None:
        emitter = self._responses.get(event.response_id)
        if emitter is None:
            return
        if isinstance(event, ResponseToolCall):
            await emitter.function_call(
                call_id=event.call_id, name=event.name, arguments=event.arguments
            )
        else:
            await emitter.tool_result(
                call_id=event.call_id, name=event.name, output=event.output, is_error=event.is_error
            )

    async def _conversation(self, event: VoiceEvent) -> None:
        session = self.session
        if isinstance(event, InputCleared):
            await session.sender.send(InputAudioBufferCleared())
        elif isinstance(event, VoiceErrorEvent):
            await session.sender.error(event.code, event.message, server=event.server)
        elif isinstance(event, HandoffRequestedEvent):
            await session.sender.send(
                VocalisHandoffRequested(
                    conversation_id=session.conversation_id, reason=event.reason
                )
            )
        elif isinstance(event, ConversationEndedEvent):
            session.conversation = {**session.conversation, "status": "ended"}
            await session.sender.send(
                VocalisConversationEnded(
                    conversation_id=session.conversation_id, reason=event.reason
                )
            )

    def _vocalis(self, event: ResponseDoneEvent) -> VocalisResponse:
        vocalis = VocalisResponse(
            conversation_id=self.session.conversation_id,
            message_id=event.message_id,
            latency_ms=dict(event.latency_ms),
            speculation=VocalisSpeculation(
                hit=event.speculated, dropped=event.speculations_dropped
            ),
        )
        result = event.result
        if result is None:
            return vocalis
        final, usage = result.final, result.final.usage
        vocalis.citations = [VocalisCitation(**asdict(c)) for c in final.citations]
        vocalis.cost_usd, vocalis.provider, vocalis.model = (
            usage.cost_usd,
            usage.provider,
            usage.model,
        )
        vocalis.flags, vocalis.handoff = list(final.flags), final.handoff
        vocalis.conversation_ended = result.conversation_ended
        return vocalis


def _details(event: ResponseDoneEvent) -> StatusDetails:
    """`status_details` of a finished reply."""
    if event.status == "cancelled":
        return StatusDetails(type="cancelled", reason=event.cancel_reason)
    if event.status == "failed" and event.error is not None:
        error = StatusError(type="server_error", code=event.error.code, message=event.error.message)
        return StatusDetails(type="failed", error=error)
    return StatusDetails(type=event.status)


def _usage(event: ResponseDoneEvent) -> ResponseUsage:
    """Token usage of a finished reply."""
    if event.result is None:
        return ResponseUsage()
    usage = event.result.final.usage
    return ResponseUsage(
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        input_token_details=InputTokenDetails(text_tokens=usage.prompt_tokens),
        output_token_details=OutputTokenDetails(text_tokens=usage.completion_tokens),
    )


def attach_voice(
    session: RealtimeSession, *, config: AgentConfig, binary_declared: bool = False
) -> RealtimeVoice:
    """Give a realtime session its voice (the one call the session's endpoint makes)."""
    return RealtimeVoice(session, config=config).attach(binary_declared=binary_declared)
