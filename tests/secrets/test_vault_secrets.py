"""The Vault secrets provider, against a real OpenBao dev server.

Each test writes its secrets under a fresh base path in the `secret/` KV v2 mount. The
clock is injected where the cache TTL or a token's TTL matters, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions as vault_errors

from tests.fixtures.openbao import OpenBaoServer
from vocalis.adapters.vault_secrets import (
    VaultAuth,
    VaultAuthFailed,
    VaultSecretProvider,
    VaultUnavailable,
    kv_location,
)
from vocalis.core.errors import BackendUnavailable
from vocalis.ports.secrets import SecretNotFound, SecretProvider
from vocalis.settings import Settings
from vocalis.wiring import build_secrets

READ_POLICY = "vocalis-tests-read"


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Vault:
    """The session's server, seen by one test: a root client and that test's base path."""

    server: OpenBaoServer
    base_path: str
    root: hvac.Client
    providers: list[VaultSecretProvider] = field(default_factory=list)

    def write(self, kv_path: str, values: dict[str, Any]) -> None:
        """Write one KV secret under the test's base path (a new version if it exists)."""
        self.root.secrets.kv.v2.create_or_update_secret(
            path=f"{self.base_path}/{kv_path}", secret=values, mount_point="secret"
        )

    def provider(self, auth: VaultAuth | None = None, **options: Any) -> VaultSecretProvider:
        """A provider on this base path (root token unless told), closed after the test."""
        provider = VaultSecretProvider(
            self.server.addr,
            auth=auth or VaultAuth(token=self.server.root_token),
            base_path=self.base_path,
            **options,
        )
        self.providers.append(provider)
        return provider

    def reader_token(self, ttl: str) -> str:
        """A renewable token that may only read secrets."""
        created = self.root.auth.token.create(policies=[READ_POLICY], ttl=ttl, renewable=True)
        return str(created["auth"]["client_token"])


@pytest.fixture(scope="session")
def configured_openbao(openbao: OpenBaoServer) -> OpenBaoServer:
    """The session server with a read-only policy and AppRole auth enabled."""
    root = openbao.client()
    root.sys.create_or_update_policy(
        READ_POLICY, 'path "secret/data/tests/*" { capabilities = ["read"] }'
    )
    root.sys.enable_auth_method("approle")
    return openbao


@pytest.fixture
def vault(configured_openbao: OpenBaoServer, vault_base_path: str) -> Iterator[Vault]:
    """The server, a root client and a fresh base path for one test."""
    state = Vault(configured_openbao, vault_base_path, configured_openbao.client())
    yield state
    for provider in state.providers:
        provider.close()


# --- path mapping ---------------------------------------------------------------------
def test_the_last_segment_is_the_key_within_the_kv_secret_at_the_parent_path() -> None:
    location = kv_location("llm/openai_api_key", "vocalis")
    assert (location.path, location.key) == ("vocalis/llm", "openai_api_key")


def test_a_one_segment_path_is_a_key_of_the_base_secret() -> None:
    location = kv_location("/token/", "/prod/vocalis/")
    assert (location.path, location.key) == ("prod/vocalis", "token")


@pytest.mark.parametrize("path", ["", "a//b", "../x", "a/./b", "a/../../b"])
def test_paths_that_could_escape_the_base_path_are_rejected(path: str) -> None:
    with pytest.raises(SecretNotFound):
        kv_location(path, "vocalis")


# --- reading --------------------------------------------------------------------------
async def test_reads_a_secret_from_the_kv_v2_mount(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "sk-test-1", "other_api_key": "x"})
    assert await vault.provider().get("llm/openai_api_key") == "sk-test-1"


async def test_an_unknown_kv_secret_is_secret_not_found(vault: Vault) -> None:
    with pytest.raises(SecretNotFound):
        await vault.provider().get("llm/openai_api_key")


