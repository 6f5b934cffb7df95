"""A worker's HTTP server: `/metrics`, `/healthz` (the process answers) and `/readyz` (the
broker answers).

Kubernetes probes the worker here (`VOCALIS_WORKER_METRICS_PORT`): liveness on `/healthz`
restarts a hung process; readiness on `/readyz` marks a worker that cannot reach its broker
unready — it could take no task — so the rollout waits and the alert on unready workers
fires instead of the worker idling silently. One daemon thread; nothing here blocks the
worker.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from vocalis.core.metrics import exposition

log = structlog.get_logger(__name__)

BROKER_TIMEOUT_S = 2.0
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+socket://")


def check_broker(url: str, timeout_s: float = BROKER_TIMEOUT_S) -> str:
    """ "ok" when the broker answers within `timeout_s`, else why not (never raises)."""
    try:
        if url.startswith(_REDIS_SCHEMES):
            client = redis.Redis.from_url(
                url.replace("redis+socket://", "unix://", 1),
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
            try:
                client.ping()
            finally:
                client.close()
        else:  # AMQP and other kombu transports
            from kombu import Connection

            with Connection(url, connect_timeout=timeout_s) as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return "ok"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            result = check_broker(self.server.broker_url)
            if result == "ok":
                self._json(200, {"status": "ok", "broker": "ok"})
            else:
                log.warning("worker_broker_unreachable", error=result)
                self._json(503, {"status": "unavailable", "broker": "fail", "detail": result})
        elif path in ("/metrics", "/"):
            self._send(200, exposition(), CONTENT_TYPE_LATEST)
        else:
            self._json(404, {"status": "not_found"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], broker_url: str) -> None:
        super().__init__(address, _Handler)
        self.broker_url = broker_url


def start(port: int, broker_url: str, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve on `host:port` in a daemon thread; returns the server (`.shutdown()` stops it).
    Raises OSError when the port is taken."""
    server = _Server((host, port), broker_url)
    thread = threading.Thread(target=server.serve_forever, name="worker-health", daemon=True)
    thread.start()
    return server
