"""Secrets port: code asks for a secret by name and never reads it from settings."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class SecretNotFound(KeyError):
    """No secret of that name is configured."""


@runtime_checkable
class SecretProvider(Protocol):
    """Reads (and where supported writes) named secrets."""

    name: str

    async def get(self, path: str) -> str:
        """The secret at `path` (e.g. `llm/openai_api_key`); raises `SecretNotFound`."""
        ...

    async def get_optional(self, path: str) -> str | None:
        """The secret at `path`, or None."""
        ...

    async def ping(self) -> None:
        """Raise if the backend is unreachable."""
        ...


@runtime_checkable
class SecretCipher(Protocol):
    """Encrypts short secrets kept at rest (webhook signing secrets)."""

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (text) of `plaintext`."""
        ...

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; raises if no key opens it."""
        ...

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key."""
        ...
