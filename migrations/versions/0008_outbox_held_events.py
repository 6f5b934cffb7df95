"""outbox held events: events written before their document-store change, with a witness

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vocalis.core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "held_at",
                vocalis.core.db.UTCDateTime(timezone=True),
                nullable=True,
                comment="Set while the event waits for its document-store change: not "
                "dispatched until released (the change happened) or deleted (it did not).",
            )
        )
        batch_op.add_column(
            sa.Column(
                "witness",
                sa.JSON(),
                nullable=True,
                comment="Held events: the document (collection, doc_id, match) that exists "
                "once the change happened; the reconciler settles a stale held event by it.",
            )
        )
        batch_op.create_index("ix_outbox_events_held_at", ["held_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_events_held_at")
        batch_op.drop_column("witness")
        batch_op.drop_column("held_at")
