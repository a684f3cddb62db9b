"""Client-certificate mappings from the store to running servers.

- The StoreWatcher on a real Server: mappings added with the real CLI reach
  ``Server.set_certmappings`` as httpsys.certmapping objects in the order they were added; a
  refused change (a damaged row) is logged, leaves the server's mappings alone and does not
  stop the watcher.
- End to end (once the core has ``hs_server_set_certmappings``): ``httpsys serve`` with
  ``--ssl-flags Ssl,SslNegotiateCert,SslMapCert`` on a store set up with the CLI only; a mapped
  client's request reaches the app with REMOTE_USER, an unmapped or denied one gets 403.12, and
  changes made while it runs apply to the next connection.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clients
import pytest
from conftest import free_port
from mtls_pki import MtlsPKI
from test_cli_cert import Cli
from test_serve_cli import ROOT, Proc

import httpsys._native
from httpsys.certmapping import ManyToOne, OneToOne, Rule
from httpsys.store import Store
from httpsys.watcher import StoreWatcher

HAS_CORE_MAPPING = hasattr(httpsys._native.lib, "hs_server_set_certmappings")
needs_core = pytest.mark.skipif(not HAS_CORE_MAPPING,
                                reason="the core has no hs_server_set_certmappings yet")

APPID = "{00112233-4455-6677-8899-aabbccddeeff}"
MAP_FLAGS = "Ssl,SslNegotiateCert,SslMapCert"


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(0.01)


def generation(path: Path) -> int:
    # Opened and closed in the watcher's process on purpose: that must not blind the watcher
    # (test_store.py's test_opening_the_store_again_keeps_a_long_lived_connection_current).
    with Store.open(path) as st:
        return st.generation()


# ---- the watcher on a real Server ----------------------------------------------------------


class Watched:
    def __init__(self, run: Any, watcher: StoreWatcher, cli: Cli,
                 calls: list[list[Any]]) -> None:
        self.run, self.watcher, self.cli, self.calls = run, watcher, cli, calls

    def applied(self) -> None:
        """Waits until the watcher applied the store's current generation."""
        gen = generation(self.cli.store)
        assert self.watcher.wait_generation(gen, 5.0), (gen, self.watcher.generation)


