"""API shapes for organisations and API keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from vocalis.core.scopes import Role


class OrgOut(BaseModel):
    """An organisation."""

    model_config = ConfigDict(from_attributes=True)

    object: str = "organization"
    id: str
    name: str
    retention_days: int | None
    created_at: datetime


class OrgUpdate(BaseModel):
    """Fields of an organisation that can change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    retention_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyCreate(BaseModel):
    """A request for a new API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.DEVELOPER
    scopes: list[str] | None = Field(
        default=None, max_length=50, description="Subset of the role's scopes; default all of them."
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working; with a UTC offset (RFC 3339)."
    )


class ApiKeyOut(BaseModel):
    """An API key as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    object: str = "api_key"
    id: str
    name: str
    prefix: str
    role: Role
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A newly created key: `key` is shown this once."""

    key: str
