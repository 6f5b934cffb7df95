"""Organisation overrides of feature flags, persisted so every process applies them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Timestamps


class FlagOverride(Timestamps, Base):
    """One organisation's value for one flag."""

    __tablename__ = "flag_overrides"

    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, comment="JSON of the flag's type.")
    updated_by: Mapped[str | None] = mapped_column(String(40), default=None)
