"""model providers: an organisation's OpenAI-compatible servers and encrypted keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vocalis.core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_providers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column(
            "api_key_encrypted",
            sa.Text(),
            nullable=True,
            comment="The API key, Fernet-encrypted; null = keyless server.",
        ),
        sa.Column("api_key_last4", sa.String(length=4), nullable=True),
        sa.Column(
            "models", sa.JSON(), nullable=False, comment="Model names agents may use; empty = any."
        ),
        sa.Column("created_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vocalis.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_model_providers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_providers")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_model_providers_org_id_name")),
    )
    with op.batch_alter_table("model_providers", schema=None) as batch_op:
        batch_op.create_index("ix_model_providers_org_id_id", ["org_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_providers", schema=None) as batch_op:
        batch_op.drop_index("ix_model_providers_org_id_id")
    op.drop_table("model_providers")
