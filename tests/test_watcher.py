"""Live reconfiguration: a real Server, a StoreWatcher on a temporary store, real TLS clients.

The store is changed the way the CLI changes it (one ``Store.transaction()`` per change); the
assertions are on the certificate a new TLS handshake presents, or on the handshake failing.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clients import handshake_error, https_get, peer_cert_der

from httpsys.certstore import CertStore
from httpsys.store import Store
from httpsys.watcher import StoreWatcher

APPID = "{00112233-4455-6677-8899-aabbccddeeff}"


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def wait_for(cond: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(0.01)


def import_leaf(certs: CertStore, tmp: Path, leaf: Any) -> str:
    path = tmp / f"{leaf.name.replace(' ', '_')}.pem"
    path.write_bytes(leaf.chain_pem + leaf.key_pem)
    (thumb,) = certs.import_file(path)
    return thumb


class Env:
    def __init__(self, run: Any, store: Store, watcher: StoreWatcher, thumbs: dict[str, str],
                 path: Path) -> None:
        self.run, self.store, self.watcher, self.thumbs, self.path = run, store, watcher, thumbs, path
        self.port = run.port
        self.ipport = f"0.0.0.0:{run.port}"

    def set_certhash(self, thumb: str) -> int:
        with self.store.transaction() as c:
            c.execute("UPDATE sslcert SET certhash = ? WHERE kind = 'ipport' AND key = ?",
                      (thumb, self.ipport))
        return self.store.generation()

    def wait_applied(self, generation: int) -> None:
        assert self.watcher.wait_generation(generation, 3.0), (
            f"the watcher did not apply generation {generation} (at {self.watcher.generation})")


@pytest.fixture
def env(server, pki, tmp_path) -> Iterator[Env]:
    path = tmp_path / "store.db"  # the server fixture points HTTPSYS_STORE here
    store = Store.open(path)
    certs = CertStore(store)
    thumbs = {"leaf": import_leaf(certs, tmp_path, pki.leaf),
              "leaf2": import_leaf(certs, tmp_path, pki.leaf2)}
    run = server({"/": hello_app}, cert=None)
    store.add_sslcert("ipport", f"0.0.0.0:{run.port}", thumbs["leaf"], APPID)
    watcher = StoreWatcher(run.srv, path, interval=0.01)
    watcher.start()
    try:
        yield Env(run, store, watcher, thumbs, path)
    finally:
        watcher.stop()
        store.close()


def test_initial_binding_serves(env, pki, ca_file):
    # start() applied the store synchronously: no waiting here.
    info: dict[str, Any] = {}
    status, _, body = https_get(env.port, "/", ca=ca_file, info=info)
    assert (status, body) == (200, b"hello")
    assert info["peer_cert"] == pki.leaf.der
    assert env.watcher.bindings == {f"ipport={env.ipport}": env.thumbs["leaf"]}
    assert env.watcher.errors == {}


def test_certhash_change_is_live(env, pki, ca_file):
    env.set_certhash(env.thumbs["leaf2"])
    wait_for(lambda: peer_cert_der(env.port) == pki.leaf2.der, 2.0, "leaf2 presented")
    status, _, body = https_get(env.port, "/", ca=ca_file)
    assert (status, body) == (200, b"hello")
    env.set_certhash(env.thumbs["leaf"])
    wait_for(lambda: peer_cert_der(env.port) == pki.leaf.der, 2.0, "leaf presented again")


def test_open_connection_keeps_its_certificate(env, pki, ca_file):
    from clients import https_connection

    conn = https_connection(env.port, ca_file)
    try:
        conn.request("GET", "/", headers={"Host": f"localhost:{env.port}"})
        assert conn.getresponse().read() == b"hello"
        env.wait_applied(env.set_certhash(env.thumbs["leaf2"]))
        wait_for(lambda: peer_cert_der(env.port) == pki.leaf2.der, 2.0, "leaf2 presented")
        conn.request("GET", "/", headers={"Host": f"localhost:{env.port}"})
        assert conn.getresponse().read() == b"hello"
        assert conn.sock.getpeercert(binary_form=True) == pki.leaf.der
        assert conn.connects == 1
    finally:
        conn.close()


def test_requests_during_100_updates_never_fail(env, pki, ca_file):
    stop = threading.Event()
    results = {"ok": 0, "fail": []}  # type: dict[str, Any]
    seen: set[bytes] = set()

    def client() -> None:
        while not stop.is_set():
            info: dict[str, Any] = {}
            try:
                status, _, body = https_get(env.port, "/", ca=ca_file, info=info, timeout=10)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                results["fail"].append(repr(exc))
                continue
            if (status, body) != (200, b"hello"):
                results["fail"].append(f"{status} {body!r}")
            else:
                results["ok"] += 1
                seen.add(info["peer_cert"])

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(100):
            generation = env.set_certhash(env.thumbs["leaf2" if i % 2 == 0 else "leaf"])
            env.wait_applied(generation)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["fail"] == [], results["fail"][:5]
    assert results["ok"] >= 20
    assert seen == {pki.leaf.der, pki.leaf2.der}
    assert env.watcher.errors == {}


def _write_raw(path: Path, sql: str, params: tuple[Any, ...]) -> None:
    """A write behind the store's back (no foreign keys), bumping the generation like a change."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, params)
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_invalid_change_keeps_last_good_state(env, pki, ca_file, caplog):
    missing = "00" * 20
    with caplog.at_level("WARNING", logger="httpsys.watcher"):
        _write_raw(env.path, "UPDATE sslcert SET certhash = ? WHERE key = ?", (missing, env.ipport))
        env.wait_applied(env.store.generation())
    name = f"ipport={env.ipport}"
    assert missing in env.watcher.errors[name]
    assert any(name in r.getMessage() and missing in r.getMessage() for r in caplog.records)
    assert peer_cert_der(env.port) == pki.leaf.der
    assert https_get(env.port, "/", ca=ca_file)[0] == 200

    # A certificate without a private key (a ROOT entry): refused too, and named as such.
    ca_path = env.path.parent / "ca.pem"
    ca_path.write_bytes(pki.ca_pem)
    (ca_thumb,) = CertStore(env.store).import_file(ca_path, store="ROOT")
    with env.store.transaction() as c:
        c.execute("UPDATE sslcert SET certhash = ?, certstorename = 'ROOT' WHERE key = ?",
                  (ca_thumb, env.ipport))
    env.wait_applied(env.store.generation())
    assert "no private key" in env.watcher.errors[name]
    assert peer_cert_der(env.port) == pki.leaf.der

    # A good change afterwards applies and clears the error.
    with env.store.transaction() as c:
        c.execute("UPDATE sslcert SET certhash = ?, certstorename = NULL WHERE key = ?",
                  (env.thumbs["leaf2"], env.ipport))
    wait_for(lambda: peer_cert_der(env.port) == pki.leaf2.der, 2.0, "leaf2 presented")
    # The certificate is live as soon as set_sslcert returns; the watcher records the outcome
    # just after, so wait for the whole change to be applied before reading its errors.
    env.wait_applied(env.store.generation())
    assert env.watcher.errors == {}


