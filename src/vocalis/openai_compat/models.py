"""Routes: `GET /v1/models` and `GET /v1/models/{model}`, OpenAI's model list.

Many OpenAI clients call `models.list()` first. Here a chat "model" is one of the
organisation's agents (its id is what `/v1/chat/completions` takes as `model`); the audio and
embedding endpoints add the ids of the configured engines (`owned_by: "vocalis"`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from vocalis.agents import service as agents
from vocalis.core.backends import Backends
from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.errors import BackendUnavailable, NotFound
from vocalis.core.security import Principal, Scoped
from vocalis.openai_compat.api import openai_error
from vocalis.settings import Settings

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

MAX_AGENTS_LISTED = 1000
_STARTED = int(datetime.now(UTC).timestamp())  # `created` of the configured engines


class Model(BaseModel):
    """One model in OpenAI's shape."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's model list."""

    object: Literal["list"] = "list"
    data: list[Model]


def _audio_models(settings: Settings) -> list[str]:
    stt = (
        settings.voice_openai_stt_model
        if settings.voice_stt_engine == "openai"
        else settings.voice_whisper_model
    )
    tts = (
        settings.voice_openai_tts_model
        if settings.voice_tts_engine == "openai"
        else settings.voice_tts_engine
    )
    return [stt, tts]


async def _embedding_model(backends: Backends) -> str | None:
    if backends.settings.knowledge_embedder == "openai":
        return backends.settings.knowledge_openai_embedding_model
    try:
        return (await backends.knowledge.get()).embedder.model_id
    except BackendUnavailable:
        return None  # not loadable here: /v1/embeddings says why when called


async def _engine_models(backends: Backends) -> list[Model]:
    engines = [*_audio_models(backends.settings), await _embedding_model(backends)]
    return [
        Model(id=model_id, created=_STARTED, owned_by="vocalis")
        for model_id in dict.fromkeys(e for e in engines if e)
    ]


@router.get(
    "/models",
    response_model=ModelList,
    summary="List models: the organisation's agents and the configured audio/embedding models",
)
async def list_models(
    principal: Annotated[Principal, Scoped("agents:read")],
    session: SessionDep,
    backends: BackendsDep,
) -> ModelList:
    org_id = principal.org_id
    views = await agents.list_agents(session=session, org_id=org_id, limit=MAX_AGENTS_LISTED)
    listed = [
        Model(id=v.agent.id, created=int(v.agent.created_at.timestamp()), owned_by=org_id)
        for v in views
    ]
    return ModelList(data=[*listed, *await _engine_models(backends)])


@router.get(
    "/models/{model_id:path}",
    response_model=Model,
    responses={404: {"description": "No agent or configured model with this id."}},
    summary="One model (an agent, or a configured audio/embedding model)",
)
async def retrieve_model(
    model_id: str,
    principal: Annotated[Principal, Scoped("agents:read")],
    session: SessionDep,
    backends: BackendsDep,
) -> Model:
    if model_id.startswith("agt_"):
        try:
            view = await agents.get_agent(
                session=session, org_id=principal.org_id, agent_id=model_id
            )
        except NotFound:
            pass
        else:
            created = int(view.agent.created_at.timestamp())
            return Model(id=view.agent.id, created=created, owned_by=principal.org_id)
    else:
        for model in await _engine_models(backends):
            if model.id == model_id:
                return model
    error = NotFound(f"The model {model_id!r} does not exist.")
    error.extra = {"error": openai_error("model_not_found", error.detail, 404)}
    raise error
