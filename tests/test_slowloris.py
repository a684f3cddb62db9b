"""Issue 7's acceptance test of the timeouts: 2,000 connections that send one header byte a
second do not stop a normal client from being served (its p99 stays under 50 ms), and each slow
connection is closed, with no answer, when HeaderWait expires.

The slow connections run in another process (tests/slowloris.py), so their Python work shares no
GIL with the normal client measured here. The normal client's latencies are taken while all
2,000 slow connections are open and trickling: from the moment the last of them sent its first
byte to the first close.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import clients
import pytest

N = 2000
HEADER_WAIT = 8  # seconds: longer than the 2,000 handshakes take on a loaded machine (2.5-5 s)
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def many_files() -> Any:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < N + 1000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {N + 1000}")
    want = N + 1000 if hard == resource.RLIM_INFINITY else min(hard, max(soft, 2 * N + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def normal_client(port: int, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """Keep-alive GETs, 100 a second at most; (start, latency) of each."""
    with clients.tls_socket(port) as sock:
        buf = bytearray()
        while not stop.is_set():
            t0 = time.monotonic()
            sock.sendall(GET)
            resp = clients.read_response(sock, buf)
            samples.append((t0, time.monotonic() - t0))
            assert resp.status == 200
            time.sleep(0.01)


def test_slow_headers_do_not_stop_a_normal_client(server: Callable[..., Any], many_files: None) -> None:
    run = server({"/": hello}, timeouts={"headerwaittimeout": HEADER_WAIT})
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    client = threading.Thread(target=normal_client, args=(run.port, stop, samples))
    client.start()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("slowloris.py")),
                               str(run.port), str(N)], capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        stop.set()
        client.join(10)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ready "), proc.stdout[:500]
    ready = float(lines[0].split()[1])
    report = json.loads(lines[-1])

    # Every slow connection trickled, and was closed with nothing said when HeaderWait expired:
    # not before (its handshake ended before the server's timer started), nor much after.
    assert all(report["closed"]), f"{report['closed'].count(False)} of {N} still open"
    assert report["received"] == 0
    assert report["sent"] >= HEADER_WAIT - 1
    lives = sorted(report["lives"])
    assert lives[0] >= HEADER_WAIT - 0.05, lives[:5]
    assert lives[-1] < HEADER_WAIT + 3, lives[-5:]

    # The normal client, while all 2,000 were open and sending.
    window = [lat for t0, lat in samples if ready <= t0 and t0 + lat <= report["first_close"]]
    assert len(window) >= 30, (len(window), ready - report["start"],
                               report["last_handshake"] - report["start"],
                               report["first_close"] - report["start"])
    window.sort()
    p99 = window[int(len(window) * 0.99)]
    print(f"normal client: {len(window)} requests during the slow phase, "
          f"p50 {window[len(window) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {window[-1] * 1000:.1f} ms; slow lives {lives[0]:.2f}-{lives[-1]:.2f} s; "
          f"{report['resumed']} resumed handshakes in {report['last_handshake'] - report['start']:.1f} s")
    # The bound is for the product build; the AddressSanitizer build of the same core
    # runs several times slower, and there the point is only that the client is never stalled.
    sanitized = "libasan" in os.environ.get("LD_PRELOAD", "")
    assert p99 < (0.500 if sanitized else 0.050)
    assert run.srv.connections <= 1  # the 2,000 are gone; the normal client's may linger
    with clients.tls_socket(run.port) as sock:
        sock.sendall(GET)
        assert clients.recv_all(sock, read_until_close=False).startswith(b"HTTP/1.1 200 OK")
