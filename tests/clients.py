"""Client helpers for the end-to-end tests: independent oracles that know nothing about httpsys.

Every helper speaks to a real listening socket over real TLS:

- ``https_get``: the standard library's ``http.client`` over an ``ssl`` socket;
- ``raw_tls`` / ``tls_socket``: raw bytes over TLS, for pipelining, malformed or oversized input;
- ``peer_cert_der``: which certificate the server presented on an ip:port;
- ``curl`` and ``openssl_s_client``: the command-line tools, through ``subprocess``;
- ``parse_responses``: a small HTTP/1.1 response parser (RFC 9112 section 6.3 body rules) so a
  test can split several responses that arrived on one connection.

``error_body`` rebuilds HTTP.sys's HTML error body (reference section 3.3) from its template, so
the tests compare the server's bytes with a body written independently of the C core.
"""

from __future__ import annotations

import contextlib
import os
import http.client
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from typing import Iterator

import pytest

TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


# --------------------------------------------------------------------------------------------
# TLS contexts and sockets


def client_context(
    ca: str | None = None, tls_version: str | None = None, check_hostname: bool = True
) -> ssl.SSLContext:
    """A client context that trusts only ``ca`` (or verifies nothing when ``ca`` is None) and,
    when ``tls_version`` is given, offers exactly that protocol version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.check_hostname = check_hostname
    if tls_version is not None:
        ctx.minimum_version = TLS_VERSIONS[tls_version]
        ctx.maximum_version = TLS_VERSIONS[tls_version]
    return ctx


@contextlib.contextmanager
def tls_socket(
    port: int,
    ca: str | None = None,
    ip: str = "127.0.0.1",
    server_hostname: str | None = "localhost",
    tls_version: str | None = None,
    timeout: float = 10,
    context: ssl.SSLContext | None = None,
) -> Iterator[ssl.SSLSocket]:
    """Connects to ip:port and completes the TLS handshake; the socket is closed on exit."""
    ctx = context
    if ctx is None:
        ctx = client_context(ca, tls_version, check_hostname=server_hostname is not None)
    raw = socket.create_connection((ip, port), timeout=timeout)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    try:
        yield sock
    finally:
        sock.close()


def peer_cert_der(
    port: int, ip: str = "127.0.0.1", sni: str | None = "localhost", tls_version: str | None = None
) -> bytes:
    """The DER of the leaf certificate the server presented (no verification, so a wrong
    certificate is reported rather than refused)."""
    with tls_socket(port, None, ip=ip, server_hostname=sni, tls_version=tls_version) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None, "the server presented no certificate"
    return der


def handshake_error(
    port: int,
    ip: str = "127.0.0.1",
    sni: str | None = "localhost",
    context: ssl.SSLContext | None = None,
    timeout: float = 10,
) -> BaseException | None:
    """Tries a handshake and returns the exception it raised, or None if it completed.

    A refused TCP connection or a timeout is re-raised: neither means the listener refused the
    handshake, and a test asserting "the handshake fails" must not pass on them."""
    try:
        with tls_socket(port, None, ip=ip, server_hostname=sni, timeout=timeout, context=context):
            return None
    except (ConnectionRefusedError, TimeoutError):
        raise
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return exc


# --------------------------------------------------------------------------------------------
# http.client


class TLSConnection(http.client.HTTPSConnection):
    """``HTTPSConnection`` that connects to an IP literal, sends ``sni`` as the server name and
    counts its connects (http.client reconnects silently when a connection was closed)."""

    def __init__(
        self, ip: str, port: int, ctx: ssl.SSLContext, sni: str | None, timeout: float
    ) -> None:
        super().__init__(ip, port, timeout=timeout, context=ctx)
        self.ctx = ctx
        self.sni = sni
        self.connects = 0

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.sock = self.ctx.wrap_socket(raw, server_hostname=self.sni)
        except BaseException:
            raw.close()
            raise
        self.connects += 1


def https_connection(
    port: int,
    ca: str | None = None,
    tls_version: str | None = None,
    sni: str | None = "localhost",
    ip: str = "127.0.0.1",
    timeout: float = 30,
) -> TLSConnection:
    ctx = client_context(ca, tls_version, check_hostname=sni is not None)
    return TLSConnection(ip, port, ctx, sni, timeout)


def https_get(
    port: int,
    path: str = "/",
    host: str | None = None,
    ca: str | None = None,
    tls_version: str | None = None,
    sni: str | None = "localhost",
    ip: str = "127.0.0.1",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    info: dict[str, object] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection; returns (status, headers, body).

    ``host`` is the Host header (default ``localhost:PORT``). When ``info`` is a dict it receives
    the connection's facts: ``peer_cert`` (DER), ``version``, ``cipher`` and ``local_port``."""
    conn = https_connection(port, ca, tls_version, sni, ip, timeout)
    try:
        conn.connect()
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        if info is not None:
            info["peer_cert"] = sock.getpeercert(binary_form=True)
            info["version"] = sock.version()
            info["cipher"] = sock.cipher()
            info["local_port"] = sock.getsockname()[1]
        hdrs = {"Host": host if host is not None else f"localhost:{port}"}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Raw bytes over TLS


