"""Secrets from HashiCorp Vault (or OpenBao): the KV version 2 engine, read through hvac.

Path mapping: the last segment of a secret path is the key inside one KV secret, and the
segments before it, under the base path, name that KV secret. With mount `secret` and base
path `vocalis`, `llm/openai_api_key` is the key `openai_api_key` of the KV secret
`vocalis/llm` (`GET /v1/secret/data/vocalis/llm`); a one-segment path `x` is the key `x` of
the KV secret `vocalis` itself. So related values (an S3 key id and its secret) live in one
KV secret and rotate together in one write.

Auth: a token (`VOCALIS_VAULT_TOKEN`), AppRole (role id + secret id) or Kubernetes (role +
the pod's service-account token file). A renewable token is renewed (renew-self) once less
than a third of its TTL is left; tokens from a login are replaced by a fresh login when
renewal fails or Vault refuses them. The token needs `lookup-self` (Vault's default policy).

Reads are cached in process for `cache_ttl_s` (default 30 s), so a rotated secret is seen
within that time; `invalidate()` forgets the cache at once. hvac is synchronous: every call
to Vault runs in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
import requests
import structlog
from hvac import exceptions as vault_errors

from vocalis.core.errors import BackendUnavailable
from vocalis.ports.secrets import SecretNotFound
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

AuthMethod = Literal["token", "approle", "kubernetes"]
K8S_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
RENEW_WHEN_LEFT = 1 / 3  # renew once this fraction of the token's TTL remains
_T = TypeVar("_T")


class VaultUnavailable(BackendUnavailable):
    """Vault did not answer, is sealed or uninitialised, or failed a request."""


class VaultAuthFailed(VaultUnavailable):
    """Vault refused our credentials (bad token, role or policy)."""


@dataclass(frozen=True)
class VaultAuth:
    """How the provider proves who it is to Vault."""

    method: AuthMethod = "token"
    token: str = ""
    role_id: str = ""
    secret_id: str = ""
    k8s_role: str = ""
    k8s_token_path: Path = K8S_TOKEN_PATH
    mount: str = ""  # the auth method's mount; empty = its default ("approle", "kubernetes")

    def check(self) -> None:
        """Raise ValueError, in plain words, when the chosen method lacks what it needs."""
        missing = {
            "token": [("VOCALIS_VAULT_TOKEN", self.token)],
            "approle": [
                ("VOCALIS_VAULT_ROLE_ID", self.role_id),
                ("VOCALIS_VAULT_SECRET_ID", self.secret_id),
            ],
            "kubernetes": [("VOCALIS_VAULT_K8S_ROLE", self.k8s_role)],
        }[self.method]
        names = [name for name, value in missing if not value]
        if names:
            raise ValueError(f"Vault {self.method} auth needs {', '.join(names)}")


@dataclass(frozen=True)
class KvLocation:
    """Where one secret lives in the KV engine: a KV secret path and a key inside it."""

    path: str
    key: str


def kv_location(path: str, base_path: str) -> KvLocation:
    """Map a secret path (`llm/openai_api_key`) to its KV secret and key; see module doc."""
    parts = path.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SecretNotFound(path)
    base = [part for part in base_path.strip("/").split("/") if part]
    parent = [*base, *parts[:-1]]
    if not parent:  # no base path and a one-segment path: there is no KV secret to read
        raise SecretNotFound(path)
    return KvLocation("/".join(parent), parts[-1])


@dataclass(frozen=True)
class _Lease:
    """What Vault said about our token when we last logged in, looked it up or renewed it."""

    ttl_s: float  # 0 = never expires (e.g. a root token)
    renewable: bool
    seen_at: float

    @classmethod
    def from_auth(cls, auth: Mapping[str, Any], now: float) -> _Lease:
        """From the `auth` block of a login or renewal."""
        return cls(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")), now)

    @classmethod
    def from_lookup(cls, data: Mapping[str, Any], now: float) -> _Lease:
        """From the `data` block of a token lookup."""
        return cls(float(data.get("ttl") or 0), bool(data.get("renewable")), now)

    def near_expiry(self, now: float) -> bool:
        """Whether less than `RENEW_WHEN_LEFT` of the TTL is left."""
        return self.ttl_s > 0 and now - self.seen_at >= self.ttl_s * (1 - RENEW_WHEN_LEFT)

    def expired(self, now: float) -> bool:
        """Whether the TTL has run out."""
        return self.ttl_s > 0 and now - self.seen_at >= self.ttl_s


def _text(value: Any) -> str | None:
    """A KV value as the string callers get; empty counts as missing (as in the env adapter)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