def test_missing_certificate_applies_once_imported(server, pki, tmp_path):
    # A binding whose certificate is absent when the server starts: the server starts anyway,
    # and importing the certificate later makes the binding live.
    path = tmp_path / "store.db"
    run = server({"/": hello_app}, cert=None)
    ipport = f"0.0.0.0:{run.port}"
    thumb = hashlib.sha1(pki.leaf.der).hexdigest()
    Store.open(path).close()
    _write_raw(path, "INSERT INTO sslcert (kind, key, certhash, appid) VALUES ('ipport', ?, ?, ?)",
               (ipport, thumb, APPID))
    with StoreWatcher(run.srv, path, interval=0.01) as watcher:
        assert f"ipport={ipport}" in watcher.errors
        assert handshake_error(run.port) is not None
        with Store.open(path) as store:
            assert import_leaf(CertStore(store), tmp_path, pki.leaf) == thumb
        wait_for(lambda: handshake_error(run.port) is None, 2.0, "binding live")
        assert peer_cert_der(run.port) == pki.leaf.der


def test_delete_binding_fails_new_handshakes(env, pki):
    assert peer_cert_der(env.port) == pki.leaf.der
    with env.store.transaction() as c:
        c.execute("DELETE FROM sslcert WHERE kind = 'ipport' AND key = ?", (env.ipport,))
    env.wait_applied(env.store.generation())
    assert env.watcher.bindings == {}
    wait_for(lambda: handshake_error(env.port) is not None, 2.0, "handshake refused")
    # And adding it back makes it serve again.
    env.store.add_sslcert("ipport", env.ipport, env.thumbs["leaf2"], APPID)
    wait_for(lambda: handshake_error(env.port) is None, 2.0, "binding back")
    assert peer_cert_der(env.port) == pki.leaf2.der


def test_options_iplisten_and_timeouts_are_read(env):
    with env.store.transaction() as c:
        c.execute("UPDATE sslcert SET disabletls13 = 1 WHERE key = ?", (env.ipport,))
        c.execute("INSERT INTO iplisten (address) VALUES ('127.0.0.1')")
        c.execute("INSERT INTO timeouts (timeouttype, value) VALUES ('idleconnectiontimeout', 60)")
    env.wait_applied(env.store.generation())
    wait_for(lambda: _version(env.port) == "TLSv1.2", 2.0, "TLS 1.3 disabled")
    assert env.watcher.iplisten == ("127.0.0.1",)
    assert env.watcher.timeouts == {"idleconnectiontimeout": 60}


def _version(port: int) -> str:
    info: dict[str, Any] = {}
    https_get(port, "/", info=info)
    return str(info["version"])


def test_hostnameport_bindings_follow_the_store(env, pki):
    if getattr(env.run.srv, "set_sslcert_sni", None) is None:
        pytest.skip("this core has no SNI bindings (Server.set_sslcert_sni)")
    hostport = f"a.test:{env.port}"
    env.store.add_sslcert("hostnameport", hostport, env.thumbs["leaf2"], APPID)
    wait_for(lambda: peer_cert_der(env.port, sni="a.test") == pki.leaf2.der, 2.0, "SNI binding")
    assert peer_cert_der(env.port, sni="other.test") == pki.leaf.der
    assert env.watcher.bindings[f"hostnameport={hostport}"] == env.thumbs["leaf2"]
    with env.store.transaction() as c:
        c.execute("DELETE FROM sslcert WHERE kind = 'hostnameport'")
    wait_for(lambda: peer_cert_der(env.port, sni="a.test") == pki.leaf.der, 2.0, "SNI deleted")
    assert f"hostnameport={hostport}" not in env.watcher.bindings
