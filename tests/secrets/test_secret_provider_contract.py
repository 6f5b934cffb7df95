"""The secrets-port contract: the environment and Vault providers behave the same.

Every test runs on `EnvSecretProvider` (a given environment) and on `VaultSecretProvider`
against a real OpenBao dev server (a fresh base path each), seeded with the same secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.openbao import OpenBaoServer
from vocalis.adapters.env_secrets import EnvSecretProvider, env_name
from vocalis.adapters.vault_secrets import VaultAuth, VaultSecretProvider, kv_location
from vocalis.ports.secrets import SecretNotFound, SecretProvider

SECRETS = {
    "llm/openai_api_key": "sk-contract",
    "s3/access_key_id": "AKIACONTRACT",
    "orgs/org_1/crm/api_token": "crm-token",
    "webhooks/encryption_key": "",  # set but empty
}

Seed = Callable[[dict[str, str]], SecretProvider]


def _vault_seed(server: OpenBaoServer, base_path: str) -> Seed:
    def seed(secrets: dict[str, str]) -> SecretProvider:
        grouped: dict[str, dict[str, Any]] = {}
        for path, value in secrets.items():
            location = kv_location(path, base_path)
            grouped.setdefault(location.path, {})[location.key] = value
        root = server.client()
        for kv_path, values in grouped.items():
            root.secrets.kv.v2.create_or_update_secret(
                path=kv_path, secret=values, mount_point="secret"
            )
        return VaultSecretProvider(
            server.addr, auth=VaultAuth(token=server.root_token), base_path=base_path
        )

    return seed


def _env_seed(secrets: dict[str, str]) -> SecretProvider:
    return EnvSecretProvider(environ={env_name(path): value for path, value in secrets.items()})


@pytest.fixture(params=["env", "vault"])
def seed(request: pytest.FixtureRequest) -> Iterator[Seed]:
    """Builds a provider of one kind holding exactly the given secrets."""
    if request.param == "env":
        yield _env_seed
        return
    server: OpenBaoServer = request.getfixturevalue("openbao")
    base_path: str = request.getfixturevalue("vault_base_path")
    built: list[SecretProvider] = []

    def seed_and_track(secrets: dict[str, str]) -> SecretProvider:
        provider = _vault_seed(server, base_path)(secrets)
        built.append(provider)
        return provider

    yield seed_and_track
    for provider in built:
        if isinstance(provider, VaultSecretProvider):
            provider.close()


@pytest.fixture
def provider(seed: Seed) -> SecretProvider:
    """A provider holding `SECRETS`."""
    return seed(SECRETS)


def test_implements_the_port(provider: SecretProvider) -> None:
    assert isinstance(provider, SecretProvider)
    assert provider.name in {"env", "vault"}


@pytest.mark.parametrize("path", ["llm/openai_api_key", "s3/access_key_id"])
async def test_get_returns_the_secret(provider: SecretProvider, path: str) -> None:
    assert await provider.get(path) == SECRETS[path]


async def test_deep_paths_are_read_like_shallow_ones(provider: SecretProvider) -> None:
    assert await provider.get("orgs/org_1/crm/api_token") == "crm-token"


async def test_get_optional_returns_the_secret(provider: SecretProvider) -> None:
    assert await provider.get_optional("llm/openai_api_key") == "sk-contract"


async def test_get_optional_of_a_missing_secret_is_none(provider: SecretProvider) -> None:
    assert await provider.get_optional("llm/anthropic_api_key") is None
    assert await provider.get_optional("nowhere/at_all") is None


async def test_get_of_a_missing_secret_raises_secret_not_found(provider: SecretProvider) -> None:
    with pytest.raises(SecretNotFound):
        await provider.get("llm/anthropic_api_key")


async def test_an_empty_value_counts_as_missing(provider: SecretProvider) -> None:
    assert await provider.get_optional("webhooks/encryption_key") is None
    with pytest.raises(SecretNotFound):
        await provider.get("webhooks/encryption_key")


async def test_ping_succeeds_when_the_backend_is_up(provider: SecretProvider) -> None:
    await provider.ping()
