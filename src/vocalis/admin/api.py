"""Routes: /v1/admin — the dead-letter store and feature-flag overrides (scope `admin`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from vocalis.admin.schemas import DeadLetterOut, FlagOut, FlagSet
from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.pagination import ListResource, Page, created_before, paginate
from vocalis.core.security import Principal, Scoped
from vocalis.flags import overrides as flags
from vocalis.workers import deadletters

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[Principal, Scoped("admin")]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "Not found."}}
_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "Already replayed or discarded, or not replayable."}
}


def _before(page: Page) -> tuple[datetime, str] | None:
    return created_before(page.position)


@router.get(
    "/dead-letters",
    response_model=ListResource[DeadLetterOut],
    summary="Tasks that failed for good, newest first",
)
async def list_dead_letters(
    page: Page,
    principal: Admin,
    session: SessionDep,
    status: Annotated[Literal["open", "replayed", "discarded"] | None, Query()] = None,
    task_name: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResource[DeadLetterOut]:
    letters = await deadletters.list_dead_letters(
        session=session,
        org_id=principal.org_id,
        limit=page.limit + 1,
        status=status,
        task_name=task_name,
        before=_before(page),
    )
    return paginate(
        [DeadLetterOut.model_validate(x) for x in letters],
        page.limit,
        lambda x: {"c": x.created_at.isoformat(), "id": x.id},
    )


@router.get(
    "/dead-letters/{dead_letter_id}",
    response_model=DeadLetterOut,
    responses=_404,
    summary="One dead letter",
)
async def get_dead_letter(
    dead_letter_id: str, principal: Admin, session: SessionDep
) -> DeadLetterOut:
    letter = await deadletters.get_dead_letter(
        session=session, org_id=principal.org_id, letter_id=dead_letter_id
    )
    return DeadLetterOut.model_validate(letter)


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    response_model=DeadLetterOut,
    status_code=202,
    responses={**_404, **_409},
    summary="Enqueue the task again with its arguments",
)
async def replay_dead_letter(
    dead_letter_id: str, principal: Admin, session: SessionDep, backends: BackendsDep
) -> DeadLetterOut:
    letter = await deadletters.replay(
        session=session,
        settings=backends.settings,
        org_id=principal.org_id,
        letter_id=dead_letter_id,
        actor=principal.key_id,
    )
    return DeadLetterOut.model_validate(letter)


@router.post(
    "/dead-letters/{dead_letter_id}/discard",
    response_model=DeadLetterOut,
    responses={**_404, **_409},
    summary="Mark a dead letter as dealt with, without running it",
)
async def discard_dead_letter(
    dead_letter_id: str, principal: Admin, session: SessionDep
) -> DeadLetterOut:
    letter = await deadletters.discard(
        session=session, org_id=principal.org_id, letter_id=dead_letter_id, actor=principal.key_id
    )
    return DeadLetterOut.model_validate(letter)


def _flag_out(state: flags.FlagState) -> FlagOut:
    return FlagOut(
        key=state.flag.key,
        type=state.flag.kind.__name__,
        description=state.flag.description,
        default=state.flag.default,
        deployment_value=state.deployment,
        org_override=state.override,
        value=state.effective,
    )


@router.get("/flags", response_model=list[FlagOut], summary="Feature flags for this organisation")
async def list_flags(principal: Admin, session: SessionDep, backends: BackendsDep) -> list[FlagOut]:
    states = await flags.list_flags(
        session=session, org_id=principal.org_id, deployment=dict(backends.settings.flags)
    )
    return [_flag_out(s) for s in states]


async def _one(session: SessionDep, backends: BackendsDep, org_id: str, key: str) -> FlagOut:
    states = await flags.list_flags(
        session=session, org_id=org_id, deployment=dict(backends.settings.flags)
    )
    return _flag_out(next(s for s in states if s.flag.key == key))


@router.put(
    "/flags/{key}",
    response_model=FlagOut,
    responses=_404,
    summary="Override a flag for this organisation",
)
async def set_flag(
    key: str, body: FlagSet, principal: Admin, session: SessionDep, backends: BackendsDep
) -> FlagOut:
    await flags.set_override(
        session=session, org_id=principal.org_id, key=key, value=body.value, actor=principal.key_id
    )
    return await _one(session, backends, principal.org_id, key)


@router.delete(
    "/flags/{key}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Remove this organisation's override of a flag",
)
async def delete_flag(key: str, principal: Admin, session: SessionDep) -> Response:
    await flags.delete_override(session=session, org_id=principal.org_id, key=key)
    return Response(status_code=204)
