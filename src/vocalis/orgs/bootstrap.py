"""First run: a development organisation and owner key, reused on later runs."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from vocalis.core.db import Database
from vocalis.core.scopes import Role
from vocalis.orgs import service
from vocalis.orgs.models import Organization
from vocalis.settings import Settings

KEY_FILE = "api-key"


def key_file(settings: Settings) -> Path:
    """Where the first-run key is kept (mode 0600)."""
    return settings.data_dir / KEY_FILE


def _write_secret_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content + "\n")
    os.chmod(path, 0o600)


async def ensure_first_run_key(settings: Settings, database: Database) -> tuple[str, bool]:
    """The development owner key: (key, created_now). Reuses a stored key that still works."""
    path = key_file(settings)
    async with database.session() as session:
        if path.exists():
            stored = path.read_text().strip()
            if await service.find_active_key(session=session, plaintext=stored):
                return stored, False
        # A missing or revoked stored key: issue a new one, for the oldest organisation if any.
        org = (
            await session.scalars(select(Organization).order_by(Organization.created_at))
        ).first()
        if org is None:
            org, _owner = await service.create_org(
                session=session,
                name=settings.bootstrap_org_name,
                owner_email=settings.bootstrap_owner_email,
            )
        issued = await service.create_api_key(
            session=session, org_id=org.id, name="first-run owner key", role=Role.OWNER
        )
    _write_secret_file(path, issued.plaintext)
    return issued.plaintext, True
