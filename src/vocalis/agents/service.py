"""Agents: plain functions over an explicit session. Every change writes a new version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.agents.models import Agent, AgentVersion
from vocalis.agents.schemas import AgentConfig, AgentOut, AgentUpdate, AgentVersionOut
from vocalis.core.db import utcnow
from vocalis.core.errors import NotFound
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


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"No agent {agent_id!r}.")


async def check_model_urls(
    config: AgentConfig, allowlist: Allowlist | Iterable[str], resolver: Resolver | None = None
) -> None:
    """Refuse model endpoints the SSRF guard would not let the platform call."""
    for endpoint in config.model.endpoints():
        if endpoint.base_url:
            await check_url(endpoint.base_url, allowlist, resolver=resolver)


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
    agent.version += 1
    agent.name = config.name
    agent.updated_at = utcnow()
    version = AgentVersion(
        org_id=org_id,
        agent_id=agent.id,
        version=agent.version,
        config=_stored(config),
        created_by=created_by,
    )
    session.add(version)
    await session.flush()
    return AgentView(agent, version)


def apply_update(current: AgentConfig, patch: AgentUpdate) -> AgentConfig:
    """The configuration after a PATCH: given fields replace the current ones."""
    merged = current.model_dump(mode="json")
    merged.update(patch.model_dump(mode="json", exclude_unset=True))
    return AgentConfig.model_validate(merged)


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
