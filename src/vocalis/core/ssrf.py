"""The one SSRF guard: every outbound URL the platform fetches on a user's behalf goes here.

`check_url` parses the URL (http and https only), resolves the host and refuses any
address that is not publicly routable — loopback, private (RFC 1918, CGNAT, ULA),
link-local (which includes the cloud metadata address 169.254.169.254), unspecified,
multicast, reserved, and IPv6 forms embedding such an IPv4 address (`::ffff:127.0.0.1`,
NAT64, 6to4, Teredo) — unless the host or a CIDR is on the allow-list
(`VOCALIS_OUTBOUND_ALLOWLIST`). Numeric host spellings that resolvers accept
(`2130706433`, `0x7f.1`, `0177.0.0.1`) are decoded the way `inet_aton` does, so they get
no further than `127.0.0.1` would.

Checking a name and then letting the HTTP client resolve it again would leave a window for
DNS rebinding (the second answer may differ). `GuardedTransport` (for `httpx` clients) and
`GuardedTransport2` (for `httpx2`, the client of the `openai` and `mcp` SDKs) close it, with
one implementation: they check each request — every redirect hop, since a client sends each
hop through its transport — and connect to the very address they checked, while the
request keeps its `Host` header and TLS uses the original name for SNI and certificate
verification (the `sni_hostname` extension). Every outbound call a user can aim uses them:
organisations' model endpoints and MCP servers (`guarded_client2`), webhook deliveries,
carriers' REST APIs and the `http_request` tool (`guarded_client`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import httpx2

from vocalis.core.errors import RequestError, register

OUTBOUND_URL_FORBIDDEN = register(
    "outbound_url_forbidden",
    400,
    "Outbound URL forbidden",
    "A URL the platform was asked to call is not http(s), cannot be resolved, or points "
    "at a loopback, private, link-local or metadata address that is not allow-listed.",
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = ("http", "https")
# What inet_aton accepts: up to four dot-separated decimal, octal or hex parts.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+)){0,3}\.?", re.I)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # CGNAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundUrlForbidden(RequestError):
    """The URL may not be fetched."""

    code = OUTBOUND_URL_FORBIDDEN


@dataclass(frozen=True)
class ResolvedTarget:
    """A URL that passed the guard, and the addresses it may be fetched from."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, lower-case, no trailing dot
    port: int
    addresses: tuple[str, ...]
    allowlisted: bool = False