async def test_an_unknown_key_in_an_existing_kv_secret_is_secret_not_found(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "sk-test-1"})
    provider = vault.provider()
    assert await provider.get_optional("llm/mistral_api_key") is None
    with pytest.raises(SecretNotFound):
        await provider.get("llm/mistral_api_key")


async def test_a_deleted_latest_version_is_secret_not_found(vault: Vault) -> None:
    vault.write("webhooks", {"encryption_key": "k1"})
    vault.root.secrets.kv.v2.delete_latest_version_of_secret(
        path=f"{vault.base_path}/webhooks", mount_point="secret"
    )
    with pytest.raises(SecretNotFound):
        await vault.provider().get("webhooks/encryption_key")


async def test_the_settings_select_the_vault_provider(vault: Vault) -> None:
    vault.write("s3", {"access_key_id": "AKIA1"})
    settings = Settings(
        secrets_backend="vault",
        vault_addr=vault.server.addr,
        vault_token=vault.server.root_token,
        vault_base_path=vault.base_path,
    )
    provider = build_secrets(settings)
    assert isinstance(provider, VaultSecretProvider)
    vault.providers.append(provider)
    assert await provider.get("s3/access_key_id") == "AKIA1"


# --- rotation and the cache ------------------------------------------------------------
async def test_a_rotated_secret_is_seen_after_invalidate(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "v1"})
    provider = vault.provider(cache_ttl_s=300)
    assert await provider.get("llm/openai_api_key") == "v1"
    vault.write("llm", {"openai_api_key": "v2"})
    assert await provider.get("llm/openai_api_key") == "v1"  # still cached
    provider.invalidate()
    assert await provider.get("llm/openai_api_key") == "v2"


async def test_a_rotated_secret_is_seen_once_the_cache_ttl_has_passed(vault: Vault) -> None:
    clock = FakeClock()
    vault.write("llm", {"openai_api_key": "v1"})
    provider = vault.provider(cache_ttl_s=0.5, clock=clock)
    assert await provider.get("llm/openai_api_key") == "v1"
    vault.write("llm", {"openai_api_key": "v2"})
    clock.advance(0.4)
    assert await provider.get("llm/openai_api_key") == "v1"
    clock.advance(0.2)
    assert await provider.get("llm/openai_api_key") == "v2"


async def test_invalidating_one_path_forgets_only_its_kv_secret(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "v1"})
    vault.write("s3", {"access_key_id": "a1"})
    provider = vault.provider(cache_ttl_s=300)
    await provider.get("llm/openai_api_key")
    await provider.get("s3/access_key_id")
    vault.write("llm", {"openai_api_key": "v2"})
    vault.write("s3", {"access_key_id": "a2"})
    provider.invalidate("llm/openai_api_key")
    assert await provider.get("llm/openai_api_key") == "v2"
    assert await provider.get("s3/access_key_id") == "a1"


# --- auth -----------------------------------------------------------------------------
def _approle(vault: Vault, role: str) -> VaultAuth:
    vault.root.auth.approle.create_or_update_approle(
        role, token_policies=[READ_POLICY], token_ttl="60s"
    )
    role_id = vault.root.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = vault.root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    return VaultAuth(method="approle", role_id=role_id, secret_id=secret_id)


async def test_approle_login_reads_secrets(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "sk-approle"})
    provider = vault.provider(_approle(vault, "vocalis-read"))
    assert await provider.get("llm/openai_api_key") == "sk-approle"


async def test_approle_logs_in_again_when_its_token_is_revoked(vault: Vault) -> None:
    vault.write("llm", {"openai_api_key": "v1"})
    provider = vault.provider(_approle(vault, "vocalis-relogin"), cache_ttl_s=0)
    assert await provider.get("llm/openai_api_key") == "v1"
    vault.root.sys.revoke_prefix("auth/approle/login")
    assert await provider.get("llm/openai_api_key") == "v1"


async def test_a_wrong_approle_secret_id_fails_in_plain_words(vault: Vault) -> None:
    auth = _approle(vault, "vocalis-wrong")
    provider = vault.provider(VaultAuth(method="approle", role_id=auth.role_id, secret_id="no"))
    with pytest.raises(VaultAuthFailed, match="refused our approle credentials"):
        await provider.get("llm/openai_api_key")


