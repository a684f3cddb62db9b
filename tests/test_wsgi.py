"""WSGI (PEP 3333) end to end: real TLS clients against WSGI apps run by httpsys.

Test apps are wrapped in ``wsgiref.validate.validator``: a violation inside the server's worker
raises in the app (warnings are errors in this suite), so a 200 carrying the expected body also
means the validator found nothing wrong.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from typing import Any, Callable, Iterable, Iterator
from wsgiref.validate import validator

import pytest

from clients import (
    https_connection,
    https_get,
    parse_responses,
    raw_tls,
    read_response,
    tls_socket,
)

TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"]
MB = 1024 * 1024

StartResponse = Callable[..., Any]


# ----------------------------------------------------------------------------------------------
# Test apps


def _json(start_response: StartResponse, obj: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_input(environ: dict[str, Any]) -> Iterator[bytes]:
    """Reads wsgi.input the PEP 3333 way: up to CONTENT_LENGTH when given, otherwise (a chunked
    body) until read() returns b''."""
    stream = environ["wsgi.input"]
    remaining = int(environ["CONTENT_LENGTH"]) if environ.get("CONTENT_LENGTH") else None
    while remaining is None or remaining > 0:
        want = 65536 if remaining is None else min(65536, remaining)
        data = stream.read(want)
        if not data:
            break
        if remaining is not None:
            remaining -= len(data)
        yield data


@validator
def environ_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    body = b"".join(_read_input(environ))
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)):
            out[key] = value
    out["wsgi.version"] = list(environ["wsgi.version"])
    out["body"] = body.decode("latin-1")
    return _json(start_response, out)


@validator
def sha_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    h = hashlib.sha256()
    n = 0
    for data in _read_input(environ):
        h.update(data)
        n += len(data)
    return _json(start_response, {"sha256": h.hexdigest(), "length": n})


@validator
def hello_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


@validator
def port_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@validator
def echo_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """Answers ``<n>:`` followed by ``size`` x's, n and size from the query string."""
    query = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if p)
    body = (query.get("n", "") + ":" + "x" * int(query.get("size", "0"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


GEN_PARTS = [b"alpha,", b"", b"beta,", b"g" * 5000, b",omega"]


@validator
def generator_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """No Content-Length: HTTP/1.1 needs chunked framing, HTTP/1.0 a close-delimited body. The
    empty part must not end a chunked body early."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def parts() -> Iterator[bytes]:
        yield from GEN_PARTS

    return parts()


def _big_payload() -> bytes:
    return random.Random(20240601).randbytes(10 * MB)


BIG = _big_payload()
BIG_SHA = hashlib.sha256(BIG).hexdigest()


def make_download_app(with_length: bool) -> Callable[..., Iterable[bytes]]:
    @validator
    def download_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = [("Content-Type", "application/octet-stream")]
        if with_length:
            headers.append(("Content-Length", str(len(BIG))))
        start_response("200 OK", headers)
        return (BIG[i : i + 256 * 1024] for i in range(0, len(BIG), 256 * 1024))

    return download_app


def digest(data: bytes) -> dict[str, Any]:
    """What sha_app answers for a body."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}


def get_json(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, _, body = https_get(*args, **kwargs)
    assert status == 200, (status, body[:500])
    return status, json.loads(body)


def req(port: int, method: str, target: str, headers: dict[str, str] | None = None,
        body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """Bytes of one request; Host is localhost:PORT unless given."""
    lines = [f"{method} {target} {version}"]
    hdrs = {"Host": f"localhost:{port}"}
    hdrs.update(headers or {})
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ----------------------------------------------------------------------------------------------
# environ


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_environ_contents(server, ca_file, tls_version):
    run = server({"/api/": environ_app})
    info: dict[str, Any] = {}
    _, env = get_json(
        run.port,
        "/api/x/y?a=1&b=two%20words",
        ca=ca_file,
        tls_version=tls_version,
        headers={"X-Custom": "value 1", "Accept": "*/*"},
        info=info,
    )
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["wsgi.version"] == [1, 0]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_PORT"] == str(run.port)
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(info["local_port"])
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/x/y"
    assert env["QUERY_STRING"] == "a=1&b=two%20words"
    assert env["RAW_URI"] == "/api/x/y?a=1&b=two%20words"
    assert env["HTTP_HOST"] == f"localhost:{run.port}"
    assert env["HTTP_X_CUSTOM"] == "value 1"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert isinstance(env["wsgi.multithread"], bool)
    assert isinstance(env["wsgi.multiprocess"], bool)
    assert env["wsgi.run_once"] is False
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_environ_body_headers(server, ca_file):
    run = server({"/api/": environ_app})
    body = b"a=1&b=2"
    _, env = get_json(
        run.port,
        "/api/form",
        ca=ca_file,
        method="POST",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["body"] == body.decode()


def test_environ_repeated_header_is_joined(server, ca_file):
    run = server({"/api/": environ_app})
    data = req(run.port, "GET", "/api/", {"X-Multi": "a", "Connection": "close"})
    data = data.replace(b"X-Multi: a\r\n", b"X-Multi: a\r\nX-Multi: b\r\n")
    (resp,) = parse_responses(raw_tls(run.port, data, ca_file))
    assert resp.status == 200, resp.body[:300]
    env = json.loads(resp.body)
    assert env["HTTP_X_MULTI"].replace(" ", "") == "a,b"


@pytest.mark.parametrize(
    "prefix, target, script_name, path_info",
    [
        ("/api/", "/api/", "/api", "/"),
        ("/api/", "/api/x", "/api", "/x"),
        ("/api/", "/api/a/b/", "/api", "/a/b/"),
        ("/api/v1/", "/api/v1/items/7", "/api/v1", "/items/7"),
        ("/", "/x/y", "", "/x/y"),
        ("/", "/", "", "/"),
    ],
)
def test_script_name_path_info(server, ca_file, prefix, target, script_name, path_info):
    run = server({prefix: environ_app})
    _, env = get_json(run.port, target, ca=ca_file)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, path_info)
    assert env["RAW_URI"] == target


@pytest.mark.parametrize(
    "target, path_info",
    [
        ("/api/a%20b", "/a b"),
        ("/api/%C3%A9t%C3%A9", "/\u00c3\u00a9t\u00c3\u00a9"),  # UTF-8 bytes as latin-1 (PEP 3333)
    ],
)
def test_path_info_is_percent_decoded(server, ca_file, target, path_info):
    run = server({"/api/": environ_app})
    _, env = get_json(run.port, target, ca=ca_file)
    assert env["PATH_INFO"] == path_info
    assert env["RAW_URI"] == target


@pytest.mark.parametrize(
    "target, query",
    [
        ("/api/q", ""),
        ("/api/q?", ""),
        ("/api/q?a=1", "a=1"),
        ("/api/q?a=1&b=%2F%20&c", "a=1&b=%2F%20&c"),
        ("/api/q?x=/y?z", "x=/y?z"),
    ],
)
def test_query_string(server, ca_file, target, query):
    run = server({"/api/": environ_app})
    _, env = get_json(run.port, target, ca=ca_file)
    assert env["QUERY_STRING"] == query
    assert env["PATH_INFO"] == "/q"


# ----------------------------------------------------------------------------------------------
# Connections: keep-alive, pipelining, HTTP/1.0


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_keep_alive_100_requests(server, ca_file, tls_version):
    run = server({"/api/": port_app})
    conn = https_connection(run.port, ca_file, tls_version=tls_version)
    try:
        conn.connect()
        local_port = conn.sock.getsockname()[1]
        first_sock = conn.sock
        seen = set()
        for i in range(100):
            conn.request("GET", f"/api/{i}", headers={"Host": f"localhost:{run.port}"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (i, body)
            assert not resp.will_close, f"the server announced a close after request {i}"
            seen.add(body.decode())
        assert conn.connects == 1, "http.client had to reconnect"
        assert conn.sock is first_sock
        assert seen == {f"127.0.0.1 {local_port}"}
    finally:
        conn.close()


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_pipelined_requests_answered_in_order(server, ca_file, tls_version):
    run = server({"/api/": echo_app}, workers=2)
    # The first answer is the largest, so a server that wrote answers as they completed would
    # get the order wrong.
    data = (
        req(run.port, "GET", "/api/echo?n=1&size=200000")
        + req(run.port, "GET", "/api/echo?n=2&size=10")
        + req(run.port, "GET", "/api/echo?n=3&size=3000", {"Connection": "close"})
    )
    raw = raw_tls(run.port, data, ca_file, tls_version=tls_version, timeout=15)
    responses = parse_responses(raw)
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.body for r in responses] == [
        b"1:" + b"x" * 200000,
        b"2:" + b"x" * 10,
        b"3:" + b"x" * 3000,
    ]
    assert all(r.complete for r in responses)


def test_pipelined_posts_keep_body_boundaries(server, ca_file):
    run = server({"/api/": sha_app}, workers=2)
    bodies = [b"first body", b"", b"B" * 70000]
    data = b""
    for i, body in enumerate(bodies):
        headers = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        if i == len(bodies) - 1:
            headers["Connection"] = "close"
        data += req(run.port, "POST", "/api/sha", headers, body)
    responses = parse_responses(raw_tls(run.port, data, ca_file, timeout=15))
    assert [r.status for r in responses] == [200, 200, 200]
    got = [json.loads(r.body) for r in responses]
    assert got == [digest(b) for b in bodies]


def test_http10_request_works_and_closes(server, ca_file):
    run = server({"/api/": hello_app})
    raw = raw_tls(run.port, req(run.port, "GET", "/api/", version="HTTP/1.0"), ca_file)
    (resp,) = parse_responses(raw)
    assert resp.status == 200
    assert resp.version in ("HTTP/1.0", "HTTP/1.1")
    assert resp.body == b"hello"


def test_http10_generator_is_not_chunked(server, ca_file):
    run = server({"/api/": generator_app})
    raw = raw_tls(run.port, req(run.port, "GET", "/api/", version="HTTP/1.0"), ca_file)
    (resp,) = parse_responses(raw)
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") is None, "chunked framing sent to an HTTP/1.0 client"
    assert resp.body == b"".join(GEN_PARTS)


# ----------------------------------------------------------------------------------------------
# Request bodies


def test_chunked_upload(server, ca_file):
    run = server({"/api/": sha_app})
    pieces = [b"hello ", b"chunked ", b"w" * 40000, b"!"]
    body = b""
    for i, piece in enumerate(pieces):
        size = f"{len(piece):X}" if i % 2 else f"{len(piece):x}"
        ext = ";name=value" if i == 1 else ""
        body += f"{size}{ext}\r\n".encode() + piece + b"\r\n"
    body += b"0\r\n\r\n"
    data = req(
        run.port,
        "POST",
        "/api/sha",
        {"Transfer-Encoding": "chunked", "Content-Type": "text/plain", "Connection": "close"},
        body,
    )
    (resp,) = parse_responses(raw_tls(run.port, data, ca_file, timeout=15))
    assert resp.status == 200, resp.body[:300]
    whole = b"".join(pieces)
    assert json.loads(resp.body) == digest(whole)


def test_chunked_upload_environ(server, ca_file):
    run = server({"/api/": environ_app})
    body = b"5\r\nhello\r\n0\r\n\r\n"
    data = req(
        run.port,
        "POST",
        "/api/e",
        {"Transfer-Encoding": "chunked", "Content-Type": "text/plain", "Connection": "close"},
        body,
    )
    (resp,) = parse_responses(raw_tls(run.port, data, ca_file))
    assert resp.status == 200, resp.body[:300]
    env = json.loads(resp.body)
    assert env["body"] == "hello"
    assert env.get("CONTENT_LENGTH", "") in ("", "5")
    assert "HTTP_TRANSFER_ENCODING" not in env or env["HTTP_TRANSFER_ENCODING"] == "chunked"


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_expect_100_continue(server, ca_file, tls_version):
    run = server({"/api/": sha_app})
    body = b"payload sent only after 100 Continue" * 100
    head = req(
        run.port,
        "POST",
        "/api/sha",
        {
            "Content-Length": str(len(body)),
            "Content-Type": "application/octet-stream",
            "Expect": "100-continue",
        },
    )
    with tls_socket(run.port, ca_file, tls_version=tls_version) as sock:
        sock.sendall(head)
        buf = bytearray()
        interim = read_response(sock, buf, timeout=10)
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw_head
        assert interim.status == 100
        sock.sendall(body)
        final = read_response(sock, buf, timeout=10)
    assert final.status == 200
    assert json.loads(final.body) == digest(body)


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_upload_10mb(server, ca_file, tls_version):
    run = server({"/api/": sha_app})
    _, got = get_json(
        run.port,
        "/api/upload",
        ca=ca_file,
        tls_version=tls_version,
        method="POST",
        body=BIG,
        headers={"Content-Type": "application/octet-stream"},
        timeout=20,
    )
    assert got == {"sha256": BIG_SHA, "length": len(BIG)}


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
def test_download_10mb(server, ca_file, tls_version, with_length):
    run = server({"/api/": make_download_app(with_length)})
    status, headers, body = https_get(
        run.port, "/api/big", ca=ca_file, tls_version=tls_version, timeout=20
    )
    assert status == 200
    assert len(body) == len(BIG)
    assert hashlib.sha256(body).hexdigest() == BIG_SHA
    if with_length:
        assert headers["Content-Length"] == str(len(BIG))
    else:
        assert headers["Transfer-Encoding"] == "chunked"


# ----------------------------------------------------------------------------------------------
# Responses: write(), iterables, HEAD, chunked


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
def test_write_callable(server, ca_file, with_length):
    @validator
    def write_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        headers = [("Content-Type", "text/plain")]
        if with_length:
            headers.append(("Content-Length", "13"))
        write = start_response("200 OK", headers)
        write(b"one,")
        write(b"two,")
        return [b"three"]

    run = server({"/api/": write_app})
    status, _, body = https_get(run.port, "/api/w", ca=ca_file)
    assert (status, body) == (200, b"one,two,three")


def test_iterable_close_is_called(server, ca_file):
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"part one, "
            yield b"part two"

        def close(self) -> None:
            closed.set()

    @validator
    def closing_app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "18")])
        return Body()

    run = server({"/api/": closing_app})
    status, _, body = https_get(run.port, "/api/c", ca=ca_file)
    assert (status, body) == (200, b"part one, part two")
    assert closed.wait(10), "close() of the app's iterable was never called"


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_generator_without_length_is_chunked(server, ca_file, tls_version):
    run = server({"/api/": generator_app})
    raw = raw_tls(
        run.port,
        req(run.port, "GET", "/api/gen", {"Connection": "close"}),
        ca_file,
        tls_version=tls_version,
    )
    (resp,) = parse_responses(raw)
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    assert resp.chunked and resp.complete
    assert resp.body == b"".join(GEN_PARTS)
    # http.client agrees.
    status, _, body = https_get(run.port, "/api/gen", ca=ca_file, tls_version=tls_version)
    assert (status, body) == (200, b"".join(GEN_PARTS))


def test_head_has_no_body(server, ca_file):
    run = server({"/api/": hello_app})
    status, headers, body = https_get(run.port, "/api/h", ca=ca_file, method="HEAD")
    assert status == 200 and body == b""
    # On the wire: the GET pipelined after the HEAD must start right after the HEAD's head.
    data = req(run.port, "HEAD", "/api/h") + req(run.port, "GET", "/api/h", {"Connection": "close"})
    raw = raw_tls(run.port, data, ca_file)
    responses = parse_responses(raw, head_requests=(True, False))
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].body == b""
    assert responses[1].body == b"hello"


def test_head_generator_has_no_body(server, ca_file):
    run = server({"/api/": generator_app})
    data = req(run.port, "HEAD", "/api/g") + req(run.port, "GET", "/api/h", {"Connection": "close"})
    responses = parse_responses(raw_tls(run.port, data, ca_file), head_requests=(True, False))
    assert [r.status for r in responses] == [200, 200]
    assert responses[1].body == b"".join(GEN_PARTS)


# ----------------------------------------------------------------------------------------------
# Application errors


def boom_app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("the app failed before start_response (expected by this test)")


def test_app_exception_gives_500_and_server_keeps_serving(server, ca_file):
    run = server({"/api/boom/": boom_app, "/api/ok/": hello_app}, workers=2)
    # More failures than workers: a worker that died with its app would stop the server.
    for _ in range(5):
        status, _, _ = https_get(run.port, "/api/boom/x", ca=ca_file, timeout=15)
        assert status == 500
    status, _, body = https_get(run.port, "/api/ok/x", ca=ca_file, timeout=15)
    assert (status, body) == (200, b"hello")


def test_app_exception_on_keep_alive_connection(server, ca_file):
    run = server({"/api/boom/": boom_app, "/api/ok/": hello_app})
    conn = https_connection(run.port, ca_file)
    try:
        for path, expected in [("/api/boom/", 500), ("/api/ok/", 200), ("/api/boom/", 500)]:
            conn.request("GET", path, headers={"Host": f"localhost:{run.port}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
    finally:
        conn.close()


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
def test_app_exception_after_start_aborts_connection(server, ca_file, with_length):
    def late_boom_app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        headers = [("Content-Type", "text/plain")]
        if with_length:
            headers.append(("Content-Length", "1000"))
        start_response("200 OK", headers)
        yield b"x" * 10
        raise RuntimeError("the app failed mid-body (expected by this test)")

    run = server({"/api/late/": late_boom_app, "/api/ok/": hello_app})
    raw = raw_tls(run.port, req(run.port, "GET", "/api/late/"), ca_file, timeout=10)
    responses = parse_responses(raw)
    complete = [r for r in responses if r.complete and r.status == 200]
    assert complete == [], "a response whose app failed arrived as if it were whole"
    assert https_get(run.port, "/api/ok/", ca=ca_file)[0] == 200
