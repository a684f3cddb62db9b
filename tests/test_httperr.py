"""The HTTPERR log (reference 3.4): one line per answer the core gives itself, per timer expiry
and per dropped connection, with HTTP.sys's fields, escaping, header lines and roll-over.

Each test sends exact bytes over a real TLS connection, checks what the client received, then
reads the line the server wrote (after ``Server.flush_httperr()``) and checks that the server
still serves a good client."""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from clients import https_get, parse_responses, recv_all, tls_socket

FIELDS = ("#Fields: date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status "
          "s-siteid s-reason s-queuename")
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def failing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise RuntimeError("the app fails before its response starts")


def body_reader(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "0")])
    return []


@pytest.fixture
def logged(server, tmp_path):
    """``logged(apps, **kwargs) -> (run, log_dir)``: a server with its HTTPERR log in a fresh
    directory (one that does not exist yet, so the server creates it)."""
    log_dir = tmp_path / "logs" / "httperr"

    def make(apps: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Any, Path]:
        kwargs.setdefault("httperr_dir", str(log_dir))
        return server(apps if apps is not None else {"/api/": hello_app}, **kwargs), log_dir

    return make


def send(port: int, data: bytes, ca_file: str, close_write: bool = False) -> tuple[bytes, int]:
    """Sends data over a new TLS connection and reads to the server's close; returns what came
    back and the client's port (the c-port the log must show)."""
    with tls_socket(port, ca_file) as sock:
        cport = sock.getsockname()[1]
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return recv_all(sock, timeout=10), cport


def records(log_dir: Path) -> list[list[str]]:
    """Every non-header line of every httperr file, split into the 13 fields."""
    out = []
    for path in sorted(log_dir.glob("httperr*.log"), key=lambda p: int(p.stem[7:])):
        for line in path.read_bytes().decode("utf-8").split("\r\n"):
            if line and not line.startswith("#"):
                fields = line.split(" ")
                assert len(fields) == 13, line
                out.append(fields)
    return out


def only_record(run: Any, log_dir: Path) -> list[str]:
    assert run.srv.flush_httperr()
    (rec,) = records(log_dir)
    assert DATE_TIME.match(f"{rec[0]} {rec[1]}")
    return rec[2:]


def still_serves(run: Any, ca_file: str) -> None:
    status, _, body = https_get(run.port, "/api/", ca=ca_file)
    assert (status, body) == (200, b"hello")


def head(port: int, target: str = "/api/", method: str = "GET", version: str = "HTTP/1.1",
         extra: str = "") -> bytes:
    """A request head that asks for the close (a 404 or 403 would keep the connection)."""
    return (f"{method} {target} {version}\r\nHost: localhost:{port}\r\nConnection: close\r\n"
            f"{extra}\r\n").encode("latin-1")


# ----------------------------------------------------------------------------------------------
# One line per kind of answer


