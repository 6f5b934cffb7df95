"""A webhook receiver for the tests: verifies every signature with `standardwebhooks`.

It runs in its own thread (a worker process calls it over HTTP while the test awaits), and
answers each path according to a plan: a list of status codes to answer in turn, a status
to answer forever, or a hold that blocks the first request until released. Like a real
receiver it is idempotent: the *effect* of an event happens once per `webhook-id`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    verify_error: str | None
    status: int

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class _Plan:
    statuses: list[int] = field(default_factory=list)
    then: int = 200
    body_size: int = 0
    hold: threading.Event | None = None
    held: threading.Event = field(default_factory=threading.Event)


class Receiver:
    """The receiving side of webhooks, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.effects: dict[str, int] = {}  # webhook-id → times its effect was applied
        self.duplicates = 0  # accepted repeats of an already applied webhook-id
        self._secrets: dict[str, str] = {}
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        for plan in self._plans.values():
            if plan.hold is not None:
                plan.hold.set()
        self._server.shutdown()
        self._server.server_close()

    # --- configuring ------------------------------------------------------------------
    def secret(self, path: str, secret: str) -> None:
        """The signing secret of the endpoint at `path`."""
        self._secrets[path] = secret

    def answer(self, path: str, *statuses: int, then: int = 200, body_size: int = 0) -> None:
        """Answer `statuses` in turn, then `then` forever (padding bodies to `body_size`)."""
        self._plans[path] = _Plan(list(statuses), then, body_size)

    def hold_first(self, path: str) -> _Plan:
        """Block the first request to `path` until `release(path)`; 200 afterwards."""
        plan = self._plans[path] = _Plan(hold=threading.Event())
        return plan

    def release(self, path: str) -> None:
        plan = self._plans[path]
        assert plan.hold is not None
        plan.hold.set()

    # --- reading ----------------------------------------------------------------------
    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def unverified(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if not r.verified]

    # --- serving ----------------------------------------------------------------------
    def _status_for(self, path: str) -> int:
        plan = self._plans.get(path)
        if plan is None:
            return 200
        if plan.hold is not None and not plan.held.is_set():
            plan.held.set()
            plan.hold.wait(timeout=30)
            return 200
        with self._lock:
            return plan.statuses.pop(0) if plan.statuses else plan.then

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Received:
        secret = self._secrets.get(path)
        verified, error = False, "no secret registered for this path"
        error_or_none: str | None = error
        if secret is not None:
            try:
                Webhook(secret).verify(body, headers)
                verified, error_or_none = True, None
            except WebhookVerificationError as exc:
                error_or_none = str(exc)
        return Received(path, headers, body, verified, error_or_none, 0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                received = receiver._record(self.path, headers, body)
                status = receiver._status_for(self.path)
                received.status = status
                with receiver._lock:
                    receiver.received.append(received)
                    if received.verified and 200 <= status < 300:
                        # Idempotent handling keyed on webhook-id: a repeat has no effect.
                        if received.msg_id in receiver.effects:
                            receiver.duplicates += 1
                        else:
                            receiver.effects[received.msg_id] = 1
                reply = json.dumps({"status": status, "path": self.path}).encode()
                plan = receiver._plans.get(self.path)
                if plan is not None and plan.body_size > len(reply):
                    reply += b" " * (plan.body_size - len(reply))
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:  # the sender died while we held the request
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A started receiver, closed afterwards."""
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.close()
