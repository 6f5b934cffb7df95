"""The one registry of API scopes and the roles that grant them."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Membership roles, from most to least powerful."""

    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


RANK: dict[Role, int] = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def can_grant(granter: Role, role: Role) -> bool:
    """Whether a key of role `granter` may create a key of role `role` (never a higher one)."""
    return RANK[role] <= RANK[granter]


SCOPES: dict[str, str] = {
    "org:read": "Read the organisation.",
    "org:write": "Change the organisation's settings.",
    "api_keys:read": "List API keys.",
    "api_keys:write": "Create and revoke API keys.",
    "agents:read": "Read agents.",
    "agents:write": "Create, change and delete agents.",
    "conversations:read": "Read conversations and transcripts.",
    "conversations:write": "Start conversations and send messages.",
    "knowledge:read": "Read and query knowledge bases.",
    "knowledge:write": "Create knowledge bases and upload documents.",
    "webhooks:read": "Read webhook endpoints and deliveries.",
    "webhooks:write": "Manage webhook endpoints, replay deliveries.",
    "telephony:read": "Read phone numbers.",
    "telephony:write": "Manage phone numbers and place outbound calls.",
    "admin": "Operate: dead letters, feature flags.",
}

_READ = {s for s in SCOPES if s.endswith(":read")}
_BUILD = {
    "agents:write",
    "conversations:write",
    "knowledge:write",
    "webhooks:write",
    "telephony:write",
}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.VIEWER: frozenset(_READ),
    Role.DEVELOPER: frozenset(_READ | _BUILD),
    Role.ADMIN: frozenset(_READ | _BUILD | {"api_keys:write", "org:write", "admin"}),
    Role.OWNER: frozenset(SCOPES),
}


def scopes_for(role: Role, requested: list[str] | None = None) -> list[str]:
    """The scopes a key gets: those requested (must be within the role), else the role's."""
    allowed = ROLE_SCOPES[role]
    if not requested:
        return sorted(allowed)
    unknown = [s for s in requested if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    beyond = [s for s in requested if s not in allowed]
    if beyond:
        raise ValueError(f"scopes beyond role {role.value}: {', '.join(beyond)}")
    return sorted(set(requested))