class Allowlist:
    """Hosts (exact, or `*.suffix`) and CIDRs the guard lets through even when private."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry.startswith("*."):
                    self.suffixes.append(entry[1:])
                else:
                    self.hosts.add(entry)

    @classmethod
    def of(cls, value: Allowlist | Iterable[str] | None) -> Allowlist:
        """An Allowlist from entries (or itself)."""
        if isinstance(value, Allowlist):
            return value
        return cls(value or ())

    def allows_host(self, host: str) -> bool:
        """Whether the host name is allow-listed."""
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        """Whether the address lies in an allow-listed network."""
        return any(address in net for net in self.networks if net.version == address.version)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address may not be contacted, or None when it is publicly routable."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return f"IPv4-embedding address ({reason})" if reason else None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", address in _SHARED_ADDRESS_SPACE),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host spells, including inet_aton's numeric forms; None for names."""
    text = unquote(host)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
        except OSError:
            raise OutboundUrlForbidden(f"malformed numeric host {host!r}") from None
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve a name with the system resolver (in the loop's executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def check_url(
    url: str | httpx.URL,
    allowlist: Allowlist | Iterable[str] | None = None,
    *,
    resolver: Resolver | None = None,
) -> ResolvedTarget:
    """Refuse a URL unless it is http(s) and every address it resolves to may be contacted."""
    allowed = Allowlist.of(allowlist)
    parsed = _parse(url)
    scheme = parsed.scheme
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    port = parsed.port or (443 if scheme == "https" else 80)
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
        host = str(literal)
    else:
        addresses = await _resolve(host, port, resolver or system_resolver)
    host_allowed = allowed.allows_host(host)
    if not host_allowed:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason and not allowed.allows_address(address):
                raise OutboundUrlForbidden(
                    f"{host} resolves to a {reason} address ({address}); "
                    "add it to VOCALIS_OUTBOUND_ALLOWLIST to allow it",
                    extra={"host": host, "address": str(address), "reason": reason},
                )
    return ResolvedTarget(
        url=str(parsed),
        scheme=scheme,
        host=host,
        port=port,
        addresses=tuple(str(a) for a in addresses),
        allowlisted=host_allowed,
    )


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise OutboundUrlForbidden(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise OutboundUrlForbidden(f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not parsed.raw_host:
        raise OutboundUrlForbidden("the URL has no host")
    if parsed.userinfo:
        # Credentials in URLs end up in logs and confuse parsers; use headers instead.
        raise OutboundUrlForbidden("credentials in the URL are not allowed")
    return parsed


async def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        raw = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise OutboundUrlForbidden(f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for item in raw:
        try:
            addresses.append(ipaddress.ip_address(item.split("%", 1)[0]))
        except ValueError:
            raise OutboundUrlForbidden(f"{host} resolved to a non-address {item!r}") from None
    if not addresses:
        raise OutboundUrlForbidden(f"{host} has no address")
    return addresses


class _PinningTransport:
    """What both guarded transports do; `_http` is the library (`httpx` or `httpx2`).

    Each request — every redirect hop included, since the clients send each hop through
    their transport — is checked by `check_url` and sent to the very address that passed
    the check. One connection pool per host name: a pooled TLS connection was verified for
    one name only, so two names on the same address must never share it.
    """

    _http: Any

    def __init__(
        self,
        allowlist: Allowlist | Iterable[str] | None = None,
        *,
        resolver: Resolver | None = None,
        **transport_options: Any,
    ) -> None:
        self.allowlist = Allowlist.of(allowlist)
        self._resolver = resolver
        self._options = {"trust_env": False, **transport_options}
        self._transports: dict[str, Any] = {}

    async def handle_async_request(self, request: Any) -> Any:
        """Check the URL, then send the request to the address that passed the check."""
        target = await check_url(str(request.url), self.allowlist, resolver=self._resolver)
        extensions = dict(request.extensions)
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
        pinned = self._http.Request(
            request.method,
            request.url.copy_with(host=target.addresses[0]),
            headers=request.headers,  # carries the original Host header
            stream=request.stream,
            extensions=extensions,
        )
        transport = self._transports.get(target.host)
        if transport is None:
            transport = self._http.AsyncHTTPTransport(**self._options)
            self._transports[target.host] = transport
        return await transport.handle_async_request(pinned)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()


class GuardedTransport(_PinningTransport, httpx.AsyncBaseTransport):
    """The guard for `httpx` clients (webhooks, carriers, the `http_request` tool)."""

    _http = httpx


class GuardedTransport2(_PinningTransport, httpx2.AsyncBaseTransport):
    """The guard for `httpx2` clients: the HTTP client of the `openai` and `mcp` SDKs."""

    _http = httpx2


def guarded_client(
    allowlist: Allowlist | Iterable[str] | None = None,
    *,
    timeout: float = 10.0,
    resolver: Resolver | None = None,
    follow_redirects: bool = False,
    **transport_options: Any,
) -> httpx.AsyncClient:
    """An httpx client whose every request (and redirect) passes the SSRF guard."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allowlist, resolver=resolver, **transport_options),
        timeout=timeout,
        follow_redirects=follow_redirects,
        trust_env=False,  # an environment proxy would bypass the address pinning
    )


def guarded_client2(
    allowlist: Allowlist | Iterable[str] | None = None,
    *,
    timeout: float | httpx2.Timeout = 30.0,
    resolver: Resolver | None = None,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = False,
    **transport_options: Any,
) -> httpx2.AsyncClient:
    """An httpx2 client (for the `openai` and `mcp` SDKs) whose every request (and
    redirect) passes the SSRF guard."""
    return httpx2.AsyncClient(
        transport=GuardedTransport2(allowlist, resolver=resolver, **transport_options),
        timeout=timeout,
        headers=headers,
        follow_redirects=follow_redirects,
        trust_env=False,  # an environment proxy would bypass the address pinning
    )
