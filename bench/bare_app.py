"""The peer of bench/api_overhead.py: a bare FastAPI app with Vocalis's routes and shapes.

    .venv/bin/python bench/bare_app.py --port 8100 --workers 1

Same paths, same JSON bodies parsed (pydantic models) and JSON answers, SSE streamed the
same way, a WebSocket answering the realtime text-turn events; no authentication, storage,
logs, traces or metrics. It runs under the uvicorn settings `vocalis serve` uses
(`vocalis.cli.UVICORN_OPTIONS`), so what separates the two is the platform's work.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from vocalis.cli import UVICORN_OPTIONS

REPLY = "Our support line is open Monday to Friday from nine to five."


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]]


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage]
    stream: bool = False


class MessageIn(BaseModel):
    content: str = Field(max_length=32_000)
    stream: bool = False


class AgentIn(BaseModel):
    name: str
    instructions: str = ""
    knowledge_base_ids: list[str] = []


class AgentPatch(BaseModel):
    name: str | None = None
    instructions: str | None = None


class QueryIn(BaseModel):
    query: str
    top_k: int | None = None


def create_app() -> FastAPI:
    """The bare app."""
    app = FastAPI()
    agents: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": "bare"}

    @app.get("/v1/org")
    async def org(authorization: str = Header("")) -> dict[str, Any]:
        return {"id": "org_bare", "name": "Bare", "created_at": "2026-01-01T00:00:00Z"}

    @app.post("/v1/agents", status_code=201)
    async def create_agent(body: AgentIn) -> dict[str, Any]:
        agent = {"id": f"agt_{next(ids)}", "version": 1, **body.model_dump()}
        agents[agent["id"]] = agent
        return agent

    @app.get("/v1/agents/{agent_id}")
    async def get_agent(agent_id: str) -> dict[str, Any]:
        return agents[agent_id]

    @app.patch("/v1/agents/{agent_id}")
    async def patch_agent(agent_id: str, body: AgentPatch) -> dict[str, Any]:
        agent = agents[agent_id]
        agent.update(body.model_dump(exclude_none=True), version=agent["version"] + 1)
        return agent

    @app.delete("/v1/agents/{agent_id}", status_code=204)
    async def delete_agent(agent_id: str) -> Response:
        agents.pop(agent_id, None)
        return Response(status_code=204)

    @app.post("/v1/conversations/{conversation_id}/messages", response_model=None)
    async def message(conversation_id: str, body: MessageIn) -> Any:
        reply = {"id": "msg_bare", "role": "assistant", "content": REPLY, "sequence": 2}
        if not body.stream:
            return reply

        async def events() -> AsyncIterator[str]:
            for word in REPLY.split():
                yield f"event: delta\ndata: {json.dumps({'text': word + ' '})}\n\n"
            yield f"event: message\ndata: {json.dumps(reply)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> Any:
        created = int(time.time())
        if not body.stream:
            return {
                "id": "chatcmpl-bare",
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": REPLY},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17},
            }

        async def chunks() -> AsyncIterator[str]:
            for word in REPLY.split():
                chunk = {
                    "id": "chatcmpl-bare",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body.model,
                    "choices": [{"index": 0, "delta": {"content": word + " "}}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.post("/v1/knowledge-bases/{kb_id}/query")
    async def query(kb_id: str, body: QueryIn) -> dict[str, Any]:
        return {"query": body.query, "results": [{"text": REPLY, "score": 0.9}]}

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(json.dumps({"type": "session.created", "session": {}}))
        try:
            while True:
                event = json.loads(await websocket.receive_text())
                kind = event.get("type")
                if kind == "session.update":
                    await websocket.send_text(json.dumps({"type": "session.updated"}))
                elif kind == "conversation.item.create":
                    added = {"type": "conversation.item.added", "item": event.get("item")}
                    await websocket.send_text(json.dumps(added))
                elif kind == "response.create":
                    await websocket.send_text(json.dumps({"type": "response.created"}))
                    for word in REPLY.split():
                        delta = {"type": "response.output_text.delta", "delta": word + " "}
                        await websocket.send_text(json.dumps(delta))
                    done = {"type": "response.done", "response": {"status": "completed"}}
                    await websocket.send_text(json.dumps(done))
        except WebSocketDisconnect:
            return

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
