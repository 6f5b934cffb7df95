"""The SSRF guard refuses internal addresses in every spelling, unless allow-listed."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from vocalis.core.errors import CATALOGUE
from vocalis.core.ssrf import (
    Allowlist,
    OutboundUrlForbidden,
    check_url,
    forbidden_reason,
    guarded_client,
    parse_ip_literal,
)


def resolver(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    """A DNS at the edge of the process: names to addresses."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"NXDOMAIN {host}")
        return table[host]

    return resolve


PUBLIC = resolver({"example.com": ["93.184.215.14"]})


async def refused(url: str, **kwargs: object) -> str:
    with pytest.raises(OutboundUrlForbidden) as info:
        await check_url(url, **kwargs)  # type: ignore[arg-type]
    return info.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/admin",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # CGNAT
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://0.0.0.0/",
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[::]/",
    ],
)
async def test_internal_ip_literals_are_refused(url: str) -> None:
    await refused(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0x7f.1/",  # hex + short form
        "http://0x7f000001/",
        "http://0177.0.0.1/",  # octal
        "http://017700000001/",
        "http://127.1/",
        "http://0/",
    ],
)
async def test_numeric_spellings_of_loopback_are_refused(url: str) -> None:
    detail = await refused(url)
    assert "address" in detail


def test_numeric_forms_decode_like_inet_aton() -> None:
    assert str(parse_ip_literal("2130706433")) == "127.0.0.1"
    assert str(parse_ip_literal("0x7f.1")) == "127.0.0.1"
    assert parse_ip_literal("example.com") is None


async def test_localhost_is_refused_after_real_resolution() -> None:
    detail = await refused("http://localhost:8000/")
    assert "loopback" in detail


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "169.254.169.254", "::1", "fe80::abcd", "fc00::2", "::ffff:127.0.0.1"],
)
async def test_names_resolving_to_internal_addresses_are_refused(address: str) -> None:
    await refused("https://innocent.example/", resolver=resolver({"innocent.example": [address]}))


async def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    dns = resolver({"mixed.example": ["93.184.215.14", "10.0.0.1"]})
    await refused("https://mixed.example/", resolver=dns)


async def test_public_names_pass_with_their_addresses() -> None:
    target = await check_url("https://Example.COM./path?q=1", resolver=PUBLIC)
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 443)
    assert target.addresses == ("93.184.215.14",)


async def test_unresolvable_names_are_refused() -> None:
    await refused("https://nowhere.invalid/", resolver=PUBLIC)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/", "example.com/x"]
)
async def test_only_http_and_https_are_allowed(url: str) -> None:
    detail = await refused(url, resolver=PUBLIC)
    assert "scheme" in detail


async def test_credentials_in_the_url_are_refused() -> None:
    await refused("https://user:pw@example.com/", resolver=PUBLIC)


async def test_an_allow_listed_host_may_be_private() -> None:
    dns = resolver({"crm.internal": ["10.0.0.7"]})
    target = await check_url("http://crm.internal/", ["crm.internal"], resolver=dns)
    assert target.allowlisted and target.addresses == ("10.0.0.7",)


async def test_a_wildcard_allows_subdomains_only() -> None:
    dns = resolver({"a.svc.internal": ["10.0.0.8"], "svc.internal": ["10.0.0.9"]})
    await check_url("http://a.svc.internal/", ["*.svc.internal"], resolver=dns)
    await refused("http://svc.internal/", allowlist=["*.svc.internal"], resolver=dns)


async def test_an_allow_listed_cidr_admits_addresses_inside_it_only() -> None:
    allow = Allowlist(["10.0.0.0/8", "fd00::/8"])
    await check_url("http://10.20.30.40/", allow)
    await check_url("http://[fd00::5]/", allow)
    await refused("http://192.168.0.1/", allowlist=allow)
    await refused("http://127.0.0.1/", allowlist=allow)


def test_public_addresses_have_no_forbidden_reason() -> None:
    import ipaddress

    assert forbidden_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert forbidden_reason(ipaddress.ip_address("2606:4700::1111")) is None
    assert forbidden_reason(ipaddress.ip_address("169.254.169.254")) == "link-local"


def test_the_error_code_is_catalogued_as_400() -> None:
    assert CATALOGUE["outbound_url_forbidden"].status == 400


# --- the guarded HTTP client ----------------------------------------------------------------
class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_guarded_client_connects_to_the_checked_address_keeping_the_host_header(
    echo_port: int,
) -> None:
    dns = resolver({"api.partner.test": ["127.0.0.1"]})
    async with guarded_client(["127.0.0.1/32"], resolver=dns) as client:
        response = await client.get(f"http://api.partner.test:{echo_port}/")
    assert response.text == f"host=api.partner.test:{echo_port}"


async def test_guarded_client_refuses_a_rebinding_answer_at_connect_time(echo_port: int) -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)

    url = f"http://rebind.test:{echo_port}/"
    await check_url(url, resolver=rebinding)  # the first answer looks public
    async with guarded_client(resolver=rebinding) as client:
        with pytest.raises(OutboundUrlForbidden):
            await client.get(url)  # the second answer is checked before connecting


async def test_guarded_client_refuses_loopback_without_allowlist(echo_port: int) -> None:
    async with guarded_client() as client:
        with pytest.raises(OutboundUrlForbidden):
            await asyncio.wait_for(client.get(f"http://127.0.0.1:{echo_port}/"), 5)


# --- TLS: the pinned connection still verifies the certificate for the original name ----------
def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_echo(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS echo server with a certificate for `api.partner.test`, and a client context."""
    cert, key = _self_signed(tmp_path, "api.partner.test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1], ssl.create_default_context(cafile=str(cert))
    server.shutdown()
    server.server_close()


async def test_https_to_a_pinned_address_verifies_the_original_name(
    tls_echo: tuple[int, ssl.SSLContext],
) -> None:
    port, trust = tls_echo
    dns = resolver({"api.partner.test": ["127.0.0.1"]})
    async with guarded_client(["127.0.0.1/32"], resolver=dns, verify=trust) as client:
        response = await client.get(f"https://api.partner.test:{port}/")
    assert response.text == f"host=api.partner.test:{port}"


async def test_https_to_a_pinned_address_rejects_a_certificate_for_another_name(
    tls_echo: tuple[int, ssl.SSLContext],
) -> None:
    port, trust = tls_echo
    dns = resolver({"other.partner.test": ["127.0.0.1"]})
    async with guarded_client(["127.0.0.1/32"], resolver=dns, verify=trust) as client:
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            await client.get(f"https://other.partner.test:{port}/")
