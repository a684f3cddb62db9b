"""The core's timers end to end (reference 1.5): EntityBody, DrainEntityBody, MinSendRate,
RequestQueue, HeaderWait after an idle keep-alive, all set short through ``Server(timeouts=...)``.

Real TLS sockets; each test asserts what the client received (a close with nothing, or the exact
503) and that a good client is served afterwards. The timers fire on a 50 ms wheel, so the limits
below only give a loaded machine room.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import clients
import pytest

from httpsys import Server
from httpsys.errors import InvalidParameterError

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def read_body_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got %d" % len(data)]


def served(port: int) -> bool:
    """A good client still gets its answer."""
    with clients.tls_socket(port) as sock:
        sock.sendall(GET)
        return clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")


def closed_after(sock: Any, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed ``sock``, and what arrived before (NotClosed past limit)."""
    t0 = time.monotonic()
    data = clients.recv_all(sock, timeout=limit)
    return time.monotonic() - t0, data


def test_timeouts_argument_is_checked() -> None:
    with pytest.raises(InvalidParameterError) as exc:
        Server(timeouts={"entitybodytimeout": 0})
    assert exc.value.param == "value"
    with pytest.raises(InvalidParameterError) as exc:
        Server(timeouts={"minsendrates": 150})
    assert exc.value.param == "timeouttype"
    with pytest.raises(InvalidParameterError) as exc:
        Server(timeouts={"minsendrate": 2**32})
    assert exc.value.param == "value"
    with pytest.raises(InvalidParameterError) as exc:
        Server(timeouts=[("headerwaittimeout", 5)])  # type: ignore[arg-type]
    assert exc.value.param == "timeouts"
    Server(timeouts={"minsendrate": 2**32 - 1, "requestqueuetimeout": 65535}).close()


def test_header_wait_starts_with_the_first_byte_after_an_idle_keep_alive(
        server: Callable[..., Any]) -> None:
    run = server({"/": hello}, timeouts={"idleconnectiontimeout": 60, "headerwaittimeout": 1})
    with clients.tls_socket(run.port) as sock:
        sock.sendall(GET)
        assert clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")
        time.sleep(1.5)  # idle, longer than the header wait: still open (idle is 60 s)
        sock.sendall(b"GET / HTTP/1.1\r\n")  # a head begun, never finished
        elapsed, data = closed_after(sock, 6)
    assert data == b"" and elapsed < 6  # HTTP.sys answers nothing: Timer_HeaderWait
    assert served(run.port)


def test_entity_body_timeout_closes_a_stalled_upload(server: Callable[..., Any]) -> None:
    run = server({"/": read_body_app}, timeouts={"entitybodytimeout": 1})
    with clients.tls_socket(run.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc")
        elapsed, data = closed_after(sock, 6)
    assert data == b"" and elapsed < 6
    assert served(run.port)


def test_entity_body_timer_restarts_on_each_chunk(server: Callable[..., Any]) -> None:
    run = server({"/": read_body_app}, timeouts={"entitybodytimeout": 1})
    with clients.tls_socket(run.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":  # 2.4 s in all, never 1 s without a byte
            time.sleep(0.4)
            sock.sendall(bytes([byte]))
        reply = clients.recv_all(sock, read_until_close=False)
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"got 6")


def test_drain_entity_body_timeout_closes_a_stalled_unread_body(server: Callable[..., Any]) -> None:
    # The app answers without reading the body: the rest is drained, and the drain stalls.
    run = server({"/": hello}, timeouts={"drainentitybodytimeout": 1})
    with clients.tls_socket(run.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nxyz")
        elapsed, data = closed_after(sock, 6)
    assert data.startswith(b"HTTP/1.1 200 OK") and elapsed < 6
    assert served(run.port)


BIG = 64 << 20  # more than the kernel buffers of both ends hold


def big_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(BIG))])
    chunk = b"x" * (1 << 20)
    return (chunk for _ in range(BIG >> 20))


# MinSendRate works as HTTP.sys's per send: what is queued when the socket fills must be taken
# within its length / rate (at least 1 s). 1 MB/s makes that about a quarter of a second for the
# core's 256 KiB; at the default 150 B/s it would be half an hour.
FAST = {"minsendrate": 1_000_000}


def test_min_send_rate_closes_a_client_that_does_not_read(server: Callable[..., Any]) -> None:
    run = server({"/": big_app}, timeouts=FAST)
    with clients.tls_socket(run.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(GET)
        time.sleep(3)  # reads nothing: the core's socket fills, then 1 s without progress
        _, data = closed_after(sock, 10)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert len(data) < BIG // 2  # closed long before the end: Timer_MinBytesPerSecond
    assert served(run.port)


def test_min_send_rate_spares_a_client_that_reads(server: Callable[..., Any]) -> None:
    run = server({"/": big_app}, timeouts=FAST)
    with clients.tls_socket(run.port) as sock:
        sock.sendall(GET)
        sock.settimeout(20)
        received = 0
        while received < BIG:  # the head, then counting body bytes
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
    assert received > BIG  # all of it: the head and 64 MiB


def test_request_queue_timeout_answers_503(server: Callable[..., Any]) -> None:
    release = threading.Event()
    entered = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/block":
            entered.set()
            release.wait(20)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    run = server({"/": app}, workers=1, timeouts={"requestqueuetimeout": 1})
    try:
        with clients.tls_socket(run.port) as blocked, clients.tls_socket(run.port) as waiting:
            blocked.sendall(b"GET /block HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert entered.wait(10)
            # The only worker is busy: this request waits in the queue past the timeout.
            waiting.sendall(b"GET /queued HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = clients.recv_all(waiting, timeout=6)
            release.set()
            first = clients.recv_all(blocked, read_until_close=False)
    finally:
        release.set()
    resp = clients.parse_responses(reply)[0]
    assert (resp.status, resp.reason) == (503, "Service Unavailable")
    assert resp.body == clients.BODY_SERVICE_UNAVAILABLE
    assert resp.header("Connection") == "close"
    assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"done")
    assert served(run.port)
