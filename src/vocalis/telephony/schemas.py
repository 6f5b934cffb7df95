"""API shapes of phone numbers and outbound calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Provider = Literal["twilio", "telnyx"]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]

REQUIRED_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "twilio": ("account_sid", "auth_token"),
    "telnyx": ("api_key", "connection_id"),
}


class PhoneNumberCreate(BaseModel):
    """A carrier number to route to an agent."""

    model_config = ConfigDict(extra="forbid")

    number: E164 = Field(description="The number in E.164.", examples=["+15550100001"])
    provider: Provider
    agent_id: str = Field(min_length=1, max_length=64, description="The agent that answers.")
    credentials: dict[str, Token] = Field(
        description="Write-only. Twilio: `account_sid`, `auth_token`; Telnyx: `api_key`, "
        "`connection_id` (the Call Control application). Stored encrypted, never returned.",
        examples=[{"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "…"}],
    )

    @model_validator(mode="after")
    def _complete_credentials(self) -> PhoneNumberCreate:
        check_credentials(self.provider, self.credentials)
        return self


class PhoneNumberUpdate(BaseModel):
    """A change: re-point the number at another agent, or replace its credentials."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(default=None, min_length=1, max_length=64)
    credentials: dict[str, Token] | None = None


class PhoneNumberOut(BaseModel):
    """A phone number (its credentials are never shown)."""

    model_config = ConfigDict(from_attributes=True)

    object: Literal["phone_number"] = "phone_number"
    id: str
    number: str
    provider: Provider
    agent_id: str
    created_at: datetime
    updated_at: datetime


class CallCreate(BaseModel):
    """An outbound call from one of the organisation's numbers."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(min_length=1, max_length=64)
    to: E164 = Field(examples=["+15550100002"])
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)


class CallOut(BaseModel):
    """An outbound call the carrier is placing (its conversation starts when answered)."""

    object: Literal["call"] = "call"
    conversation_id: str
    phone_number_id: str
    provider: Provider
    provider_call_id: str
    status: Literal["queued"] = "queued"


def check_credentials(provider: str, credentials: dict[str, Any]) -> None:
    """Raise ValueError unless every credential the provider needs is there."""
    missing = [k for k in REQUIRED_CREDENTIALS[provider] if not credentials.get(k)]
    if missing:
        raise ValueError(f"{provider} credentials need {', '.join(missing)}")
