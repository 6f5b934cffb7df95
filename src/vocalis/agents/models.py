"""Agents and their immutable versions.

An agent row names the agent and points at its current version; every change writes a new
`agent_versions` row holding the complete, validated configuration as JSON. Conversations
record the version they ran on, so a transcript can always be read next to the exact
instructions, model and tools that produced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Timestamps, utcnow
from vocalis.core.ids import new_id


class Agent(Timestamps, Base):
    """An agent of one organisation; its configuration lives in its versions."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("agt"))
    # Indexed by (org_id, id) above: lookups and newest-first listing per organisation.
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(default=1)
    # Soft delete: versions stay readable for the conversations that ran on them.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class AgentVersion(Base):
    """One immutable configuration of an agent."""

    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("agv"))
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[int]
    config: Mapped[dict[str, Any]]
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)  # API key id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