class NotClosed(AssertionError):
    """The server kept the connection open although the test expected it to close."""


def recv_all(
    sock: ssl.SSLSocket,
    read_until_close: bool = True,
    responses: int = 1,
    head_requests: tuple[bool, ...] = (),
    timeout: float = 5,
) -> bytes:
    """Reads until the server closes the connection, or (``read_until_close=False``) until
    ``responses`` complete final responses have arrived. A connection reset counts as a close;
    a timeout while waiting for the close raises ``NotClosed``."""
    sock.settimeout(timeout)
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            break
        except TimeoutError:
            if read_until_close:
                raise NotClosed(
                    f"no close within {timeout}s; received {len(buf)} bytes: {bytes(buf[:600])!r}"
                ) from None
            raise
        if not chunk:
            break
        buf += chunk
        if not read_until_close:
            parsed = parse_responses(bytes(buf), head_requests=head_requests, eof=False)
            if sum(1 for r in parsed if r.status >= 200) >= responses:
                break
    return bytes(buf)


def raw_tls(
    port: int,
    data: bytes,
    ca: str | None = None,
    ip: str = "127.0.0.1",
    server_hostname: str | None = "localhost",
    read_until_close: bool = True,
    timeout: float = 5,
    responses: int = 1,
    head_requests: tuple[bool, ...] = (),
    tls_version: str | None = None,
) -> bytes:
    """Sends ``data`` as is over a new TLS connection and returns everything received (see
    ``recv_all`` for when reading stops). If the server closes while we are still sending, the
    send error is swallowed and whatever it answered is returned."""
    with tls_socket(port, ca, ip, server_hostname, tls_version, timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
            pass
        return recv_all(sock, read_until_close, responses, head_requests, timeout)


# --------------------------------------------------------------------------------------------
# HTTP/1.1 response parser


class ParseError(ValueError):
    pass


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False
    complete: bool = True
    raw_head: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


def _parse_head(data: bytes, pos: int) -> tuple[Response, int] | None:
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        return None
    head = data[pos:end]
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ParseError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or name != name.strip() or not name:
            raise ParseError(f"bad header line {line!r}")
        headers.append((name, value.strip(" \t")))
    reason = parts[2] if len(parts) > 2 else ""
    resp = Response(parts[0], int(parts[1]), reason, headers, raw_head=data[pos : end + 4])
    return resp, end + 4


def _parse_chunked(data: bytes, pos: int, resp: Response) -> int | None:
    """Decodes a chunked body starting at pos; returns the position after it, or None if the
    data ends before the last chunk and the trailer section."""
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ParseError(f"bad chunk size line {data[pos:eol]!r}") from None
        pos = eol + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            return None
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise ParseError("chunk data not followed by CRLF")
        pos += size + 2
    while True:  # trailer section, ended by an empty line
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        line = data[pos:eol]
        pos = eol + 2
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        resp.trailers.append((name, value.strip()))
    resp.body = bytes(body)
    resp.chunked = True
    return pos


def parse_one(
    data: bytes, pos: int = 0, head: bool = False, eof: bool = True
) -> tuple[Response, int] | None:
    """Parses the response starting at ``pos``; returns it with the position after it, or None
    if the data ends before the response does (and the connection is not known to be closed).
    ``head``: the response answers a HEAD request and has no body. With ``eof`` the data ended
    with the connection's close: a close-delimited body takes the rest, and an unfinished
    response is returned with ``complete=False``."""
    parsed = _parse_head(data, pos)
    if parsed is None:
        if eof:
            raise ParseError(f"truncated response head: {data[pos:pos + 200]!r}")
        return None
    resp, body_pos = parsed
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    if 100 <= resp.status < 200 or resp.status in (204, 304) or head:
        return resp, body_pos
    if te:
        if te.split(",")[-1].strip() != "chunked":
            raise ParseError(f"unsupported Transfer-Encoding {te!r}")
        end = _parse_chunked(data, body_pos, resp)
        if end is not None:
            return resp, end
        if not eof:
            return None
        resp.chunked = True
        resp.complete = False
        resp.body = data[body_pos:]
        return resp, len(data)
    if cl is not None:
        n = int(cl)
        if len(data) >= body_pos + n:
            resp.body = data[body_pos : body_pos + n]
            return resp, body_pos + n
        if not eof:
            return None
        resp.body = data[body_pos:]
        resp.complete = False
        return resp, len(data)
    # Delimited by the close of the connection (RFC 9112 section 6.3, rule 8).
    if not eof:
        return None
    resp.body = data[body_pos:]
    return resp, len(data)


def parse_responses(
    data: bytes, head_requests: tuple[bool, ...] = (), eof: bool = True
) -> list[Response]:
    """Splits ``data`` into responses (see ``parse_one``). ``head_requests[i]`` says whether the
    i-th final response answers a HEAD request; interim 1xx responses are returned in place and
    do not consume an entry. Without ``eof`` an unfinished last response is left out."""
    out: list[Response] = []
    pos = 0
    finals = 0
    while pos < len(data):
        is_head = finals < len(head_requests) and head_requests[finals]
        parsed = parse_one(data, pos, is_head, eof)
        if parsed is None:
            break
        resp, pos = parsed
        out.append(resp)
        if resp.status >= 200:
            finals += 1
    return out


def read_response(
    sock: ssl.SSLSocket, buf: bytearray, head: bool = False, timeout: float = 10
) -> Response:
    """Reads from ``sock`` until one whole response (a 1xx included) is in ``buf``, removes it
    from ``buf`` (bytes after it stay there) and returns it."""
    sock.settimeout(timeout)
    while True:
        parsed = parse_one(bytes(buf), 0, head, eof=False) if buf else None
        if parsed is not None:
            resp, end = parsed
            del buf[:end]
            return resp
        chunk = sock.recv(65536)
        if not chunk:
            raise ParseError(
                f"connection closed with {len(buf)} unparsed bytes: {bytes(buf[:300])!r}"
            )
        buf += chunk


# --------------------------------------------------------------------------------------------
# HTTP.sys error bodies (reference section 3.3)

ERROR_TEXT = {
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    414: "Request URL Too Long",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def error_body(status: int, heading: str, text: str) -> bytes:
    """The HTML body HTTP.sys writes for errors it answers itself, CRLF line ends."""
    title = ERROR_TEXT[status]
    lines = [
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">',
        f"<HTML><HEAD><TITLE>{title}</TITLE>",
        '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>',
        f"<BODY><h2>{heading}</h2>",
        f"<hr><p>HTTP Error {status}. {text}</p>",
        "</BODY></HTML>",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


BODY_INVALID_HOSTNAME = error_body(
    400, "Bad Request - Invalid Hostname", "The request hostname is invalid."
)
BODY_INVALID_URL = error_body(400, "Bad Request - Invalid URL", "The request URL is invalid.")
BODY_NOT_FOUND = error_body(404, "Not Found", "The requested resource is not found.")
BODY_TOO_LONG = error_body(
    400, "Bad Request - Request Too Long", "The size of the request headers is too long."
)
BODY_URL_TOO_LONG = error_body(414, "Request URL Too Long", "The request URL is too long.")
BODY_SERVICE_UNAVAILABLE = error_body(503, "Service Unavailable", "The service is unavailable.")
ERROR_CONTENT_TYPE = "text/html; charset=us-ascii"


# --------------------------------------------------------------------------------------------
# Command-line clients


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it); this test needs {name}")
    return path


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for client tools that are not Python (curl, openssl): without the
    AddressSanitizer preload of the ASan test run (.ci/run), under which curl deadlocks at
    start-up. Python children keep it: they load the ASan-built core."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(extra)
    return env


def curl(
    args: list[str], timeout: float = 60, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Runs curl with ``args``; stdout and stderr are captured as bytes."""
    return subprocess.run(
        [_tool("curl"), *args], input=input, capture_output=True, timeout=timeout, check=False,
        env=tool_env(),
    )


def openssl_s_client(
    args: list[str], input: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Runs ``openssl s_client`` with ``args``, writing ``input`` to its stdin."""
    return subprocess.run(
        [_tool("openssl"), "s_client", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
        env=tool_env(),
    )


def curl_path() -> str:
    return _tool("curl")
