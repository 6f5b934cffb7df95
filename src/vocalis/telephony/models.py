"""Phone numbers: a carrier number pointed at an agent, with its credentials encrypted."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Timestamps
from vocalis.core.ids import new_id


class PhoneNumber(Timestamps, Base):
    """A number a carrier routes to Vocalis; calls to and from it talk to `agent_id`."""

    __tablename__ = "phone_numbers"
    __table_args__ = (Index("ix_phone_numbers_org_id_created_at", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pn"))
    # Indexed by (org_id, created_at) above: org-scoped listing, newest first.
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(
        String(20), unique=True, comment="E.164; unique: a carrier webhook names it."
    )
    provider: Mapped[str] = mapped_column(String(20), comment="`twilio` or `telnyx`.")
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    credentials_encrypted: Mapped[str] = mapped_column(
        Text, comment="The carrier credentials (JSON), Fernet-encrypted; never returned."
    )
