"""``httpsys serve`` and ``httpsys demo`` as real processes (``python -m httpsys``) on a temporary
store, asked with real TLS clients; and the urlacl check that refuses a reserved namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients import handshake_error, https_get, peer_cert_der
from conftest import free_port

from httpsys import AccessDeniedError
from httpsys.__main__ import DEMO_APPID, check_reservations
from httpsys.certstore import CertStore
from httpsys.store import Store
from httpsys.urlprefix import parse

ROOT = Path(__file__).resolve().parent.parent
APPID = "{00112233-4455-6677-8899-aabbccddeeff}"


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  cwd=ROOT, text=True)
        self.out = self.err = ""

    def wait_listening(self, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.p.poll() is not None:
                self.finish()
                raise AssertionError(f"exited {self.p.returncode}: {self.out!r} {self.err!r}")
            try:
                handshake_error(port, timeout=2)
                return
            except (ConnectionRefusedError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout}s")
            time.sleep(0.05)

    def finish(self, timeout: float = 20) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        self.out, self.err = self.p.communicate(timeout=timeout)
        return int(self.p.returncode)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Any]:
    procs: list[Proc] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_STORE=str(tmp_path / "env" / "store.db"))

    def start(*args: str) -> Proc:
        proc = Proc([sys.executable, "-m", "httpsys", "--store", str(tmp_path / "store.db"),
                     *args], env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.p.poll() is None:
            proc.p.kill()
            proc.p.communicate()


def _store_with_binding(tmp_path: Path, pki: Any, port: int) -> tuple[Store, dict[str, str]]:
    store = Store.open(tmp_path / "store.db")
    certs = CertStore(store)
    thumbs = {}
    for name in ("leaf", "leaf2"):
        leaf = getattr(pki, name)
        f = tmp_path / f"{name}.pem"
        f.write_bytes(leaf.chain_pem + leaf.key_pem)
        (thumbs[name],) = certs.import_file(f)
    store.add_sslcert("ipport", f"0.0.0.0:{port}", thumbs["leaf"], APPID)
    return store, thumbs


def test_serve_uses_the_store_and_follows_it(run, tmp_path, pki, ca_file):
    port = free_port()
    store, thumbs = _store_with_binding(tmp_path, pki, port)
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--threads", "2")
    try:
        proc.wait_listening(port)
        info: dict[str, Any] = {}
        status, _, body = https_get(port, "/", ca=ca_file, info=info)
        assert status == 200 and b"httpsys is serving this page" in body
        assert info["peer_cert"] == pki.leaf.der
        # Live: update the binding in the store; the running process presents the new one.
        with store.transaction() as c:
            c.execute("UPDATE sslcert SET certhash = ? WHERE key = ?",
                      (thumbs["leaf2"], f"0.0.0.0:{port}"))
        deadline = time.monotonic() + 2
        while peer_cert_der(port) != pki.leaf2.der:
            assert time.monotonic() < deadline, "the change did not reach the server in 2s"
            time.sleep(0.01)
    finally:
        store.close()
        rc = proc.finish()
    assert rc == 0, proc.err
    assert f"serving https://+:{port}/" in proc.out


def test_serve_with_cert_and_key_files(run, tmp_path, pki, ca_file, leaf_files):
    port = free_port()
    chain, key = leaf_files
    proc = run("serve", "--app", f"https://+:{port}/x/=httpsys.demo:app", "--cert", chain,
               "--key", key)
    try:
        proc.wait_listening(port)
        status, _, _ = https_get(port, "/x/", ca=ca_file)
        assert status == 200
    finally:
        assert proc.finish() == 0, proc.err


def test_serve_refuses_a_namespace_reserved_for_another_user(run, tmp_path, pki):
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    with store.transaction() as c:
        c.execute("INSERT INTO urlacl (url, user) VALUES (?, ?)",
                  (f"https://+:{port}/api/", "someoneelse"))
    store.close()
    proc = run("serve", "--app", f"https://+:{port}/api/v1/=httpsys.demo:app")
    rc = proc.finish(timeout=60) if proc.p.wait(60) is not None else -1
    assert rc != 0
    assert "ERROR_ACCESS_DENIED, 5" in proc.err and "access denied" in proc.err
    assert f"https://+:{port}/api/v1/" in proc.err and "someoneelse" in proc.err
    with pytest.raises(ConnectionRefusedError):
        handshake_error(port, timeout=2)


def test_reservation_rules():
    names = {"alice"}
    p = parse("https://+:8443/api/v1/")
    check_reservations([], p, names)  # nothing reserved: anyone
    check_reservations([("https://+:8443/other/", "bob", 1)], p, names)  # another namespace
    check_reservations([("http://+:8443/api/", "bob", 1)], p, names)  # another scheme
    check_reservations([("https://+:8443/api/", "alice", 1), ("https://+:8443/", "bob", 1)],
                       p, names)
    with pytest.raises(AccessDeniedError):  # the most specific reservation decides (HTTP.sys)
        check_reservations([("https://+:8443/api/", "bob", 1), ("https://+:8443/", "alice", 1)],
                           p, names)
    check_reservations([("https://+:8443/api/", "HOST\\Alice", 1)], p, names)
    with pytest.raises(AccessDeniedError) as e:
        check_reservations([("https://+:8443/", "bob", 1)], p, names)
    assert e.value.winerror == 5 and "bob" in str(e.value)
    with pytest.raises(AccessDeniedError):  # alice may not listen there
        check_reservations([("https://+:8443/api/", "alice", 0)], p, names)


def test_demo_creates_the_certificate_and_binding(run, tmp_path):
    port = free_port()
    proc = run("demo", "--port", str(port), "--workers", "1")
    try:
        proc.wait_listening(port)
        status, _, body = https_get(port, "/", ca=str(tmp_path / "demo-localhost.crt"))
        assert status == 200 and b"httpsys is serving this page" in body
    finally:
        assert proc.finish() == 0, proc.err
    assert f"https://localhost:{port}/" in proc.out and "curl --cacert" in proc.out
    with Store.open(tmp_path / "store.db") as store:
        rows = store.execute("SELECT certhash, appid FROM sslcert WHERE key = ?",
                             (f"0.0.0.0:{port}",)).fetchall()
        assert len(rows) == 1 and rows[0][1] == DEMO_APPID
        entry = CertStore(store).get(rows[0][0])
        assert entry.subject == "CN=localhost" and entry.has_key
        count = len(CertStore(store).list("MY"))
    # A second run reuses the binding (and so the certificate).
    proc = run("demo", "--port", str(port), "--workers", "1")
    try:
        proc.wait_listening(port)
    finally:
        assert proc.finish() == 0, proc.err
    with Store.open(tmp_path / "store.db") as store:
        assert len(CertStore(store).list("MY")) == count


@pytest.mark.parametrize("target, message", [
    ("no_such_module_xyz:app", "--app: cannot import 'no_such_module_xyz'"),
    ("httpsys.demo:no_such_app", "--app: 'httpsys.demo' has no attribute 'no_such_app'"),
])
def test_an_app_that_cannot_be_loaded_is_a_clear_error(run, tmp_path, target, message):  # noqa: F811
    proc = run("serve", "--app", f"https://+:{free_port()}/={target}")
    proc.p.wait(60)
    assert proc.finish() == 2
    assert message in proc.err and "Traceback" not in proc.err, proc.err


def test_serve_writes_the_httperr_log_beside_the_store(run, tmp_path, ca_file, leaf_files):
    port = free_port()
    chain, key = leaf_files
    proc = run("serve", "--app", f"https://+:{port}/x/=httpsys.demo:app", "--cert", chain,
               "--key", key)
    try:
        proc.wait_listening(port)
        assert https_get(port, "/nothere", ca=ca_file)[0] == 404
    finally:
        assert proc.finish() == 0, proc.err  # close() writes what is queued
    log_dir = tmp_path / "httperr"
    assert log_dir.stat().st_mode & 0o777 == 0o700
    lines = (log_dir / "httperr1.log").read_text().splitlines()
    assert lines[3].startswith("#Fields: date time c-ip")
    assert lines[4].endswith(f" 127.0.0.1 {port} HTTP/1.1 GET /nothere 404 - NotFound -")


def test_serve_httperr_dir_and_no_httperr(run, tmp_path, ca_file, leaf_files):
    port = free_port()
    chain, key = leaf_files
    chosen = tmp_path / "chosen"
    proc = run("serve", "--app", f"https://+:{port}/x/=httpsys.demo:app", "--cert", chain,
               "--key", key, "--httperr-dir", str(chosen))
    try:
        proc.wait_listening(port)
        assert https_get(port, "/nothere", ca=ca_file)[0] == 404
    finally:
        assert proc.finish() == 0, proc.err
    assert (chosen / "httperr1.log").read_text().count(" NotFound ") == 1
    port = free_port()
    proc = run("serve", "--app", f"https://+:{port}/x/=httpsys.demo:app", "--cert", chain,
               "--key", key, "--no-httperr")
    try:
        proc.wait_listening(port)
        assert https_get(port, "/nothere", ca=ca_file)[0] == 404
    finally:
        assert proc.finish() == 0, proc.err
    assert not (tmp_path / "httperr").exists()
