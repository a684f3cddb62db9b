"""Timeouts and iplisten from the store, live in running servers (issue 3).

A real ``httpsys serve`` process changed with the real ``httpsys http`` CLI, and an in-process
Server (with and without a StoreWatcher); the assertions are on what a TLS client sees: the
server closing a silent connection, an address answering or refusing connections.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import clients
import pytest
from clients import handshake_error
from conftest import free_port
from test_serve_cli import ROOT, _store_with_binding, run  # noqa: F401 - run is a fixture
from test_watcher import hello_app

from httpsys.errors import HttpsysError
from httpsys.store import Store
from httpsys.watcher import StoreWatcher

# Not a local address (TEST-NET-1, RFC 5737): nothing can listen on it.
FOREIGN = "192.0.2.1"


def http_cli(store: Path, *args: str) -> str:
    """``python -m httpsys --store STORE http ARGS``; asserts success, returns stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "httpsys", "--store", str(store), "http", *args],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert p.returncode == 0 and p.stderr == "", p
    return p.stdout


def answers(port: int, ip: str) -> bool:
    """True if a TLS handshake on ip:port completes, False if the connection is refused."""
    try:
        return handshake_error(port, ip=ip, timeout=3) is None
    except ConnectionRefusedError:
        return False


def refused(port: int, ip: str, timeout: float = 3.0) -> bool:
    """True once connections to ip:port are refused (the core closes a listening socket on
    its I/O thread, a moment after unlisten returns); False if they still answer."""
    deadline = time.monotonic() + timeout
    while answers(port, ip):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(0.02)


def closed_within(port: int, limit: float, ip: str = "127.0.0.1") -> float:
    """Opens a TLS connection, sends nothing, returns the seconds until the server closed it
    (clients.NotClosed if it is still open after ``limit``)."""
    with clients.tls_socket(port, ip=ip) as sock:
        t0 = time.monotonic()
        clients.recv_all(sock, timeout=limit)
        return time.monotonic() - t0


# --------------------------------------------------------------------------------------------
# timeouts


def test_header_wait_timeout_added_with_the_cli_is_live(run, tmp_path, pki):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--workers", "1")
    try:
        proc.wait_listening(port)
        # The default (120 s): a silent connection stays open.
        with pytest.raises(clients.NotClosed):
            closed_within(port, 2.5)
        assert http_cli(tmp_path / "store.db", "add", "timeout",
                        "timeouttype=headerwaittimeout", "value=1") == "Timeout successfully added\n"
        # The watcher polls every 20 ms; 1 s plus a 50 ms tick of the timer wheel, with margin.
        wait_for(lambda: closed_within(port, 6) < 6, 15, "silent connection closed")
        # Deleted: back to 120 s.
        http_cli(tmp_path / "store.db", "delete", "timeout", "timeouttype=headerwaittimeout")
        time.sleep(0.5)
        with pytest.raises(clients.NotClosed):
            closed_within(port, 3.5)
    finally:
        rc = proc.finish()
    assert rc == 0, proc.err
    assert "timeout headerwaittimeout is now 1 seconds" in proc.err
    assert "timeout headerwaittimeout is now 120 seconds" in proc.err


def stalled_upload_closed_within(port: int, limit: float) -> float:
    """Starts a POST whose body never comes; the seconds until the server closed it."""
    with clients.tls_socket(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        t0 = time.monotonic()
        clients.recv_all(sock, timeout=limit)
        return time.monotonic() - t0


def test_body_timeouts_and_min_send_rate_added_with_the_cli_are_live(run, tmp_path, pki):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--workers", "1")
    try:
        proc.wait_listening(port)
        with pytest.raises(clients.NotClosed):  # 120 s by default
            stalled_upload_closed_within(port, 2.5)
        # Whether the app has answered (the body is then drained) or not, 1 s applies.
        for kind in ("entitybodytimeout", "drainentitybodytimeout"):
            http_cli(tmp_path / "store.db", "add", "timeout", f"timeouttype={kind}", "value=1")
        http_cli(tmp_path / "store.db", "add", "timeout", "timeouttype=minsendrate", "value=0x1000")
        wait_for(lambda: stalled_upload_closed_within(port, 6) < 6, 15, "stalled upload closed")
        assert clients.https_get(port, "/")[0] == 200
    finally:
        rc = proc.finish()
    assert rc == 0, proc.err
    assert "timeout entitybodytimeout is now 1 seconds" in proc.err
    assert "timeout drainentitybodytimeout is now 1 seconds" in proc.err
    assert "timeout minsendrate is now 4096 bytes a second" in proc.err


def test_serve_applies_stored_timeouts_at_start(run, tmp_path, pki):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    http_cli(tmp_path / "store.db", "add", "timeout", "headerwaittimeout", "1")
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--workers", "1")
    try:
        proc.wait_listening(port)
        assert closed_within(port, 6) < 6
    finally:
        assert proc.finish() == 0, proc.err


def test_serve_with_cert_files_applies_stored_timeouts(run, tmp_path, pki, leaf_files):  # noqa: F811
    # --cert/--key: no watcher, but an existing store's timeouts still apply at start.
    port = free_port()
    Store.open(tmp_path / "store.db").close()
    http_cli(tmp_path / "store.db", "add", "timeout", "headerwaittimeout", "1")
    chain, key = leaf_files
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--cert", chain,
               "--key", key, "--workers", "1")
    try:
        proc.wait_listening(port)
        assert closed_within(port, 6) < 6
    finally:
        assert proc.finish() == 0, proc.err


