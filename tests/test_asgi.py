"""ASGI end to end (issue 6): a Starlette app, a raw ASGI app and a Flask app on one port behind
their prefixes; request and response bodies streamed both ways; http.disconnect; lifespan; app
errors before and after the response started; backpressure against a slow reader.

Apps report what they saw to the test through thread-safe queues (they run on the server's
asyncio thread); every assertion is about what a real TLS client received or what the app saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import clients
import flask
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from httpsys import ConnectionGoneError
from httpsys.asgi import LifespanError

MB = 1024 * 1024
LOOPS = ["uvloop", "asyncio"]


# ---- apps -------------------------------------------------------------------------------------

def make_starlette(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    async def hello(request: Request) -> Response:
        return JSONResponse({"app": "starlette", "path": request.url.path,
                             "root_path": request.scope["root_path"],
                             "route": request.scope["route"].path,
                             "state": request.state.greeting,
                             "query": dict(request.query_params)})

    async def upload(request: Request) -> Response:
        h, n = hashlib.sha256(), 0
        async for chunk in request.stream():
            h.update(chunk)
            n += len(chunk)
        return JSONResponse({"sha256": h.hexdigest(), "length": n})

    async def stream(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(200):
                yield b"%05d" % i * 200
                if i % 50 == 0:
                    await asyncio.sleep(0)
        return StreamingResponse(parts(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/hello", hello), Route("/upload", upload, methods=["POST"]),
                             Route("/stream", stream)], lifespan=lifespan)


def make_flask() -> flask.Flask:
    app = flask.Flask("flask_beside_asgi")

    @app.route("/<path:rest>", methods=["GET", "POST"])
    def any_path(rest: str) -> Any:
        return {"app": "flask", "path": flask.request.path,
                "script_name": flask.request.environ["SCRIPT_NAME"]}

    return app


async def read_all(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message["body"]
        if not message["more_body"]:
            return body


async def send_json(send: Any, obj: Any, status: int = 200) -> None:
    body = json.dumps(obj, default=lambda b: b.decode("latin-1")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Raw:
    """A raw ASGI 3 app whose behaviour is chosen by the path after its prefix."""

    def __init__(self) -> None:
        self.seen: queue.Queue[Any] = queue.Queue()  # what the app reports to the test

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("this app does no lifespan")  # served all the same
        name = scope["path"][len(scope["root_path"]):]
        await getattr(self, name.strip("/").replace("-", "_"))(scope, receive, send)

    async def info(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_all(receive)
        await send_json(send, {k: v for k, v in scope.items() if k != "state"} | {"body": body})

    async def echo(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Streams each piece of the request body back as it arrives (both ways at once)."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["body"]:
                await send({"type": "http.response.body", "body": message["body"],
                            "more_body": True})
            if not message["more_body"]:
                break
        await send({"type": "http.response.body", "body": b""})

    async def head(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"12345"})

    async def error_before(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom before the response")

    async def error_after(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after the response started")

    async def no_response(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        return

    async def wait_disconnect(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_all(receive)
        self.seen.put("waiting")
        message = await receive()
        self.seen.put(message)
        with contextlib.suppress(OSError):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})

    async def forever(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"z" * 65536
        try:
            while True:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BaseException as exc:
            self.seen.put(exc)
            raise

    async def after(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        self.seen.put(await receive())  # the response is complete: http.disconnect at once
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as exc:
            self.seen.put(exc)

    async def big(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        size = int(scope["query_string"])
        chunk = b"b" * (256 * 1024)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        sent = 0
        while sent < size:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def three(server: Callable[..., Any], request: pytest.FixtureRequest) -> Any:
    """Starlette at /star/, the raw app at /raw/, Flask at /flask/, one port."""
    events: list[str] = []
    raw = Raw()
    loop = getattr(request, "param", "auto")
    run = server({"/star/": make_starlette(events), "/raw/": raw, "/flask/": make_flask()},
                 asgi_loop=loop)
    run.events, run.raw = events, raw
    return run


def get(port: int, path: str, **kw: Any) -> tuple[int, Any, bytes]:
    return clients.https_get(port, path, **kw)


def as_json(resp: tuple[int, Any, bytes]) -> Any:
    assert resp[0] == 200, resp
    return json.loads(resp[2])


# ---- the three apps on one port -----------------------------------------------------------------

@pytest.mark.parametrize("three", LOOPS, indirect=True)
def test_starlette_raw_asgi_and_flask_share_a_port(three: Any) -> None:
    port = three.port
    star = as_json(get(port, "/star/hello?a=1"))
    assert star == {"app": "starlette", "path": "/star/hello", "root_path": "/star",
                    "route": "/hello", "state": "hello from lifespan", "query": {"a": "1"}}
    assert as_json(get(port, "/flask/x/y")) == {"app": "flask", "path": "/x/y",
                                                "script_name": "/flask"}
    info = as_json(get(port, "/raw/info?q=%20x", method="POST", body=b"abc",
                       headers={"X-Two": "1", "x-two": "2"}))
    assert info["type"] == "http" and info["method"] == "POST" and info["scheme"] == "https"
    assert info["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert info["http_version"] == "1.1"
    assert (info["root_path"], info["path"], info["raw_path"]) == ("/raw", "/raw/info", "/raw/info")
    assert info["query_string"] == "q=%20x" and info["body"] == "abc"
    headers = dict(info["headers"])
    assert headers["host"] == f"localhost:{port}" and headers["x-two"] == "1, 2"
    assert headers["content-length"] == "3"
    assert all(name == name.lower() for name, _ in info["headers"])
    assert info["server"] == ["127.0.0.1", port] and info["client"][0] == "127.0.0.1"
    assert three.events == ["startup"]


def test_keep_alive_connection_goes_through_all_three(three: Any) -> None:
    conn = clients.https_connection(three.port)
    try:
        for path in ["/star/hello", "/raw/info", "/flask/z", "/raw/info", "/star/hello"] * 3:
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200, (path, resp.read())
            assert json.loads(resp.read()).get("app", "raw") in ("starlette", "raw", "flask")
        assert conn.connects == 1
    finally:
        conn.close()


def test_head_request_gets_no_body(three: Any) -> None:
    data = clients.raw_tls(three.port, b"HEAD /raw/head HTTP/1.1\r\nHost: x\r\n\r\n",
                           read_until_close=False, head_requests=(True,))
    resp = clients.parse_responses(data, head_requests=(True,), eof=False)[0]
    assert resp.status == 200 and resp.header("content-length") == "5" and resp.body == b""


# ---- streaming ----------------------------------------------------------------------------------

@pytest.mark.parametrize("three", LOOPS, indirect=True)
def test_request_body_streams_in_and_response_streams_out(three: Any) -> None:
    payload = os.urandom(3 * MB + 12345)
    # Chunked upload in pieces, echoed back piece by piece (chunked response).
    with clients.tls_socket(three.port) as sock:
        sock.sendall(b"POST /raw/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 300_000):
            piece = payload[i:i + 300_000]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        resp = clients.read_response(sock, bytearray(), timeout=30)
    assert resp.status == 200 and resp.header("transfer-encoding") == "chunked"
    assert resp.body == payload
    # Starlette's request.stream() and StreamingResponse.
    got = as_json(get(three.port, "/star/upload", method="POST", body=payload))
    assert got == {"sha256": hashlib.sha256(payload).hexdigest(), "length": len(payload)}
    status, _, body = get(three.port, "/star/stream")
    assert status == 200 and body == b"".join(b"%05d" % i * 200 for i in range(200))


def test_a_slow_reader_keeps_memory_bounded(three: Any) -> None:
    """100 MB to a client that reads slowly: send pauses at the high watermark instead of
    queueing the body in memory (the app would produce it all in well under a second)."""
    size = 100 * MB
    rss_before = rss_kib()
    peak = rss_before
    buf = bytearray(65536)
    got = 0
    with clients.tls_socket(three.port, timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /raw/big?%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % size in head
        next_pause = 0
        while got < size:
            if got >= next_pause:  # stop reading for a while, every 10 MB
                time.sleep(0.3)
                peak = max(peak, rss_kib())
                next_pause += 10 * MB
            n = sock.recv_into(buf)
            assert n > 0
            got += n
    assert got == size
    assert peak - rss_before < 64 * 1024, f"RSS grew by {(peak - rss_before) // 1024} MiB"


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- disconnect ---------------------------------------------------------------------------------

@pytest.mark.parametrize("abrupt", [False, True], ids=["close", "reset"])
def test_http_disconnect_when_the_client_goes_away(three: Any, abrupt: bool) -> None:
    with clients.tls_socket(three.port) as sock:
        sock.sendall(b"POST /raw/wait-disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert three.raw.seen.get(timeout=10) == "waiting"
        if abrupt:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert three.raw.seen.get(timeout=10) == {"type": "http.disconnect"}
    assert as_json(get(three.port, "/raw/info"))["type"] == "http"  # still serving


def test_send_raises_oserror_once_the_client_is_gone(three: Any) -> None:
    with clients.tls_socket(three.port) as sock:
        sock.sendall(b"GET /raw/forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    exc = three.raw.seen.get(timeout=10)
    assert isinstance(exc, OSError) and isinstance(exc, ConnectionGoneError)


def test_receive_after_the_response_is_http_disconnect(three: Any) -> None:
    assert get(three.port, "/raw/after")[0] == 204
    assert three.raw.seen.get(timeout=10) == {"type": "http.disconnect"}
    assert isinstance(three.raw.seen.get(timeout=10), RuntimeError)


# ---- app errors ---------------------------------------------------------------------------------

def test_an_error_before_the_response_is_a_500(three: Any, caplog: pytest.LogCaptureFixture) -> None:
    conn = clients.https_connection(three.port)
    try:
        with caplog.at_level(logging.ERROR, logger="httpsys"):
            conn.request("GET", "/raw/error-before")
            resp = conn.getresponse()
            assert resp.status == 500
            resp.read()
            conn.request("GET", "/raw/no-response")
            resp = conn.getresponse()
            assert resp.status == 500
            resp.read()
        conn.request("GET", "/raw/info")  # the same connection goes on
        assert conn.getresponse().status == 200
        assert conn.connects == 1
    finally:
        conn.close()
    text = caplog.text
    assert "ASGI application error on GET /raw/error-before" in text and "boom before" in text
    assert "returned without completing the response to GET /raw/no-response" in text


def test_an_error_after_the_response_started_aborts_the_connection(
        three: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="httpsys"):
        data = clients.raw_tls(three.port, b"GET /raw/error-after HTTP/1.1\r\nHost: x\r\n\r\n")
    # A reset: the client gets at most the start of the response, never its end (the chunked
    # body's last chunk), so it can tell the response is incomplete.
    assert data == b"" or data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"0\r\n\r\n")
    assert "boom after the response started" in caplog.text
    assert as_json(get(three.port, "/raw/info"))["type"] == "http"


# ---- lifespan -----------------------------------------------------------------------------------

def test_lifespan_shutdown_runs_at_close(three: Any) -> None:
    assert three.events == ["startup"]
    three.srv.close()
    assert three.events == ["startup", "shutdown"]


class FailingStartup:
    def __init__(self, how: str) -> None:
        self.how = how

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        if self.how == "failed":
            await send({"type": "lifespan.startup.failed", "message": "no database"})
        else:
            raise ConnectionRefusedError("database at db:5432 refused")


@pytest.mark.parametrize("how, message", [("failed", "no database"),
                                          ("raise", "ConnectionRefusedError: database at db:5432")])
def test_a_failed_lifespan_startup_stops_start(server: Callable[..., Any], how: str,
                                               message: str) -> None:
    run = server({"/bad/": FailingStartup(how)}, start=False)
    with pytest.raises(LifespanError) as e:
        run.srv.start()
    assert message in str(e.value) and f"https://+:{run.port}/bad/" in str(e.value)


def test_a_failed_lifespan_startup_after_start_refuses_the_prefix(three: Any) -> None:
    with pytest.raises(LifespanError):
        three.srv.add_app(f"https://+:{three.port}/late/", FailingStartup("failed"))
    assert f"https://+:{three.port}/late/" not in three.srv.prefixes
    assert get(three.port, "/late/x")[0] == 404
    assert get(three.port, "/star/hello")[0] == 200


# ---- plain HTTP and interfaces ------------------------------------------------------------------

def test_plain_http_scope_has_no_tls_extension(server: Callable[..., Any]) -> None:
    raw = Raw()
    run = server({"http://+:{port}/raw/": raw}, cert=None)
    with socket.create_connection(("127.0.0.1", run.port), timeout=10) as sock:
        sock.sendall(b"GET /raw/info HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    info = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert info["scheme"] == "http" and info["http_version"] == "1.0"
    assert "extensions" not in info


def test_interface_must_be_wsgi_or_asgi(server: Callable[..., Any]) -> None:
    from httpsys import InvalidParameterError

    run = server()
    with pytest.raises(InvalidParameterError) as e:
        run.srv.add_app(run.prefix("/x/"), Raw(), interface="rsgi")
    assert e.value.param == "interface"


def test_interface_asgi_given_explicitly(server: Callable[..., Any]) -> None:
    def factory_style(scope: Any, receive: Any, send: Any) -> Any:  # not async def itself
        return Raw()(scope, receive, send)

    run = server()
    run.srv.add_app(run.prefix("/f/"), factory_style, interface="asgi")
    assert as_json(get(run.port, "/f/info"))["root_path"] == "/f"


# ---- TLS extension ------------------------------------------------------------------------------

IANA = {"TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302,
        "TLS_CHACHA20_POLY1305_SHA256": 0x1303, "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
        "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C, "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9}


def tls_of(port: int, ctx: ssl.SSLContext) -> tuple[dict[str, Any], Any]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /neg/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = clients.read_response(sock, bytearray())
        assert resp.status == 200, resp.body
        return json.loads(resp.body)["extensions"]["tls"], sock.cipher()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_extension_with_and_without_a_client_certificate(server: Callable[..., Any],
                                                             mtls: Any, version: str) -> None:
    run = server(cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                        clientcertnegotiation=True, trusted_ca_pem=mtls.trusted_ca_pem,
                        crls=[mtls.crl_intermediate.pem])
    run.srv.add_app(f"https://+:{run.port}/neg/", Raw(), ssl_flags="Ssl,SslNegotiateCert")
    wire = 0x0303 if version == "1.2" else 0x0304

    tls, cipher = tls_of(run.port, mtls.client_context(None, version))
    assert tls == {"server_cert": mtls.server.cert_pem.decode(), "client_cert_chain": [],
                   "client_cert_name": None, "client_cert_error": None,
                   "tls_version": wire, "cipher_suite": IANA[cipher[0]]}

    tls, cipher = tls_of(run.port, mtls.client_context(mtls.client, version))
    assert tls["client_cert_chain"] == [mtls.client.cert_pem.decode(),
                                        mtls.intermediate.cert_pem.decode()]
    assert tls["client_cert_name"] == mtls.client.cert.subject.rfc4514_string()
    assert tls["client_cert_error"] is None
    assert (tls["tls_version"], tls["cipher_suite"]) == (wire, IANA[cipher[0]])
    assert tls["server_cert"] == mtls.server.cert_pem.decode()

    # SslNegotiateCert lets an invalid certificate through: the app hears why it failed.
    tls, _ = tls_of(run.port, mtls.client_context(mtls.expired, version))
    assert tls["client_cert_chain"][0] == mtls.expired.cert_pem.decode()
    assert tls["client_cert_name"] == mtls.expired.cert.subject.rfc4514_string()
    assert "expired" in tls["client_cert_error"]
