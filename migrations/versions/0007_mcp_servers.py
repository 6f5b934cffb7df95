"""mcp servers: an organisation's MCP servers, header values encrypted

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vocalis.core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mcp_servers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("transport", sa.String(length=20), nullable=False),
        sa.Column(
            "headers_encrypted",
            sa.Text(),
            nullable=True,
            comment="Header names and values (JSON), Fernet-encrypted.",
        ),
        sa.Column("header_names", sa.JSON(), nullable=False),
        sa.Column("created_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_mcp_servers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_servers")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_mcp_servers_org_id_name")),
    )
    with op.batch_alter_table("mcp_servers", schema=None) as batch_op:
        batch_op.create_index("ix_mcp_servers_org_id_id", ["org_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mcp_servers", schema=None) as batch_op:
        batch_op.drop_index("ix_mcp_servers_org_id_id")
    op.drop_table("mcp_servers")