async def test_an_invalid_token_fails_in_plain_words(vault: Vault) -> None:
    provider = vault.provider(VaultAuth(token="not-a-token"))
    with pytest.raises(VaultAuthFailed, match="refused our token credentials") as raised:
        await provider.get("llm/openai_api_key")
    assert isinstance(raised.value, BackendUnavailable)


def test_each_auth_method_says_which_settings_it_lacks() -> None:
    with pytest.raises(ValueError, match="VOCALIS_VAULT_SECRET_ID"):
        VaultSecretProvider("http://127.0.0.1:1", auth=VaultAuth(method="approle", role_id="r"))
    with pytest.raises(ValueError, match="VOCALIS_VAULT_TOKEN"):
        VaultSecretProvider("http://127.0.0.1:1", auth=VaultAuth())


# --- kubernetes auth: OpenBao asks a stand-in Kubernetes API to review the token ------
SERVICE_ACCOUNT = ("vocalis", "vocalis-api", "3f1c2a9e-0000-4000-8000-000000000001")


def _service_account_jwt() -> str:
    namespace, name, uid = SERVICE_ACCOUNT

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    }
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


class _TokenReviewHandler(BaseHTTPRequestHandler):
    """Answers TokenReview like the Kubernetes API: only our JWT is authenticated."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        namespace, name, uid = SERVICE_ACCOUNT
        user = {"username": f"system:serviceaccount:{namespace}:{name}", "uid": uid}
        ok = review["spec"]["token"] == _service_account_jwt()
        body = json.dumps({"status": {"authenticated": ok, "user": user if ok else {}}}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def _ca_certificate() -> str:
    """Any PEM certificate: OpenBao requires one in the config even for an http:// host."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.now(UTC)
    builder = x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
    builder = builder.public_key(key.public_key()).serial_number(1).not_valid_before(now)
    certificate = builder.not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def kubernetes_auth(configured_openbao: OpenBaoServer) -> Iterator[str]:
    """Kubernetes auth enabled in OpenBao with the role `vocalis` bound to our account."""
    api = HTTPServer(("127.0.0.1", 0), _TokenReviewHandler)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    root = configured_openbao.client()
    root.sys.enable_auth_method("kubernetes")
    config = {
        "kubernetes_host": f"http://127.0.0.1:{api.server_port}",
        "kubernetes_ca_cert": _ca_certificate(),
        "disable_local_ca_jwt": True,
    }
    root.write_data("auth/kubernetes/config", data=config)
    namespace, name, _ = SERVICE_ACCOUNT
    role = {
        "bound_service_account_names": [name],
        "bound_service_account_namespaces": [namespace],
        "token_policies": [READ_POLICY],
        "token_ttl": "60s",
    }
    root.write_data("auth/kubernetes/role/vocalis", data=role)
    yield "vocalis"
    api.shutdown()