# --------------------------------------------------------------------------------------------
# iplisten


def test_iplisten_added_and_deleted_with_the_cli_is_live(run, tmp_path, pki):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    db = tmp_path / "store.db"
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--workers", "1")
    try:
        proc.wait_listening(port)
        assert answers(port, "127.0.0.1") and answers(port, "127.0.0.2")  # empty list: all
        http_cli(db, "add", "iplisten", "ipaddress=127.0.0.2")
        assert refused(port, "127.0.0.1", 5), "127.0.0.1 still listens"
        assert answers(port, "127.0.0.2")
        status, _, body = clients.https_get(port, "/", ip="127.0.0.2")
        assert status == 200 and b"httpsys is serving this page" in body

        # An address the host does not have: refused, the old set stays.
        http_cli(db, "add", "iplisten", f"ipaddress={FOREIGN}")
        time.sleep(0.5)
        assert answers(port, "127.0.0.2") and refused(port, "127.0.0.1")
        http_cli(db, "delete", "iplisten", f"ipaddress={FOREIGN}")

        http_cli(db, "delete", "iplisten", "ipaddress=127.0.0.2")  # empty again: all addresses
        wait_for(lambda: answers(port, "127.0.0.1"), 5, "127.0.0.1 listens again")
        assert answers(port, "127.0.0.2")
    finally:
        rc = proc.finish()
    assert rc == 0, proc.err
    assert f"iplisten 127.0.0.2, {FOREIGN} not applied" in proc.err
    assert f"cannot listen on {FOREIGN}:{port}" in proc.err
    assert "iplisten is now (all addresses)" in proc.err


def test_serve_starts_on_the_stored_iplisten(run, tmp_path, pki):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    http_cli(tmp_path / "store.db", "add", "iplisten", "127.0.0.2")
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--workers", "1")
    try:
        wait_for(lambda: answers(port, "127.0.0.2"), 30, "127.0.0.2 listens")
        assert refused(port, "127.0.0.1")
    finally:
        assert proc.finish() == 0, proc.err


def test_set_iplisten_keeps_listeners_counted_per_registration(server):
    run_ = server({"/a/": hello_app, "/b/": hello_app})
    srv, port = run_.srv, run_.port
    srv.set_iplisten(["127.0.0.2", "127.0.0.2"])  # duplicates count once
    assert answers(port, "127.0.0.2") and refused(port, "127.0.0.1")
    srv.set_iplisten(["127.0.0.1", "127.0.0.2"])
    assert answers(port, "127.0.0.1") and answers(port, "127.0.0.2")
    with pytest.raises(HttpsysError) as exc:
        srv.set_iplisten(["127.0.0.1", FOREIGN])
    assert FOREIGN in str(exc.value)
    assert answers(port, "127.0.0.1") and answers(port, "127.0.0.2")  # the old set stays
    # Each registration holds its own reference: removing one keeps the port open.
    srv.remove_app(run_.prefix("/a/"))
    assert answers(port, "127.0.0.1") and answers(port, "127.0.0.2")
    assert clients.https_get(port, "/b/")[0] == 200
    srv.set_iplisten([])  # empty: every address
    assert answers(port, "127.0.0.1") and answers(port, "127.0.0.3")
    srv.remove_app(run_.prefix("/b/"))
    assert refused(port, "127.0.0.1") and refused(port, "127.0.0.3")
    # A prefix added afterwards listens on the current set.
    srv.set_iplisten(["127.0.0.3"])
    srv.add_app(run_.prefix("/c/"), hello_app)
    assert answers(port, "127.0.0.3") and refused(port, "127.0.0.1")


def test_watcher_applies_iplisten_and_timeouts(server, pki, tmp_path):
    path = tmp_path / "store.db"
    run_ = server({"/": hello_app})
    with Store.open(path) as store, StoreWatcher(run_.srv, path, interval=0.01) as watcher:
        with store.transaction() as c:
            c.execute("INSERT INTO iplisten (address) VALUES ('127.0.0.2')")
            c.execute("INSERT INTO timeouts (timeouttype, value) VALUES ('headerwaittimeout', 1)")
        assert watcher.wait_generation(store.generation())
        assert watcher.iplisten == ("127.0.0.2",) and watcher.iplisten_error is None
        assert refused(run_.port, "127.0.0.1")
        assert closed_within(run_.port, 6, ip="127.0.0.2") < 6

        with store.transaction() as c:
            c.execute("INSERT INTO iplisten (address) VALUES (?)", (FOREIGN,))
        assert watcher.wait_generation(store.generation())
        assert watcher.iplisten == ("127.0.0.2",)  # kept
        assert watcher.iplisten_error is not None and FOREIGN in watcher.iplisten_error
        assert answers(run_.port, "127.0.0.2")

        with store.transaction() as c:
            c.execute("DELETE FROM iplisten")
            c.execute("DELETE FROM timeouts")
        assert watcher.wait_generation(store.generation())
        assert watcher.iplisten == () and watcher.iplisten_error is None
        assert answers(run_.port, "127.0.0.1")
        with pytest.raises(clients.NotClosed):  # back to 120 s
            closed_within(run_.port, 2.5)
