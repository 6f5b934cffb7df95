"""API shapes for dead letters and flag overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeadLetterOut(BaseModel):
    """A task that failed for good."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    object: str = "dead_letter"
    id: str
    org_id: str | None = Field(description="Null for system tasks.")
    task_name: str
    task_id: str
    queue: str
    args: list[Any] = Field(description="Arguments, secrets redacted.")
    task_kwargs: dict[str, Any] = Field(alias="kwargs", description="Keyword arguments, redacted.")
    replayable: bool
    error_type: str
    error: str
    transient: bool = Field(description="True: retries ran out; false: a permanent error.")
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    status: str = Field(description="`open`, `replayed` or `discarded`.")
    replay_count: int
    replayed_at: datetime | None
    replay_task_id: str | None
    discarded_at: datetime | None
    created_at: datetime


class FlagOut(BaseModel):
    """A feature flag for the caller's organisation."""

    object: str = "feature_flag"
    key: str
    type: str
    description: str
    default: Any
    deployment_value: Any = Field(description="From `VOCALIS_FLAGS`, if set.")
    org_override: Any = Field(description="This organisation's override, if set.")
    value: Any = Field(description="What the organisation gets.")


class FlagSet(BaseModel):
    """A new organisation override."""

    model_config = ConfigDict(extra="forbid")

    value: bool | int | float | str
