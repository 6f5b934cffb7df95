"""telephony: phone numbers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vocalis.core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phone_numbers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column(
            "number",
            sa.String(length=20),
            nullable=False,
            comment="E.164; unique: a carrier webhook names it.",
        ),
        sa.Column(
            "provider", sa.String(length=20), nullable=False, comment="`twilio` or `telnyx`."
        ),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column(
            "credentials_encrypted",
            sa.Text(),
            nullable=False,
            comment="The carrier credentials (JSON), Fernet-encrypted; never returned.",
        ),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_phone_numbers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_phone_numbers_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_numbers")),
        sa.UniqueConstraint("number", name=op.f("uq_phone_numbers_number")),
    )
    with op.batch_alter_table("phone_numbers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_phone_numbers_org_id_created_at", ["org_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_numbers", schema=None) as batch_op:
        batch_op.drop_index("ix_phone_numbers_org_id_created_at")
    op.drop_table("phone_numbers")
