"""Agents: plain functions over an explicit session. Every change writes a new version."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, column, select, table, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from vocalis.agents.mcp_servers import check_agent_servers
from vocalis.agents.model_providers import check_agent_providers
from vocalis.agents.models import Agent, AgentVersion
from vocalis.agents.runtimes.base import AGENT_HANDOFF_NOT_FOUND, require_runtime
from vocalis.agents.schemas import AgentConfig, AgentOut, AgentUpdate, AgentVersionOut
from vocalis.core.db import Database, RowQuery, utcnow
from vocalis.core.errors import (
    NotFound,
    RequestError,
    ValidationFailed,
    register,
    validation_failed,
)
from vocalis.core.ssrf import Allowlist, Resolver, check_url


@dataclass(frozen=True)
class AgentView:
    """An agent with its current version's configuration."""

    agent: Agent
    current: AgentVersion

    @property
    def config(self) -> AgentConfig:
        """The validated configuration of the current version."""
        return AgentConfig.model_validate(self.current.config)

    def out(self) -> AgentOut:
        """The API view."""
        return AgentOut(
            **self.current.config,
            id=self.agent.id,
            version=self.agent.version,
            created_at=self.agent.created_at,
            updated_at=self.agent.updated_at,
        )


def version_out(version: AgentVersion) -> AgentVersionOut:
    """The API view of one version."""
    return AgentVersionOut(
        agent_id=version.agent_id,
        version=version.version,
        config=AgentConfig.model_validate(version.config),
        created_at=version.created_at,
    )


AGENT_KNOWLEDGE_BASE_NOT_FOUND = register(
    "knowledge_base_not_found",
    422,
    "Unknown knowledge base",
    "An agent's `knowledge_base_ids` name knowledge bases that do not exist or belong to "
    "another organisation; `knowledge_base_ids` in the problem lists them.",
)
# The knowledge layer sits above agents: its table is named here, not imported.
_KNOWLEDGE_BASES = table("knowledge_bases", column("id"), column("org_id"))


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"No agent {agent_id!r}.")


async def check_model_urls(
    config: AgentConfig, allowlist: Allowlist | Iterable[str], resolver: Resolver | None = None
) -> None:
    """Refuse model endpoints the SSRF guard would not let the platform call."""
    for endpoint in config.model.endpoints():
        if endpoint.base_url:
            await check_url(endpoint.base_url, allowlist, resolver=resolver)


async def check_model_providers(
    *,
    session: AsyncSession,
    org_id: str,
    config: AgentConfig,
    previous: AgentConfig | None = None,
) -> None:
    """Refuse references to anything the organisation does not have: model providers (and
    their models), MCP servers, knowledge bases, handoff agents.

    On an update (`previous` given) only knowledge bases the change adds are checked: one
    deleted since the agent named it does not block an unrelated edit (retrieval skips it).
    """
    references = [
        (e.provider_id, e.model) for e in config.model.endpoints() if e.provider_id is not None
    ]
    await check_agent_providers(session=session, org_id=org_id, references=references)
    await check_agent_servers(
        session=session, org_id=org_id, server_ids=[s.server_id for s in config.mcp_servers]
    )
    require_runtime(config.runtime)
    kept = set(previous.knowledge_base_ids) if previous is not None else set()
    added = [kb_id for kb_id in config.knowledge_base_ids if kb_id not in kept]
    await check_knowledge_bases(session=session, org_id=org_id, kb_ids=added)
    for agent_id in config.handoffs:
        row = (await session.execute(_current_query(org_id).where(Agent.id == agent_id))).first()
        if row is None:
            raise RequestError(
                f"No agent {agent_id!r} in this organisation to hand off to.",
                code=AGENT_HANDOFF_NOT_FOUND,
            )


async def check_knowledge_bases(
    *, session: AsyncSession, org_id: str, kb_ids: Sequence[str]
) -> None:
    """Refuse knowledge-base ids that are not the organisation's, naming every one of them
    (an agent would otherwise search nothing there and answer "I don't know")."""
    wanted = sorted(set(kb_ids))
    if not wanted:
        return
    found = set(
        (
            await session.scalars(
                select(_KNOWLEDGE_BASES.c.id).where(
                    _KNOWLEDGE_BASES.c.org_id == org_id, _KNOWLEDGE_BASES.c.id.in_(wanted)
                )
            )
        ).all()
    )
    missing = [kb_id for kb_id in wanted if kb_id not in found]
    if missing:
        raise RequestError(
            "No knowledge base "
            + ", ".join(repr(kb_id) for kb_id in missing)
            + " in this organisation.",
            code=AGENT_KNOWLEDGE_BASE_NOT_FOUND,
            extra={"knowledge_base_ids": missing},
        )