@pytest.fixture
def watched(server: Callable[..., Any], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    path = tmp_path / "store.db"
    cli = Cli(path, tmp_path)
    Store.open(path).close()  # created and migrated before the watcher opens it
    run = server(cert=None)
    # Record what the watcher hands the server, then let the real method do its work.
    real = run.srv.set_certmappings
    calls: list[list[Any]] = []

    def recording(mappings: Any) -> None:
        mappings = list(mappings)
        calls.append(mappings)
        real(mappings)

    monkeypatch.setattr(run.srv, "set_certmappings", recording)
    watcher = StoreWatcher(run.srv, path, interval=0.01)
    watcher.start()
    try:
        yield Watched(run, watcher, cli, calls)
    finally:
        watcher.stop()


def test_cli_changes_reach_the_server_in_order(watched: Watched, mtls: MtlsPKI,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpsys.watcher")
    # No mappings in the store: the server is not asked to change its (empty) set.
    assert watched.calls == []
    cli = watched.cli
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice")
    cli.ok("http", "add", "certmapping", "name=org", "type=manytoone", "user=org-users",
           "rules=Subject.O=httpsys mtls tests;Issuer.CN=*intermediate", "casesensitive=no")
    watched.applied()
    alice = OneToOne(mtls.client.der, "alice", True)
    org = ManyToOne("org", "org-users", (Rule("Subject", "O", "httpsys mtls tests"),
                                         Rule("Issuer", "CN", "*intermediate")),
                    "Allow", False, True)
    wait_for(lambda: watched.calls[-1:] == [[alice, org]], what="alice and org handed over")

    if HAS_CORE_MAPPING:
        assert [r.name for r in watched.watcher.certmappings] == ["alice", "org"]
        assert watched.watcher.certmappings_error is None
        assert "certmapping: 2 mapping(s) live: alice, org" in caplog.text
    else:  # this worktree's core: refused (AttributeError), logged, the server keeps its set
        assert watched.watcher.certmappings == ()
        assert "hs_server_set_certmappings" in str(watched.watcher.certmappings_error)
        assert "certmapping alice, org not applied: AttributeError(" in caplog.text
        assert "the server keeps its previous mappings (none)" in caplog.text

    # Deleted and added again: last in the order. Disabled: still handed over, as disabled.
    cli.ok("http", "delete", "certmapping", "name=alice")
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice", "enabled=no")
    watched.applied()
    wait_for(lambda: watched.calls[-1] == [org, OneToOne(mtls.client.der, "alice", False)],
             what="org then the disabled alice handed over")

    # A store change that leaves the mappings alone does not hand live ones over again; a
    # refused set is tried again (without a new warning).
    count = len(watched.calls)
    warnings = sum(r.levelno == logging.WARNING for r in caplog.records)
    cli.ok("http", "add", "timeout", "timeouttype=idleconnectiontimeout", "value=60")
    watched.applied()
    assert watched.watcher.timeouts == {"idleconnectiontimeout": 60}
    if HAS_CORE_MAPPING:
        assert len(watched.calls) == count
    else:
        assert watched.calls[count - 1:] == [watched.calls[count - 1]] * 2
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == warnings

    cli.ok("http", "delete", "certmapping", "name=alice")
    cli.ok("http", "delete", "certmapping", "name=org")
    watched.applied()
    if HAS_CORE_MAPPING:
        wait_for(lambda: watched.calls[-1] == [], what="the empty set handed over")
    else:  # the store is back to what the server has (none): nothing to refuse any more
        assert watched.watcher.certmappings_error is None


def test_a_refused_change_is_logged_and_the_watcher_goes_on(
        watched: Watched, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpsys.watcher")
    # A row the CLI would never write (damaged rules): the watcher must not choke on it.
    with Store.open(watched.cli.store) as st, st.transaction() as c:
        c.execute("INSERT INTO certmapping (name, position, type, rules, user) "
                  "VALUES ('broken', 1, 'manytoone', 'not json', 'x')")
    watched.applied()
    error = watched.watcher.certmappings_error
    assert error is not None and "the stored rules of mapping 'broken' are damaged" in error
    assert watched.watcher.certmappings == ()
    assert watched.calls == []  # refused before it reached the server
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "certmapping broken not applied" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "the server keeps its previous mappings (none)" in warnings[0]

    # Other changes still apply; the same refusal is not logged again for them.
    watched.cli.ok("http", "add", "timeout", "timeouttype=headerwaittimeout", "value=30")
    watched.applied()
    assert watched.watcher.timeouts == {"headerwaittimeout": 30}
    assert sum("certmapping broken not applied" in r.getMessage() for r in caplog.records) == 1

    # Removing the damaged row takes the store back to what is live: no error any more.
    watched.cli.ok("http", "delete", "certmapping", "name=broken")
    watched.applied()
    assert watched.watcher.certmappings_error is None


# ---- end to end through httpsys serve ------------------------------------------------------

WHOAMI = '''
import json


def app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in ("REMOTE_USER", "AUTH_TYPE")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def fetch(port: int, ctx: ssl.SSLContext, path: str = "/") -> clients.Response:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        return clients.read_response(sock, bytearray())
    finally:
        sock.close()


def remote_user(resp: clients.Response) -> Any:
    assert resp.status == 200, (resp.status, resp.body[:300])
    return json.loads(resp.body)["REMOTE_USER"]


def is_403_12(resp: clients.Response) -> bool:
    return resp.status == 403 and b"HTTP Error 403.12." in resp.body


@needs_core
def test_serve_maps_client_certificates_from_the_store(tmp_path: Path, mtls: MtlsPKI) -> None:
    port = free_port()
    path = tmp_path / "store.db"
    cli = Cli(path, tmp_path)
    # The store, with the CLI only: trust, the server's certificate, a binding that asks for
    # client certificates in the handshake, and the mappings.
    cli.ok("cert", "import", str(mtls.root.cert_file), "--store", "ROOT")
    cli.ok("cert", "import", str(mtls.intermediate.cert_file), "--store", "CA")
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(mtls.server.chain_pem + mtls.server.key_pem)
    (thumb,) = cli.ok("cert", "import", str(server_pem)).split()
    cli.ok("http", "add", "sslcert", f"ipport=0.0.0.0:{port}", f"certhash={thumb}",
           f"appid={APPID}", "clientcertnegotiation=enable")
    carol = mtls.make_client("certmap_carol")
    dave = mtls.make_client("certmap_dave")
    erin = mtls.make_client("certmap_erin")
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice")
    cli.ok("http", "add", "certmapping", "name=no-dave", "type=manytoone", "permission=deny",
           "rules=Subject.CN=*certmap_dave")
    cli.ok("http", "add", "certmapping", "name=carols", "type=manytoone", "user=carol-group",
           "rules=Subject.CN=HTTPSYS MTLS CERTMAP_*;Issuer.CN=httpsys mtls intermediate",
           "casesensitive=no")
    (tmp_path / "whoami.py").write_text(WHOAMI)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]),
               HTTPSYS_STORE=str(tmp_path / "env" / "store.db"))
    proc = Proc([sys.executable, "-m", "httpsys", "--store", str(path), "serve",
                 "--app", f"https://+:{port}/=whoami:app", "--ssl-flags", MAP_FLAGS], env)
    try:
        proc.wait_listening(port)
        # One-to-one first; then the first many-to-one mapping that matches decides.
        assert remote_user(fetch(port, mtls.client_context(mtls.client))) == "alice"
        resp = fetch(port, mtls.client_context(carol))
        assert remote_user(resp) == "carol-group"
        assert json.loads(resp.body)["AUTH_TYPE"] == "SSL/PCT"
        # dave would match carols too, but the Deny before it decides; erin: carols, not dave.
        assert is_403_12(fetch(port, mtls.client_context(dave)))
        assert remote_user(fetch(port, mtls.client_context(erin))) == "carol-group"
        # A valid certificate nothing maps: 403.12. (revoked is valid here: no CRL in the store.)
        cli.ok("http", "update", "certmapping", "name=carols", "casesensitive=yes")
        wait_for(lambda: is_403_12(fetch(port, mtls.client_context(erin))),
                 what="case-sensitive rules no longer match erin")
        assert is_403_12(fetch(port, mtls.client_context(mtls.revoked)))

        # Live: a disabled mapping maps no more; a new one maps from the next connection.
        cli.ok("http", "update", "certmapping", "name=alice", "enabled=no")
        wait_for(lambda: is_403_12(fetch(port, mtls.client_context(mtls.client))),
                 what="alice disabled")
        cli.ok("http", "add", "certmapping", "name=revoked", "type=onetoone",
               f"certfile={mtls.revoked.cert_file}", "user=rev")
        wait_for(lambda: fetch(port, mtls.client_context(mtls.revoked)).status == 200,
                 what="the new one-to-one mapping")
        assert remote_user(fetch(port, mtls.client_context(mtls.revoked))) == "rev"
        cli.ok("http", "delete", "certmapping", "name=no-dave")
        cli.ok("http", "update", "certmapping", "name=carols", "casesensitive=no")
        wait_for(lambda: fetch(port, mtls.client_context(dave)).status == 200,
                 what="dave no longer denied")
        assert remote_user(fetch(port, mtls.client_context(dave))) == "carol-group"
    finally:
        rc = proc.finish()
    assert rc == 0, proc.err
    assert "certmapping: 3 mapping(s) live: alice, no-dave, carols" in proc.err