CASES = [
    # (id, request bytes (port -> bytes), status, version, verb, uri, reason)
    ("verb", lambda p: head(p, method="G@T"), 400, "HTTP/1.1", "G@T", "/api/", "Verb"),
    ("lower-case verb", lambda p: head(p, method="get"), 400, "HTTP/1.1", "get", "/api/", "Verb"),
    ("not found", lambda p: head(p, "/nothere/x?a=1&b=2"), 404, "HTTP/1.1", "GET",
     "/nothere/x?a=1&b=2", "NotFound"),
    ("cooked url", lambda p: head(p, "/nothere/./a/../b%20c"), 404, "HTTP/1.1", "GET",
     "/nothere/b+c", "NotFound"),
    ("invalid url", lambda p: head(p, "/api/%01x"), 400, "HTTP/1.1", "GET", "/api/%01x", "URL"),
    ("above root", lambda p: head(p, "/api/../../x"), 400, "HTTP/1.1", "GET", "/api/../../x", "URL"),
    ("control in target", lambda p: b"GET /api/a\x01b\tc HTTP/1.1\r\nHost: x\r\n\r\n", 400,
     "HTTP/1.1", "GET", "/api/a+b+c", "URL"),
    ("hostname", lambda p: head(p).replace(f"localhost:{p}".encode(), b"bad_host:1:2"), 400,
     "HTTP/1.1", "GET", "/api/", "Hostname"),
    ("version", lambda p: head(p, version="HTTP/2.0"), 505, "HTTP/2.0", "GET", "/api/",
     "Version_N/S"),
    ("length required", lambda p: head(p, method="POST"), 411, "HTTP/1.1", "POST", "/api/",
     "LengthRequired"),
    ("transfer coding", lambda p: head(p, method="POST", extra="Transfer-Encoding: gzip\r\n"),
     501, "HTTP/1.1", "POST", "/api/", "N/I"),
    ("field length", lambda p: head(p, extra="X-Big: " + "a" * 5000 + "\r\n"), 400, "HTTP/1.1",
     "GET", "/api/", "FieldLength"),
    ("request length", lambda p: head(p, extra="".join(f"X-{i}: {'a' * 3500}\r\n" for i in range(5))), 400,
     "HTTP/1.1", "GET", "/api/", "RequestLength"),
    # Over MaxFieldLength (4096 here), in one TLS record: the log cuts the URL at 4096 bytes.
    ("url length", lambda p: head(p, "/api/" + "u" * 5000), 414, "HTTP/1.1", "GET",
     ("/api/" + "u" * 5000)[:4096], "URL_Length"),
    # HTTP/1.1 without Host: 400 Invalid Hostname, as HTTP.sys answers it.
    ("no host", lambda p: b"GET /api/ HTTP/1.1\r\n\r\n", 400, "HTTP/1.1", "GET", "/api/",
     "Hostname"),
    ("garbage", lambda p: b"\x16\x03\x01 nonsense\r\n\r\n", 400, "-", "+++", "nonsense",
     "BadRequest"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_reject_writes_its_line(logged, ca_file, case):
    _, make, status, version, verb, uri, reason = case
    # MaxFieldLength 4096 tells one over-long header (FieldLength) from a head over
    # MaxRequestBytes (RequestLength).
    run, log_dir = logged(limits={"max_field_length": 4096})
    raw, cport = send(run.port, make(run.port), ca_file)
    assert parse_responses(raw)[0].status == status
    assert only_record(run, log_dir) == [
        "127.0.0.1", str(cport), "127.0.0.1", str(run.port), version, verb, uri, str(status), "-",
        reason, "-"]
    still_serves(run, ca_file)


def test_header_lines_and_modes(logged, ca_file):
    run, log_dir = logged()
    send(run.port, head(run.port, method="get"), ca_file)
    assert run.srv.flush_httperr()
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    path = log_dir / "httperr1.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0] == "#Software: Microsoft HTTP API 2.0"
    assert lines[1] == "#Version: 1.0"
    assert DATE_TIME.match(lines[2].removeprefix("#Date: "))
    assert lines[3] == FIELDS
    assert lines[4].endswith(" 400 - Verb -") and lines[5] == ""
    assert run.srv.httperr_stats() == {"written": 1, "dropped": 0, "failed": 0}


def test_routed_rejects_name_the_queue(logged, ca_file):
    """403.7 (SslRequireCert, no certificate) and 500 (the app failed before its response) are
    answered for a request routed to a queue: s-queuename is that queue's servicestate name."""
    run, log_dir = logged({"/api/": hello_app, "/fail/": failing_app})
    run.srv.add_app(run.prefix("/cert/"), hello_app, ssl_flags="Ssl,SslRequireCert")
    names = {g["urls"][0]: g["queue"] for g in run.srv.servicestate()["url_groups"]}
    raw, cport = send(run.port, head(run.port, "/cert/a?x"), ca_file)
    assert parse_responses(raw)[0].status == 403
    raw, cport2 = send(run.port, head(run.port, "/fail/b"), ca_file)
    assert parse_responses(raw)[0].status == 500
    assert run.srv.flush_httperr()
    got = [r[2:] for r in records(log_dir)]
    assert got == [
        ["127.0.0.1", str(cport), "127.0.0.1", str(run.port), "HTTP/1.1", "GET", "/cert/a?x", "403",
         "-", "ClientCert_Required", names[run.prefix("/cert/")]],
        ["127.0.0.1", str(cport2), "127.0.0.1", str(run.port), "HTTP/1.1", "GET", "/fail/b", "500",
         "-", "Internal", names[run.prefix("/fail/")]],
    ]
    still_serves(run, ca_file)


def test_success_writes_nothing(logged, ca_file):
    run, log_dir = logged()
    still_serves(run, ca_file)
    assert run.srv.flush_httperr()
    assert records(log_dir) == []


# ----------------------------------------------------------------------------------------------
# Timers and dropped connections


def test_header_wait_expiry(logged, ca_file):
    run, log_dir = logged()
    run.srv.set_timeout("headerwaittimeout", 1)
    raw, cport = send(run.port, b"GET /api/ HTTP/1.1\r\nHost: loc", ca_file)
    assert raw == b""  # closed without an answer
    assert only_record(run, log_dir) == [
        "127.0.0.1", str(cport), "127.0.0.1", str(run.port), "-", "-", "-", "-", "-",
        "Timer_HeaderWait", "-"]
    still_serves(run, ca_file)


def test_connection_idle_expiry(logged, ca_file):
    run, log_dir = logged()
    run.srv.set_timeout("idleconnectiontimeout", 1)
    with tls_socket(run.port, ca_file) as sock:
        cport = sock.getsockname()[1]
        sock.sendall(f"GET /api/ HTTP/1.1\r\nHost: localhost:{run.port}\r\n\r\n".encode())
        raw = recv_all(sock, timeout=10)  # the response, then the idle close
    assert parse_responses(raw)[0].status == 200
    assert only_record(run, log_dir) == [
        "127.0.0.1", str(cport), "127.0.0.1", str(run.port), "-", "-", "-", "-", "-",
        "Timer_ConnectionIdle", "-"]


def test_client_reset_and_connection_dropped(logged, ca_file):
    """A client that closes halfway through a head is Client_Reset; one that closes halfway
    through a body the app is reading is Connection_Dropped, with the request's fields."""
    run, log_dir = logged({"/api/": hello_app, "/upload/": body_reader})
    name = run.srv.servicestate()["url_groups"][1]["queue"]
    # The client sends its FIN (not a reset, which could make the kernel drop the bytes before
    # the server reads them) and reads until the server closes too: no answer, only TLS records
    # (tickets; Python's shutdown() leaves the TLS layer, so they come raw).
    with tls_socket(run.port, ca_file) as sock:
        reset_port = sock.getsockname()[1]
        sock.sendall(b"GET /api/ HTTP/1.1\r\nHo")
        sock.shutdown(socket.SHUT_WR)
        assert b"HTTP/" not in recv_all(sock, timeout=10)
    with tls_socket(run.port, ca_file) as sock:
        drop_port = sock.getsockname()[1]
        sock.sendall(head(run.port, "/upload/f?n=1", "POST", extra="Content-Length: 100\r\n") + b"x")
        sock.shutdown(socket.SHUT_WR)  # while the app waits for the rest of the body
        assert b"HTTP/" not in recv_all(sock, timeout=10)
    assert run.srv.flush_httperr()
    got = sorted((r[2:] for r in records(log_dir)), key=lambda r: r[-2])
    assert got == [
        ["127.0.0.1", str(reset_port), "127.0.0.1", str(run.port), "-", "-", "-", "-", "-",
         "Client_Reset", "-"],
        ["127.0.0.1", str(drop_port), "127.0.0.1", str(run.port), "HTTP/1.1", "POST", "/upload/f?n=1",
         "-", "-", "Connection_Dropped", name],
    ]
    still_serves(run, ca_file)


# ----------------------------------------------------------------------------------------------
# Files


def test_roll_over_at_the_configured_size(logged, ca_file):
    run, log_dir = logged(httperr_max_bytes=4096)
    ports = [send(run.port, head(run.port, "/nothere/" + "r" * 400), ca_file)[1] for _ in range(30)]
    assert run.srv.flush_httperr()
    files = sorted(log_dir.glob("httperr*.log"), key=lambda p: int(p.stem[7:]))
    assert len(files) >= 3
    assert [p.name for p in files] == [f"httperr{i}.log" for i in range(1, len(files) + 1)]
    for path in files:
        data = path.read_bytes()
        assert len(data) <= 4096
        assert data.split(b"\r\n")[3] == FIELDS.encode()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [int(r[3]) for r in records(log_dir)] == ports  # every line, in order, none lost
    still_serves(run, ca_file)


def test_next_server_continues_the_file_set(server, tmp_path, ca_file):
    log_dir = tmp_path / "httperr"
    log_dir.mkdir(mode=0o700)
    (log_dir / "httperr7.log").write_bytes(b"#Software: Microsoft HTTP API 2.0\r\n")
    run = server({"/api/": hello_app}, httperr_dir=log_dir)
    send(run.port, head(run.port, method="get"), ca_file)
    assert run.srv.flush_httperr()
    lines = (log_dir / "httperr7.log").read_bytes().split(b"\r\n")
    # The old content stays; the new header lines and the line follow it.
    assert lines[1] == b"#Software: Microsoft HTTP API 2.0" and lines[4] == FIELDS.encode()
    assert lines[5].endswith(b" 400 - Verb -")
    assert sorted(p.name for p in log_dir.iterdir()) == ["httperr7.log"]


def test_bad_configuration_is_refused(tmp_path):
    import httpsys
    from httpsys.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError) as exc:
        httpsys.Server(httperr_dir=tmp_path, httperr_max_bytes=100)
    assert exc.value.param == "httperr_max_bytes"
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    with pytest.raises(InvalidParameterError) as exc:
        httpsys.Server(httperr_dir=not_dir)
    assert exc.value.param == "httperr_dir"


def test_plain_socket_reset_in_the_handshake_writes_nothing(logged, ca_file):
    run, log_dir = logged()
    with socket.create_connection(("127.0.0.1", run.port)) as s:
        s.sendall(b"\x16\x03\x01\x00")
    still_serves(run, ca_file)
    assert run.srv.flush_httperr()
    assert records(log_dir) == []
    assert os.listdir(log_dir) == []  # no line, so no file either


def test_queue_full_and_app_offline(logged, ca_file):
    """503 QueueFull for a request that finds the queue full, 503 AppOffline for one still queued
    when its prefix is removed: both name the queue."""
    entered, release = threading.Event(), threading.Event()

    def blocking_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        entered.set()
        release.wait(30)
        return hello_app(environ, start_response)

    run, log_dir = logged({"/api/": hello_app, "/slow/": blocking_app}, workers=1, queue_limit=1)
    name = {g["urls"][0]: g["queue"] for g in run.srv.servicestate()["url_groups"]}[
        run.prefix("/slow/")]
    with tls_socket(run.port, ca_file) as a, tls_socket(run.port, ca_file) as b:
        a.sendall(head(run.port, "/slow/a"))
        assert entered.wait(30)  # the one worker is busy with a
        b.sendall(head(run.port, "/slow/b"))  # waits in the queue (limit 1)
        raw, full_port = send(run.port, head(run.port, "/slow/c"), ca_file)
        assert parse_responses(raw)[0].status == 503
        remover = threading.Thread(target=run.srv.remove_app, args=(run.prefix("/slow/"),))
        remover.start()  # shuts the queue at once, then waits for the worker
        assert parse_responses(recv_all(b, timeout=10))[0].status == 503
        offline_port = b.getsockname()[1]
        release.set()
        remover.join(30)
        assert parse_responses(recv_all(a, timeout=10))[0].status == 200
    assert run.srv.flush_httperr()
    assert [r[2:] for r in records(log_dir)] == [
        ["127.0.0.1", str(full_port), "127.0.0.1", str(run.port), "HTTP/1.1", "GET", "/slow/c", "503",
         "-", "QueueFull", name],
        ["127.0.0.1", str(offline_port), "127.0.0.1", str(run.port), "HTTP/1.1", "GET", "/slow/b",
         "503", "-", "AppOffline", name],
    ]
    still_serves(run, ca_file)


def test_timer_with_a_request_in_flight_logs_its_fields_once(logged, ca_file):
    """EntityBody runs out while the app waits for the body: one Timer_EntityBody line with the
    request's fields (no Connection_Dropped line besides); RequestQueue runs out for a request no
    worker took: its 503 is logged Timer_ReqQueue."""
    entered, release = threading.Event(), threading.Event()

    def blocking_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        entered.set()
        release.wait(30)
        return hello_app(environ, start_response)

    run, log_dir = logged({"/api/": hello_app, "/upload/": body_reader, "/slow/": blocking_app},
                          workers=1, timeouts={"entitybodytimeout": 1, "requestqueuetimeout": 1})
    names = {g["urls"][0]: g["queue"] for g in run.srv.servicestate()["url_groups"]}
    raw, body_port = send(run.port, head(run.port, "/upload/e", "POST",
                                         extra="Content-Length: 100\r\n") + b"x", ca_file)
    assert b"HTTP/" not in raw  # closed without an answer
    with tls_socket(run.port, ca_file) as a:
        a.sendall(head(run.port, "/slow/a"))
        assert entered.wait(30)  # the one worker of /slow/ is busy
        raw, queued_port = send(run.port, head(run.port, "/slow/b"), ca_file)
        assert parse_responses(raw)[0].status == 503
        release.set()
        assert parse_responses(recv_all(a, timeout=10))[0].status == 200
    assert run.srv.flush_httperr()
    assert [r[2:] for r in records(log_dir)] == [
        ["127.0.0.1", str(body_port), "127.0.0.1", str(run.port), "HTTP/1.1", "POST", "/upload/e", "-",
         "-", "Timer_EntityBody", names[run.prefix("/upload/")]],
        ["127.0.0.1", str(queued_port), "127.0.0.1", str(run.port), "HTTP/1.1", "GET", "/slow/b", "503",
         "-", "Timer_ReqQueue", names[run.prefix("/slow/")]],
    ]
    still_serves(run, ca_file)


def test_a_burst_of_expiries_is_logged_whole(logged, ca_file):
    """200 header waits that expire within a few ticks of each other: 200 Timer_HeaderWait lines,
    none dropped (the ring holds about 5,000 such records)."""
    run, log_dir = logged()
    run.srv.set_timeout("headerwaittimeout", 1)
    socks = []
    try:
        for _ in range(200):
            cm = tls_socket(run.port, ca_file)
            sock = cm.__enter__()
            socks.append((cm, sock))
            sock.sendall(b"GET /api/ HTTP/1.1\r\n")
        ports = sorted(sock.getsockname()[1] for _, sock in socks)
        for _, sock in socks:
            assert recv_all(sock, timeout=30) == b""
    finally:
        for cm, _ in socks:
            cm.__exit__(None, None, None)
    assert run.srv.flush_httperr()
    recs = records(log_dir)
    assert sorted(int(r[3]) for r in recs) == ports
    assert {r[11] for r in recs} == {"Timer_HeaderWait"}
    assert run.srv.httperr_stats()["dropped"] == 0
    still_serves(run, ca_file)


def test_plain_http_to_an_ssl_prefix(logged, ca_file):
    """403.4 on a plain socket (sslFlags Ssl on an http:// prefix): sc-status is 403 (the log has
    no substatus field), the reason SSL_Required, the queue the prefix's."""
    from conftest import free_port

    run, log_dir = logged()
    plain = free_port()
    run.srv.add_app(f"http://+:{plain}/plain/", hello_app, ssl_flags="Ssl")
    name = {g["urls"][0]: g["queue"] for g in run.srv.servicestate()["url_groups"]}[
        f"http://+:{plain}/plain/"]
    with socket.create_connection(("127.0.0.1", plain), timeout=10) as s:
        cport = s.getsockname()[1]
        s.sendall(head(plain, "/plain/x"))
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert parse_responses(raw)[0].status == 403
    assert only_record(run, log_dir) == [
        "127.0.0.1", str(cport), "127.0.0.1", str(plain), "HTTP/1.1", "GET", "/plain/x", "403", "-",
        "SSL_Required", name]
    still_serves(run, ca_file)