def _stored(config: AgentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


async def create_agent(
    *, session: AsyncSession, org_id: str, config: AgentConfig, created_by: str | None = None
) -> AgentView:
    """A new agent at version 1."""
    agent = Agent(org_id=org_id, name=config.name, version=1)
    session.add(agent)
    await session.flush()
    version = AgentVersion(
        org_id=org_id, agent_id=agent.id, version=1, config=_stored(config), created_by=created_by
    )
    session.add(version)
    await session.flush()
    return AgentView(agent, version)


def _current_query(org_id: str) -> Any:
    return (
        select(Agent, AgentVersion)
        .join(
            AgentVersion,
            and_(AgentVersion.agent_id == Agent.id, AgentVersion.version == Agent.version),
        )
        .where(Agent.org_id == org_id, Agent.deleted_at.is_(None))
    )


async def get_agent(*, session: AsyncSession, org_id: str, agent_id: str) -> AgentView:
    """One live agent of the organisation; NotFound otherwise."""
    row = (await session.execute(_current_query(org_id).where(Agent.id == agent_id))).first()
    if row is None:
        raise _not_found(agent_id)
    return AgentView(row[0], row[1])


class _Version(NamedTuple):
    version: int


# Built once (every one-off chat completion runs it; compiled once per dialect).
_CURRENT_VERSION = RowQuery(
    select(Agent.version).where(
        Agent.id == bindparam("agent_id"),
        Agent.org_id == bindparam("org_id"),
        Agent.deleted_at.is_(None),
    ),
    _Version,
)


async def current_version(*, database: Database, org_id: str, agent_id: str) -> int:
    """The version number of one live agent of the organisation (one indexed read in one
    hop, no ORM session: `Database.read`); NotFound otherwise. Its configuration is
    immutable: callers cache it by version (`conversations.service.agent_config`)."""
    row = await database.first(_CURRENT_VERSION, {"agent_id": agent_id, "org_id": org_id})
    if row is None:
        raise _not_found(agent_id)
    return int(row.version)


async def list_agents(
    *, session: AsyncSession, org_id: str, limit: int, after: str | None = None
) -> list[AgentView]:
    """The organisation's agents, newest first, after a cursor id."""
    query = _current_query(org_id).order_by(Agent.id.desc())
    if after:
        query = query.where(Agent.id < after)
    rows = (await session.execute(query.limit(limit))).all()
    return [AgentView(a, v) for a, v in rows]


async def update_agent(
    *,
    session: AsyncSession,
    org_id: str,
    agent_id: str,
    config: AgentConfig,
    created_by: str | None = None,
) -> AgentView:
    """Write `config` as the agent's next version."""
    agent = (
        await session.scalars(
            select(Agent)
            .where(Agent.org_id == org_id, Agent.id == agent_id, Agent.deleted_at.is_(None))
            .with_for_update()
        )
    ).first()
    if agent is None:
        raise _not_found(agent_id)
    # The next version number comes from the database, atomically: SQLite ignores FOR
    # UPDATE, so two concurrent PATCHes read the same version and the second one's insert
    # broke the (agent_id, version) key (a 500, found by bench/load.py). The UPDATE runs
    # under the database's write lock (PostgreSQL: the row lock taken above) and returns
    # the number this request owns.
    now = utcnow()
    next_version = (
        await session.execute(
            update(Agent)
            .where(Agent.id == agent.id)
            .values(version=Agent.version + 1, name=config.name, updated_at=now)
            .returning(Agent.version)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    set_committed_value(agent, "version", next_version)
    set_committed_value(agent, "name", config.name)
    set_committed_value(agent, "updated_at", now)
    version = AgentVersion(
        org_id=org_id,
        agent_id=agent.id,
        version=next_version,
        config=_stored(config),
        created_by=created_by,
    )
    session.add(version)
    await session.flush()
    return AgentView(agent, version)


# Fields of an agent that always have a value: a PATCH may replace them, never null them.
NOT_NULLABLE = frozenset(
    name
    for name, info in AgentConfig.model_fields.items()
    if info.is_required() or info.default is not None or info.default_factory is not None
)


def apply_update(current: AgentConfig, patch: AgentUpdate) -> AgentConfig:
    """The configuration after a PATCH: given fields replace the current ones; `null` only
    where the agent's field may be empty (`first_message`, `analysis_plan`, …)."""
    changes = patch.model_dump(mode="json", exclude_unset=True)
    nulled = sorted(
        name for name, value in changes.items() if value is None and name in NOT_NULLABLE
    )
    if nulled:
        message = "must not be null; leave the field out to keep its value"
        raise ValidationFailed(
            f"body.{nulled[0]}: {message}",
            extra={
                "errors": [
                    {"loc": ["body", name], "msg": message, "type": "value_error"}
                    for name in nulled
                ]
            },
        )
    merged = current.model_dump(mode="json")
    merged.update(changes)
    try:  # each field is valid alone; together they may not be (`handoffs` + `runtime`)
        return AgentConfig.model_validate(merged)
    except ValidationError as exc:
        raise validation_failed(exc) from None


async def delete_agent(*, session: AsyncSession, org_id: str, agent_id: str) -> None:
    """Delete an agent; its versions stay for the conversations that ran on them."""
    view = await get_agent(session=session, org_id=org_id, agent_id=agent_id)
    view.agent.deleted_at = utcnow()
    await session.flush()


async def get_version(
    *, session: AsyncSession, org_id: str, agent_id: str, version: int
) -> AgentVersion:
    """One version of an agent (deleted agents' versions included, for their transcripts)."""
    row = (
        await session.scalars(
            select(AgentVersion).where(
                AgentVersion.org_id == org_id,
                AgentVersion.agent_id == agent_id,
                AgentVersion.version == version,
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"No version {version} of agent {agent_id!r}.")
    return row


async def list_versions(
    *, session: AsyncSession, org_id: str, agent_id: str, limit: int, before: int | None
) -> list[AgentVersion]:
    """A live agent's versions, newest first."""
    await get_agent(session=session, org_id=org_id, agent_id=agent_id)
    query = (
        select(AgentVersion)
        .where(AgentVersion.org_id == org_id, AgentVersion.agent_id == agent_id)
        .order_by(AgentVersion.version.desc())
    )
    if before is not None:
        query = query.where(AgentVersion.version < before)
    return list((await session.scalars(query.limit(limit))).all())