async def test_kubernetes_auth_logs_in_with_the_service_account_token(
    vault: Vault, kubernetes_auth: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(_service_account_jwt() + "\n")
    vault.write("llm", {"openai_api_key": "sk-k8s"})
    auth = VaultAuth(method="kubernetes", k8s_role=kubernetes_auth, k8s_token_path=token_file)
    assert await vault.provider(auth).get("llm/openai_api_key") == "sk-k8s"


async def test_kubernetes_auth_without_a_token_file_fails_in_plain_words(
    vault: Vault, kubernetes_auth: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-token"
    auth = VaultAuth(method="kubernetes", k8s_role=kubernetes_auth, k8s_token_path=missing)
    with pytest.raises(VaultAuthFailed, match="cannot read the Kubernetes service-account"):
        await vault.provider(auth).get("llm/openai_api_key")


# --- token renewal --------------------------------------------------------------------
def _renewed(vault: Vault, token: str) -> bool:
    return "last_renewal_time" in vault.root.auth.token.lookup(token)["data"]


async def test_a_renewable_token_is_renewed_when_near_expiry(vault: Vault) -> None:
    clock = FakeClock()
    token = vault.reader_token("60s")
    vault.write("llm", {"openai_api_key": "v1"})
    provider = vault.provider(VaultAuth(token=token), cache_ttl_s=0, clock=clock)
    await provider.get("llm/openai_api_key")
    clock.advance(45)  # a quarter of the TTL left
    await provider.get("llm/openai_api_key")
    assert _renewed(vault, token)


async def test_a_token_far_from_expiry_is_not_renewed(vault: Vault) -> None:
    clock = FakeClock()
    token = vault.reader_token("60s")
    vault.write("llm", {"openai_api_key": "v1"})
    provider = vault.provider(VaultAuth(token=token), cache_ttl_s=0, clock=clock)
    await provider.get("llm/openai_api_key")
    clock.advance(10)
    await provider.get("llm/openai_api_key")
    assert not _renewed(vault, token)


async def test_a_reader_token_cannot_write(vault: Vault) -> None:
    """Guards the renewal tests: their token really is the limited reader, not root."""
    reader = vault.server.client(vault.reader_token("60s"))
    with pytest.raises(vault_errors.Forbidden):
        reader.secrets.kv.v2.create_or_update_secret(
            path=f"{vault.base_path}/x", secret={"k": "v"}, mount_point="secret"
        )


# --- health ---------------------------------------------------------------------------
async def test_ping_succeeds_against_a_healthy_server(vault: Vault) -> None:
    await vault.provider().ping()


async def test_ping_against_a_stopped_server_fails_with_a_clear_message(
    throwaway_openbao: OpenBaoServer,
) -> None:
    provider = VaultSecretProvider(
        throwaway_openbao.addr, auth=VaultAuth(token=throwaway_openbao.root_token)
    )
    await provider.ping()
    throwaway_openbao.stop()
    with pytest.raises(VaultUnavailable, match=r"Vault at http://127\.0\.0\.1:\d+ did not answer"):
        await provider.ping()


async def test_ping_against_a_sealed_server_says_it_is_sealed(
    throwaway_openbao: OpenBaoServer,
) -> None:
    throwaway_openbao.client().sys.seal()
    provider = VaultSecretProvider(
        throwaway_openbao.addr, auth=VaultAuth(token=throwaway_openbao.root_token)
    )
    with pytest.raises(VaultUnavailable, match="is sealed"):
        await provider.ping()


async def test_reading_from_a_stopped_server_is_backend_unavailable(
    throwaway_openbao: OpenBaoServer,
) -> None:
    provider = VaultSecretProvider(
        throwaway_openbao.addr, auth=VaultAuth(token=throwaway_openbao.root_token)
    )
    throwaway_openbao.stop()
    with pytest.raises(BackendUnavailable, match="did not answer"):
        await provider.get("llm/openai_api_key")


# --- the event loop -------------------------------------------------------------------
@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts connections and never answers (a hung Vault)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
async def hung_provider(silent_server: str) -> AsyncIterator[VaultSecretProvider]:
    """A provider whose Vault never answers, with a one-second timeout."""
    provider = VaultSecretProvider(silent_server, auth=VaultAuth(token="t"), timeout_s=1)
    yield provider
    provider.close()


async def test_a_hung_vault_does_not_block_the_event_loop(
    hung_provider: VaultSecretProvider,
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    with pytest.raises(VaultUnavailable, match="did not answer"):
        await hung_provider.get("llm/openai_api_key")
    ticker.cancel()
    assert ticks >= 10  # the loop kept running for the whole one-second timeout


def test_the_provider_satisfies_the_secrets_port() -> None:
    provider = VaultSecretProvider("http://127.0.0.1:1", auth=VaultAuth(token="t"))
    assert isinstance(provider, SecretProvider)
    assert provider.name == "vault"
