"""The organisations' API keys as the authentication dependency sees them."""

from __future__ import annotations

from vocalis.core.db import Database
from vocalis.core.scopes import Role
from vocalis.core.security import KeyGrant
from vocalis.orgs import service


class OrgApiKeys:
    """An `ApiKeyStore` over the `api_keys` table."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def active_key(self, plaintext: str) -> KeyGrant | None:
        """The live key matching `plaintext`, as a grant, or None."""
        async with self._database.session() as session:
            key = await service.find_active_key(session=session, plaintext=plaintext)
        if key is None:
            return None
        return KeyGrant(
            key_id=key.id,
            org_id=key.org_id,
            role=Role(key.role),
            scopes=frozenset(key.scopes),
            created_by=key.created_by,
            expires_at=key.expires_at,
        )

    async def touch(self, key_id: str) -> None:
        """Record that the key was used now."""
        async with self._database.session() as session:
            await service.touch_last_used(session=session, key_id=key_id)
