"""Slow-header clients for tests/test_slowloris.py, run as a separate process so that their
Python work does not share a GIL with the test's own client or the server's workers.

    python tests/slowloris.py PORT N

Opens N TLS connections to 127.0.0.1:PORT (at most BATCH handshakes in flight, all resuming one
TLS 1.2 session), and on each one,
from the end of its handshake, sends one byte of a request head a second, never finishing it.
Prints ``ready T`` once every connection has sent its first byte (T: time.monotonic(), which is
CLOCK_MONOTONIC, shared with the parent), then waits until the server has closed all of them or
GIVE_UP seconds passed, and prints one JSON line: for each connection, how long it lived from
the end of its handshake and how many bytes it received.
"""

from __future__ import annotations

import heapq
import json
import resource
import selectors
import socket
import ssl
import sys
import time

BATCH = 128
GIVE_UP = 60.0
HEAD = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200


class Slow:
    def __init__(self, ctx: ssl.SSLContext, port: int, sel: selectors.BaseSelector,
                 session: ssl.SSLSession | None) -> None:
        self.sel = sel
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        raw.connect_ex(("127.0.0.1", port))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False,
                                    session=session)
        self.state = "handshake"
        self.ready_at = 0.0
        self.next_send = 0.0
        self.sent = 0
        self.received = 0
        self.closed_at = 0.0
        self.resumed = False

    def handshake(self, now: float) -> bool:
        try:
            self.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:  # not connected yet (EAGAIN on the TCP connect) or refused
            return False
        self.state = "slow"
        self.resumed = self.sock.session_reused
        self.ready_at = now
        self.next_send = now
        self.sel.register(self.sock, selectors.EVENT_READ, self)
        return True

    def send_byte(self, now: float) -> None:
        try:
            self.sock.send(HEAD[self.sent % len(HEAD):][:1])
            self.sent += 1
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            pass
        except OSError:
            self.close(now)
            return
        self.next_send += 1.0

    def on_readable(self, now: float) -> None:
        try:
            data = self.sock.recv(4096)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except OSError:
            data = b""
        if data:
            self.received += len(data)
            return
        self.close(now)

    def close(self, now: float) -> None:
        if self.state != "closed":
            if self.state == "slow":
                self.sel.unregister(self.sock)
            self.state = "closed"
            self.closed_at = now
            self.sock.close()


def main() -> None:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # TLS 1.2 resuming one session: an abbreviated handshake with no public-key operation, so
    # that 2,000 of them take well under HeaderWait even on a loaded machine.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as first:
        session = first.session
    conns: list[Slow] = []
    sel = selectors.DefaultSelector()
    pending: list[Slow] = []
    due: list[tuple[float, int, Slow]] = []  # a heap by next_send: each sends once a second
    started = 0
    reported = False
    start = time.monotonic()
    while time.monotonic() - start < GIVE_UP:
        now = time.monotonic()
        while len(conns) < n and len(pending) < BATCH:
            c = Slow(ctx, port, sel, session)
            conns.append(c)
            pending.append(c)
        for c in list(pending):
            if c.handshake(now):
                pending.remove(c)
                heapq.heappush(due, (c.next_send, id(c), c))
        while due and due[0][0] <= now:
            c = heapq.heappop(due)[2]
            if c.state != "slow":
                continue
            started += c.sent == 0
            c.send_byte(now)
            if c.state == "slow":
                heapq.heappush(due, (c.next_send, id(c), c))
        if not reported and started == n:
            print(f"ready {now}", flush=True)
            reported = True
        if len(conns) == n and not pending and not due:
            break  # every connection closed
        for key, _ in sel.select(timeout=0.001 if pending else 0.02):
            if key.data.state != "closed":
                key.data.on_readable(time.monotonic())
    now = time.monotonic()
    print(json.dumps({
        "lives": [(c.closed_at or now) - c.ready_at for c in conns],
        "closed": [c.state == "closed" for c in conns],
        "received": sum(c.received for c in conns),
        "sent": min(c.sent for c in conns),
        "first_close": min((c.closed_at for c in conns if c.closed_at), default=now),
        "start": start,
        "last_handshake": max(c.ready_at for c in conns),
        "resumed": sum(1 for c in conns if c.resumed),
    }), flush=True)


if __name__ == "__main__":
    main()
