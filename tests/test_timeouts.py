"""netsh timeouts in the core: headerwaittimeout and idleconnectiontimeout, changed live."""

from __future__ import annotations

import time
from typing import Any, Callable

import clients
import pytest

from httpsys.errors import InvalidParameterError


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def closed_after(sock: Any, limit: float) -> float:
    """Seconds until the server closed ``sock`` (NotClosed if it stays open past ``limit``)."""
    t0 = time.monotonic()
    clients.recv_all(sock, timeout=limit)
    return time.monotonic() - t0


def test_header_wait_timeout_closes_a_silent_connection(server: Callable[..., Any]) -> None:
    run = server({"/": hello})
    run.srv.set_timeout("headerwaittimeout", 1)
    with clients.tls_socket(run.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # never finished
        # 1 s plus a tick of the timer wheel (50 ms), with room; the default would be 120 s.
        assert closed_after(sock, 6) < 6


def test_idle_timeout_closes_a_kept_alive_connection_and_is_live(server: Callable[..., Any]) -> None:
    run = server({"/": hello})
    with clients.tls_socket(run.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")
        # Changed while the connection exists: the next wait (after the next response) uses it.
        run.srv.set_timeout("idleconnectiontimeout", 1)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")
        assert closed_after(sock, 6) < 6
    # A connection that keeps talking is not closed by the short idle timeout.
    with clients.tls_socket(run.port) as sock:
        for _ in range(3):
            time.sleep(0.3)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("kind, value, param", [
    ("idletimeout", 5, "timeouttype"),
    ("idleconnectiontimeout", 0, "value"),
    ("headerwaittimeout", 65536, "value"),
    ("headerwaittimeout", True, "value"),
])
def test_bad_timeouts_are_refused_naming_the_parameter(server: Callable[..., Any], kind: str, value: Any,
                                                      param: str) -> None:
    run = server({"/": hello})
    with pytest.raises(InvalidParameterError) as exc:
        run.srv.set_timeout(kind, value)
    assert exc.value.param == param
