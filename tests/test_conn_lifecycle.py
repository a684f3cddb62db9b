"""Connection lifecycle as a client sees it: closes, half-closes, clients that vanish."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import clients
import pytest
from OpenSSL import SSL


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def wait_for(predicate: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize(
    "request_bytes, answer",
    [
        # A normal last response: the server closes at once.
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", b"HTTP/1.1 200 OK"),
        # An error answer: the server lingers (the client may still be sending) and must notice
        # the client's FIN to stop lingering.
        (b"GET / HTTP/1.1\r\nHost: unknown.example\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ],
    ids=["last-response", "error-answer"],
)
def test_close_notify_and_fin_together_close_the_connection(
    server: Any, ca_file: str, request_bytes: bytes, answer: bytes
) -> None:
    # Regression: the client's close_notify and FIN arrived in one read; the FIN went unseen and
    # every such connection lingered until the 2-second linger timer (wrk -H 'Connection: close'
    # left thousands open). The server must notice the FIN right away.
    run = server({"https://localhost:{port}/": hello})
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(ca_file)
    for _ in range(50):
        raw = socket.create_connection(("127.0.0.1", run.port))
        conn = SSL.Connection(ctx, raw)
        conn.set_tlsext_host_name(b"localhost")
        conn.set_connect_state()
        conn.do_handshake()
        conn.sendall(request_bytes)
        data = b""
        while b"</BODY></HTML>" not in data and not data.endswith(b"hello"):
            data += conn.recv(65536)
        assert data.startswith(answer), data[:80]
        # As wrk does: close_notify and FIN back to back, so both usually reach the server's
        # socket before it reads.
        conn.shutdown()
        raw.close()
    # Well under the 2 s linger timeout: the server closed on the FIN, not on its timer.
    assert wait_for(lambda: run.srv.connections == 0, 1.0), run.srv.connections


def test_keepalive_connection_is_counted_while_open(server: Any, ca_file: str) -> None:
    run = server({"/": hello})
    with clients.tls_socket(run.port, ca_file) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = clients.read_response(sock, bytearray())
        assert resp.status == 200
        assert run.srv.connections == 1
    assert wait_for(lambda: run.srv.connections == 0, 1.0)


def test_client_gone_mid_body_is_reported_to_the_app_and_server_keeps_serving(
    server: Any, ca_file: str
) -> None:
    seen: list[BaseException] = []
    reading = threading.Event()

    def upload(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        reading.set()
        try:
            environ["wsgi.input"].read()
        except BaseException as e:  # the server's ConnectionGoneError
            seen.append(e)
            raise
        start_response("200 OK", [])
        return [b"unreachable"]

    run = server({"/up/": upload, "/": hello})
    with clients.tls_socket(run.port, ca_file) as sock:
        sock.sendall(b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\npartial")
        assert reading.wait(5)
    assert wait_for(lambda: bool(seen), 5.0)
    assert isinstance(seen[0], ConnectionError), seen
    status, _, body = clients.https_get(run.port, "/", ca=ca_file)
    assert (status, body) == (200, b"hello")


def test_client_reset_during_queue_wait_leaves_server_healthy(server: Any, ca_file: str) -> None:
    release = threading.Event()

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        release.wait(5)
        start_response("200 OK", [])
        return [b"late"]

    run = server({"/slow/": slow, "/": hello}, workers=1)
    with clients.tls_socket(run.port, ca_file) as sock:
        sock.sendall(b"GET /slow/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    release.set()  # the app answers a connection that no longer exists
    status, _, body = clients.https_get(run.port, "/", ca=ca_file)
    assert (status, body) == (200, b"hello")
    assert wait_for(lambda: run.srv.connections == 0, 2.0)


def test_an_idle_connection_gives_its_buffers_back_and_keeps_working(server: Callable[..., Any]) -> None:
    """An idle keep-alive connection's buffers are freed after 1 s of waiting; the next request
    on it (and a pipelined pair) still gets its answers."""
    run = server({"/": hello})
    with clients.tls_socket(run.port) as sock:
        buf = bytearray()
        for round_ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2)
            for _ in range(2):
                resp = clients.read_response(sock, buf)
                assert (resp.status, resp.body) == (200, b"hello"), round_
            time.sleep(1.3)  # idle for more than the 1 s after which buffers go back
