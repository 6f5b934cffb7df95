"""Server events out: one frame at a time, watched by the session, errors from the catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vocalis.core.errors import CATALOGUE, INTERNAL_ERROR
from vocalis.realtime.protocol import ErrorDetail, ErrorEvent, ServerEvent

log = structlog.get_logger(__name__)

Observer = Callable[[ServerEvent], None]
AfterSend = Callable[[ServerEvent], Awaitable[None]]


class ClientEventError(Exception):
    """A client event that cannot be honoured; becomes an `error` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class EventSender:
    """Sends server events one at a time; after the socket closed, sends are dropped.

    Observers see every event before it is sent (the session's item log and idle clock);
    `after_send` hooks run after it was sent (e.g. `rate_limits.updated` after
    `response.done`).
    """

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = asyncio.Lock()
        self.closed = False
        self.observers: list[Observer] = []
        self.after_send: list[AfterSend] = []

    async def send(self, event: ServerEvent) -> None:
        """Send one event as a JSON text frame."""
        if self.closed:
            return
        for observe in self.observers:
            observe(event)
        text = event.model_dump_json()
        async with self._lock:
            if self._websocket.application_state != WebSocketState.CONNECTED:
                self.closed = True
                return
            try:
                await self._websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away
                self.closed = True
                return
        for hook in self.after_send:
            await hook(event)

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event_id: str | None = None,
        server: bool = False,
    ) -> None:
        """Send an `error` event (its code must be in the error catalogue)."""
        if code not in CATALOGUE:
            log.error("realtime_error_code_not_catalogued", code=code)
            code, server = INTERNAL_ERROR, True
        detail = ErrorDetail(
            type="server_error" if server else "invalid_request_error",
            code=code,
            message=message,
            param=param,
            event_id=client_event_id,
        )
        await self.send(ErrorEvent(error=detail))
