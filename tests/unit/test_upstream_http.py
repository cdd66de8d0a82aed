"""The upstream HTTP client against real local servers: timeouts, TLS, trace headers, the
pool, and the error types that tell the adapters whether a request can have gone out."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fakes import journal_task, softwareone_regenerator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from regen_sync.config import SoftwareOneSettings
from regen_sync.domain import Failed, FailureReason
from regen_sync.observability import Metrics, Tracing
from regen_sync.upstream import SoftwareOneClient, upstream_http_client
from regen_sync.upstream.http import REQUEST_NOT_SENT_ERRORS

Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def web_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering every path; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=tls)
    await site.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(on_connection: Connection) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that runs ``on_connection`` for each connection."""
    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def refused_url() -> str:
    """A URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class RequestsSeen:
    """Answers nothing until released; counts the requests that arrived whole."""

    def __init__(self) -> None:
        self.count = 0
        self.released = asyncio.Event()

    async def hold_without_answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        self.count += 1
        await self.released.wait()
        writer.close()

    async def close_without_answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        self.count += 1
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Reads one request; returns its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)
    return head


async def cut_off_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id"')
    await writer.drain()
    writer.close()


async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    # Linger 0: closing sends a TCP RST instead of a FIN.
    writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    writer.transport.abort()


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()
    writer.close()


def upstream_settings(**settings: object) -> SoftwareOneSettings:
    return SoftwareOneSettings.model_validate(
        {"base_url": "http://127.0.0.1:9", "api_token": "T", "timeout_seconds": 5} | settings
    )


def client(**settings: object) -> httpx.AsyncClient:
    return upstream_http_client(upstream_settings(**settings), Tracing.disabled())


async def test_a_slow_answer_is_a_read_timeout_after_the_configured_time() -> None:
    seen = RequestsSeen()
    async with raw_server(seen.hold_without_answer) as url, client(timeout_seconds=0.2) as http:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(url + "/slow", json={})
        assert 0.15 < asyncio.get_running_loop().time() - started < 2
        seen.released.set()


async def test_a_refused_connection_is_a_connect_error_the_request_never_left() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.post(refused_url() + "/x", json={})
    assert isinstance(raised.value, REQUEST_NOT_SENT_ERRORS)


@pytest.mark.parametrize(
    ("server", "error"),
    [
        (RequestsSeen().close_without_answer, httpx.RemoteProtocolError),
        (cut_off_mid_body, httpx.ReadError),
        (reset_after_request, httpx.ReadError),
        (not_http, httpx.RemoteProtocolError),
    ],
    ids=["closed-before-answer", "cut-off-mid-body", "reset-after-request", "not-http"],
)
async def test_a_connection_failing_after_the_request_went_out_may_have_reached_the_server(
    server: Connection, error: type[httpx.TransportError]
) -> None:
    async with raw_server(server) as url, client() as http:
        with pytest.raises(error) as raised:
            await http.post(url + "/x", json={"a": 1})
    assert not isinstance(raised.value, REQUEST_NOT_SENT_ERRORS)


async def test_the_trace_context_and_default_headers_reach_the_upstream() -> None:
    received: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        received.append(request)
        return web.json_response({})

    tracing = Tracing.exporting_to(
        SimpleSpanProcessor(InMemorySpanExporter()), service_name="t", version="0", sample_ratio=1
    )
    http = upstream_http_client(upstream_settings(), tracing)
    async with web_server(record) as url, http:
        with tracing.upstream_call("regenerate", "softwareone") as span:
            assert span is not None
            await http.post(url + "/x", json={}, headers={"Authorization": "Bearer T"})
    headers = received[0].headers
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert headers["traceparent"].split("-")[1] == trace_id
    assert (headers["accept"], headers["user-agent"]) == ("application/json", "regen-sync")
    assert headers["authorization"] == "Bearer T"


async def test_more_calls_than_any_pool_default_go_out_at_once_and_connections_are_reused() -> None:
    # aiohttp's pool holds 100 connections by default; the upstream gates are the only bound.
    calls = 120
    peers: set[tuple[str, int]] = set()
    arrived = 0
    all_arrived = asyncio.Event()

    async def answer_when_all_arrived(request: web.Request) -> web.Response:
        nonlocal arrived
        peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        arrived += 1
        if arrived == calls:
            all_arrived.set()
        await all_arrived.wait()
        return web.json_response({})

    async with web_server(answer_when_all_arrived) as url, client() as http:
        answers = await asyncio.wait_for(
            asyncio.gather(*(http.post(url + "/x", json={}) for _ in range(calls))), timeout=10
        )
        assert {answer.status_code for answer in answers} == {200}
        for _ in range(10):
            await http.post(url + "/x", json={})
    assert arrived == calls + 10
    assert len(peers) == calls, "later calls reuse kept-alive connections"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_tls: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a certificate it issued for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regen-sync test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / name for name in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    return Pki(ca_path, server_tls)


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def test_a_certificate_from_an_unknown_ca_is_refused(pki: Pki) -> None:
    async with web_server(ok, pki.server_tls) as url, client() as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post(url + "/x", json={})


async def test_a_ca_named_by_ssl_cert_file_is_trusted(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    async with web_server(ok, pki.server_tls) as url, client() as http:
        assert (await http.post(url + "/x", json={})).json() == {"ok": True}


async def test_verification_turned_off_accepts_any_certificate(pki: Pki) -> None:
    async with web_server(ok, pki.server_tls) as url, client(verify_tls=False) as http:
        assert (await http.post(url + "/x", json={})).json() == {"ok": True}


def softwareone(base_url: str, http: httpx.AsyncClient) -> SoftwareOneClient:
    settings = SoftwareOneSettings(base_url=base_url, api_token="t0ken")  # type: ignore[arg-type]
    return SoftwareOneClient(settings, http, Metrics())


@pytest.mark.parametrize("answer", ["hold_without_answer", "close_without_answer"])
async def test_softwareone_does_not_repeat_a_request_that_may_have_reached_it(
    answer: str,
) -> None:
    seen = RequestsSeen()
    async with raw_server(getattr(seen, answer)) as url:
        async with client(timeout_seconds=0.3) as http:
            service = softwareone_regenerator(softwareone(url, http), max_attempts=3)
            outcome = await service.regenerate(journal_task("BJO-1"))
        seen.released.set()
    assert isinstance(outcome.result, Failed)
    assert outcome.result.reason is FailureReason.OUTCOME_UNKNOWN
    assert outcome.result.retryable, "a re-drive may repeat it once someone has checked"
    assert (outcome.attempts, seen.count) == (1, 1)


async def test_softwareone_is_tried_again_when_the_request_never_left() -> None:
    url = refused_url()
    async with client() as http:
        service = softwareone_regenerator(softwareone(url, http), max_attempts=3)
        outcome = await service.regenerate(journal_task("BJO-1"))
    assert isinstance(outcome.result, Failed)
    assert outcome.result.reason is FailureReason.RETRIES_EXHAUSTED
    assert outcome.attempts == 3
    assert "could not reach SoftwareOne: ConnectError" in outcome.result.message


@dataclass
class ForwardProxy:
    """A plain-HTTP forward proxy that answers for the origin: enough to see a request came
    through it, in absolute form, as HTTP_PROXY makes a client send it."""

    request_lines: list[bytes]

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request_lines.append((await read_request(reader)).split(b"\r\n")[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()


async def test_the_environment_proxy_carries_the_upstream_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ForwardProxy([])
    origin = "http://localhost:8080"
    async with raw_server(proxy.answer) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with client(base_url=origin) as http:
            response = await http.post(origin + "/x", json={})
    assert response.status_code == 200
    assert proxy.request_lines == [b"POST http://localhost:8080/x HTTP/1.1"]


async def test_no_proxy_exempts_the_upstream_host(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ForwardProxy([])
    received: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        received.append(request)
        return web.json_response({})

    async with raw_server(proxy.answer) as proxy_url, web_server(record) as url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with client(base_url=url) as http:
            await http.post(url + "/x", json={})
    assert (len(received), proxy.request_lines) == (1, [])
