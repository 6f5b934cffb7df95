"""Encrypting webhook signing secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key is the secret `webhooks/encryption_key` from the secrets provider: one Fernet key,
or several separated by commas to rotate (the first encrypts, every one decrypts). In
embedded mode, when it is not set, a key is generated once into
`<data_dir>/webhook-encryption.key` (mode 0600) and reused by the API and the workers;
production refuses to run without a configured key rather than invent one per host.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from vocalis.core.errors import VocalisError, register
from vocalis.ports.secrets import SecretProvider
from vocalis.settings import Settings

SECRET_PATH = "webhooks/encryption_key"
KEY_FILE = "webhook-encryption.key"

WEBHOOK_KEY_MISSING = register(
    "webhook_encryption_key_missing",
    500,
    "Webhook encryption key missing",
    "Production runs need the secret `webhooks/encryption_key` to encrypt webhook secrets.",
)


class SecretBox:
    """Encrypts and decrypts short secrets with one or more Fernet keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (URL-safe base64 text) of `plaintext`."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; raises `InvalidToken` if no key opens it."""
        return self._fernet.decrypt(ciphertext.encode()).decode()

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the first (newest) key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def key_file(data_dir: Path) -> Path:
    """Where the embedded key lives."""
    return data_dir / KEY_FILE


def load_or_create_key_file(path: Path) -> str:
    """The key in `path`, generated with mode 0600 if the file does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when the API and a worker start together, exactly one writes the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = Fernet.generate_key().decode()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


async def build_secret_box(settings: Settings, secrets: SecretProvider) -> SecretBox:
    """The secret box of the configured keys (the composition root keeps one per process)."""
    configured = await secrets.get_optional(SECRET_PATH)
    if configured:
        keys = [k.strip() for k in configured.split(",") if k.strip()]
    elif settings.env == "production":
        raise VocalisError(
            f"Set the secret {SECRET_PATH} (a Fernet key) to store webhook secrets.",
            code=WEBHOOK_KEY_MISSING,
        )
    else:
        keys = [load_or_create_key_file(key_file(settings.data_dir))]
    return SecretBox(keys)


__all__ = ["InvalidToken", "SecretBox", "build_secret_box", "key_file", "load_or_create_key_file"]