class VaultSecretProvider:
    """Reads secrets from a Vault KV v2 mount, with token renewal and a short cache."""

    name = "vault"

    def __init__(
        self,
        addr: str,
        *,
        auth: VaultAuth | None = None,
        mount: str = "secret",
        base_path: str = "vocalis",
        cache_ttl_s: float = 30.0,
        namespace: str = "",
        timeout_s: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth or VaultAuth()
        self._auth.check()
        self._addr = addr
        self._mount = mount.strip("/")
        self._base_path = base_path
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._client = hvac.Client(
            url=addr, token=self._auth.token or None, namespace=namespace or None, timeout=timeout_s
        )
        self._lease: _Lease | None = None
        self._auth_lock = threading.Lock()  # one login/renewal at a time across threads
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultSecretProvider:
        """The provider the `VOCALIS_VAULT_*` settings describe."""
        auth = VaultAuth(
            method=settings.vault_auth_method,
            token=settings.vault_token,
            role_id=settings.vault_role_id,
            secret_id=settings.vault_secret_id,
            k8s_role=settings.vault_k8s_role,
            k8s_token_path=settings.vault_k8s_token_path,
            mount=settings.vault_auth_mount,
        )
        return cls(
            settings.vault_addr,
            auth=auth,
            mount=settings.vault_mount,
            base_path=settings.vault_base_path,
            cache_ttl_s=settings.vault_cache_ttl_seconds,
            namespace=settings.vault_namespace,
        )

    # --- the port ----------------------------------------------------------------------
    async def get(self, path: str) -> str:
        """The secret at `path`; raises `SecretNotFound`."""
        value = await self.get_optional(path)
        if value is None:
            raise SecretNotFound(path)
        return value

    async def get_optional(self, path: str) -> str | None:
        """The secret at `path`, or None."""
        try:
            location = kv_location(path, self._base_path)
        except SecretNotFound:
            return None
        secret = await self._kv_secret(location.path)
        return _text(secret.get(location.key))

    async def ping(self) -> None:
        """Raise `VaultUnavailable` unless Vault is up, unsealed and accepts our token."""
        await asyncio.to_thread(self._check_health)

    # --- cache -------------------------------------------------------------------------
    def invalidate(self, path: str | None = None) -> None:
        """Forget cached reads (all, or the KV secret holding `path`) so the next read is fresh."""
        if path is None:
            self._cache.clear()
            return
        try:
            self._cache.pop(kv_location(path, self._base_path).path, None)
        except SecretNotFound:
            return

    async def _kv_secret(self, kv_path: str) -> Mapping[str, Any]:
        cached = self._cache.get(kv_path)
        if cached is not None and cached[0] > self._clock():
            return cached[1]  # a hit never leaves the event loop
        secret = await asyncio.to_thread(self._read, kv_path)
        if self._cache_ttl_s > 0:
            # A missing secret is cached too, so a hot path asking for an unset optional
            # secret does not reach Vault on every call.
            self._cache[kv_path] = (self._clock() + self._cache_ttl_s, secret)
        return secret

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.adapter.close()

    # --- blocking calls (worker threads only) ------------------------------------------
    def _read(self, kv_path: str) -> dict[str, Any]:
        """One KV v2 read; {} when the secret (or its latest version) does not exist."""

        def read() -> dict[str, Any]:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=kv_path, mount_point=self._mount, raise_on_deleted_version=True
            )
            return dict(response["data"]["data"] or {})

        try:
            return self._authenticated(read, f"reading {self._mount}/{kv_path}")
        except vault_errors.InvalidPath:
            return {}

    def _authenticated(self, call: Callable[[], _T], doing: str) -> _T:
        """Run `call` with a valid token; after a refusal, log in again once and retry."""
        with self._plain_errors(doing):
            self._ensure_token()
            try:
                return call()
            except vault_errors.Forbidden:
                if self._auth.method == "token":
                    raise
                # A revoked or expired login token: a fresh login, then one more try.
                with self._auth_lock:
                    self._login(self._clock())
                return call()

    def _check_health(self) -> None:
        with self._plain_errors("checking health"):
            # Ask for 200 whatever the state, so the JSON body says what is wrong.
            status = self._client.sys.read_health_status(
                method="GET",
                standby_ok=True,
                performance_standby_code=200,  # performance standbys serve reads
                sealed_code=200,
                uninit_code=200,
            )
            if not isinstance(status, dict):
                code = getattr(status, "status_code", "?")
                raise VaultUnavailable(f"Vault at {self._addr} answered HTTP {code} to sys/health")
            if not status.get("initialized", False):
                raise VaultUnavailable(
                    f"Vault at {self._addr} is not initialised: run `vault operator init`"
                )
            if status.get("sealed", False):
                raise VaultUnavailable(
                    f"Vault at {self._addr} is sealed: unseal it (`vault operator unseal`)"
                )
            self._ensure_token()

    def _ensure_token(self) -> None:
        """Log in, learn the token's TTL, or renew it when it is near expiry."""
        with self._auth_lock:
            now = self._clock()
            if self._lease is None:
                if self._auth.method == "token":
                    lookup = self._client.auth.token.lookup_self()
                    self._lease = _Lease.from_lookup(lookup["data"], now)
                else:
                    self._login(now)
            elif self._lease.near_expiry(now):
                self._renew_or_login(now)

    def _renew_or_login(self, now: float) -> None:
        lease = self._lease
        if lease is not None and lease.renewable and not lease.expired(now):
            try:
                renewed = self._client.auth.token.renew_self()
            except vault_errors.VaultError as exc:  # e.g. revoked, or past its max TTL
                log.warning("vault.token_renewal_failed", vault_addr=self._addr, error=str(exc))
            else:
                self._lease = _Lease.from_auth(renewed["auth"], now)
                log.info("vault.token_renewed", vault_addr=self._addr, ttl_s=self._lease.ttl_s)
                return
        if self._auth.method != "token":
            self._login(now)
        else:
            # A static token cannot be replaced from here; stop retrying until it fails.
            self._lease = _Lease(0, False, now)
            log.warning("vault.token_not_renewable", vault_addr=self._addr)

    def _login(self, now: float) -> None:
        """A fresh token from AppRole or Kubernetes auth (the caller holds the auth lock)."""
        auth = self._auth
        try:
            if auth.method == "approle":
                response = self._client.auth.approle.login(
                    auth.role_id, auth.secret_id, mount_point=auth.mount or "approle"
                )
            else:
                response = self._client.auth.kubernetes.login(
                    auth.k8s_role,
                    self._service_account_token(),
                    mount_point=auth.mount or "kubernetes",
                )
        except (vault_errors.InvalidRequest, vault_errors.Forbidden) as exc:
            # Vault answers a bad role id/secret id with 400, a rejected JWT with 403.
            raise VaultAuthFailed(
                f"Vault at {self._addr} refused our {auth.method} credentials at login "
                f"({_reason(exc)}): check the role and its credentials"
            ) from exc
        self._lease = _Lease.from_auth(response["auth"], now)
        log.info("vault.logged_in", vault_addr=self._addr, method=auth.method)

    def _service_account_token(self) -> str:
        # Read on every login: the kubelet rotates projected service-account tokens.
        try:
            return self._auth.k8s_token_path.read_text().strip()
        except OSError as exc:
            raise VaultAuthFailed(
                f"cannot read the Kubernetes service-account token at "
                f"{self._auth.k8s_token_path}: {exc.strerror or exc}"
            ) from exc

    @contextmanager
    def _plain_errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into `VaultUnavailable` in plain words (a missing path passes)."""
        where = f"Vault at {self._addr}"
        try:
            yield
        except vault_errors.InvalidPath:
            raise
        except (vault_errors.Forbidden, vault_errors.Unauthorized) as exc:
            raise VaultAuthFailed(
                f"{where} refused our {self._auth.method} credentials while {doing} "
                f"({_reason(exc)}): check the token or role and its policy"
            ) from exc
        except vault_errors.VaultDown as exc:
            raise VaultUnavailable(f"{where} is sealed or down while {doing}") from exc
        except vault_errors.VaultNotInitialized as exc:
            raise VaultUnavailable(f"{where} is not initialised") from exc
        except vault_errors.VaultError as exc:
            raise VaultUnavailable(f"{where} failed while {doing}: {_reason(exc)}") from exc
        except requests.RequestException as exc:
            raise VaultUnavailable(
                f"{where} did not answer while {doing} ({type(exc).__name__})"
            ) from exc


def _reason(exc: vault_errors.VaultError) -> str:
    """The server's own message, without the URL hvac appends."""
    return str(exc).split(", on ", 1)[0] or type(exc).__name__
