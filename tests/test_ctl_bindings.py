"""Trust lists on bindings (``sslctlidentifier`` / ``sslctlstorename``): ``binding_options`` on a
real store, the trust digest, and a running Server + StoreWatcher whose binding names a trust
list made with the real ``httpsys cert ctl`` command: only the list's CA names are sent, only
client certificates chaining to the list get through, and changes to the list are live."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from clients import openssl_s_client
from cryptography import x509
from mtls_pki import MtlsPKI
from test_cli_cert import Cli
from test_client_certs import REQUIRE, fetch, show_cert
from test_watcher import APPID, wait_for

from httpsys.certstore import CertStore
from httpsys.crlstore import CrlStore
from httpsys.ctlstore import CtlStore
from httpsys.store import Store
from httpsys.watcher import BindingError, StoreWatcher, binding_options, read_snapshot

IPPORT = "0.0.0.0:8443"


def _subjects(options: dict[str, Any]) -> list[str]:
    return [c.subject.rfc4514_string()
            for c in x509.load_pem_x509_certificates(options["trusted_ca_pem"])]


def _name(issued: Any) -> str:
    return str(issued.cert.subject.rfc4514_string())


@pytest.fixture
def pki_store(tmp_path: Path, mtls: MtlsPKI) -> Any:
    """A store with root and foreign_root in ROOT, intermediate in CA, the server certificate in
    MY and the intermediate's CRL."""
    st = Store.open(tmp_path / "store.db")
    certs = CertStore(st)
    thumbs = {name: certs.import_file(getattr(mtls, name).cert_file, store=where)[0]
              for name, where in (("root", "ROOT"), ("foreign_root", "ROOT"),
                                  ("intermediate", "CA"))}
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(mtls.server.chain_pem + mtls.server.key_pem)
    thumbs["server"] = certs.import_file(server_pem)[0]
    CrlStore(st).add_file(mtls.crl_intermediate.der_file)
    yield st, thumbs
    st.close()


def _options(st: Store) -> dict[str, Any]:
    snap = read_snapshot(st)
    return binding_options(snap.bindings[("ipport", IPPORT)], CertStore(st), snap.crls)


def test_trust_list_store_restriction_and_errors(pki_store: Any, mtls: MtlsPKI) -> None:
    st, thumbs = pki_store
    CtlStore(st).add("partners", [thumbs["intermediate"], thumbs["foreign_root"]])
    CtlStore(st).add("cas", [thumbs["intermediate"]])
    st.add_sslcert("ipport", IPPORT, thumbs["server"], APPID, clientcertnegotiation=1)
    # No sslctlidentifier: every ROOT and CA certificate, every CRL (as before).
    options = _options(st)
    assert sorted(_subjects(options)) == sorted(_name(getattr(mtls, n)) for n in
                                                ("root", "foreign_root", "intermediate"))
    assert options["crls"] == (mtls.crl_intermediate.der,)

    def using(ctl: str | None, store_name: str | None) -> dict[str, Any]:
        st.execute("BEGIN IMMEDIATE")
        st.execute("UPDATE sslcert SET sslctlidentifier = ?, sslctlstorename = ?",
                   (ctl, store_name))
        st.execute("COMMIT")
        return _options(st)

    # The list only, ROOT first; the CRL only when the list holds its issuer.
    options = using("partners", None)
    assert _subjects(options) == [_name(mtls.foreign_root), _name(mtls.intermediate)]
    assert options["crls"] == (mtls.crl_intermediate.der,)
    options = using("Partners", "root")
    assert _subjects(options) == [_name(mtls.foreign_root)]
    assert options["crls"] == ()
    assert _subjects(using("partners", "CA")) == [_name(mtls.intermediate)]

    with pytest.raises(BindingError, match=r"^sslctlidentifier: no trust list 'nobody' in the "
                                           r"store$"):
        using("nobody", None)
    with pytest.raises(BindingError, match=r"^sslctlidentifier: the trust list 'cas' has no "
                                           r"certificate in store ROOT$"):
        using("cas", "ROOT")
    with pytest.raises(BindingError, match=r"^sslctlstorename: 'MY' is not a store a trust list "
                                           r"can use \(ROOT or CA\)$"):
        using("partners", "MY")


def test_trust_digest_follows_trust_lists(pki_store: Any) -> None:
    st, thumbs = pki_store
    ctls = CtlStore(st)
    seen = [read_snapshot(st).trust]
    ctls.add("partners", [thumbs["root"]])
    seen.append(read_snapshot(st).trust)
    ctls.add("partners", [thumbs["intermediate"]])
    seen.append(read_snapshot(st).trust)
    ctls.add("others", [thumbs["root"]])
    seen.append(read_snapshot(st).trust)
    ctls.delete("others")
    ctls.delete("partners", [thumbs["intermediate"]])
    seen.append(read_snapshot(st).trust)
    assert len(set(seen[:4])) == 4
    assert seen[4] == seen[1]


def test_binding_with_a_trust_list_live(server: Any, mtls: MtlsPKI, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.db"
    cli = Cli(path, tmp_path)
    thumb = {name: cli.ok("cert", "import", str(getattr(mtls, name).cert_file),
                          "--store", where).strip()
             for name, where in (("root", "ROOT"), ("foreign_root", "ROOT"),
                                 ("intermediate", "CA"))}
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(mtls.server.chain_pem + mtls.server.key_pem)
    thumb["server"] = cli.ok("cert", "import", str(server_pem)).strip()
    cli.ok("cert", "ctl", "add", "partners", thumb["foreign_root"])

    run = server(cert=None)
    run.srv.add_app(f"https://+:{run.port}/req/", show_cert, ssl_flags=REQUIRE)
    ipport = f"0.0.0.0:{run.port}"
    cli.ok("http", "add", "sslcert", f"ipport={ipport}", f"certhash={thumb['server']}",
           f"appid={APPID}", "clientcertnegotiation=enable", "sslctlidentifier=partners")

    def ca_names() -> list[str]:
        p = openssl_s_client(["-connect", f"127.0.0.1:{run.port}", "-servername", "localhost"],
                             input=b"Q\n")
        lines = p.stdout.decode(errors="replace").splitlines()
        start = lines.index("Acceptable client certificate CA names") + 1
        names = []
        for line in lines[start:]:
            if ":" in line:  # "Requested Signature Algorithms: ..." and the like
                break
            names.append(line.strip())
        return names

    def status(client: Any) -> tuple[int, bytes]:
        resp = fetch(run.port, "/req/", mtls.client_context(client))
        return resp.status, resp.body

    with caplog.at_level(logging.INFO, logger="httpsys.watcher"), \
            StoreWatcher(run.srv, path, interval=0.01) as watcher:
        assert watcher.errors == {}
        # Only the list's CA is asked for, though root and intermediate are trusted machine-wide.
        assert ca_names() == ["O = httpsys mtls tests, CN = httpsys mtls foreign_root"]
        assert status(mtls.foreign)[0] == 200
        code, body = status(mtls.client)  # root is in ROOT, but not in the list
        assert code == 403 and b"HTTP Error 403.16. " in body

        # A new member is live for the next handshake.
        cli.ok("cert", "ctl", "add", "partners", thumb["root"])
        wait_for(lambda: status(mtls.client)[0] == 200, 5.0, "root's client let in")
        assert sorted(ca_names()) == ["O = httpsys mtls tests, CN = httpsys mtls foreign_root",
                                      "O = httpsys mtls tests, CN = httpsys mtls root"]

        # sslctlstorename restricts the list to one store: ROOT keeps both, CA has none of them,
        # which is refused: the binding keeps its last good state and the watcher says why.
        cli.ok("http", "update", "sslcert", f"ipport={ipport}", f"certhash={thumb['server']}",
               f"appid={APPID}", "clientcertnegotiation=enable", "sslctlidentifier=partners",
               "sslctlstorename=CA")
        assert watcher.wait_generation(store_generation(path))
        reason = ("sslctlidentifier: the trust list 'partners' has no certificate in store CA")
        assert watcher.errors == {f"ipport={ipport}": reason}
        assert any(r.levelno == logging.WARNING and reason in r.getMessage()
                   and f"keeping certificate {thumb['server']}" in r.getMessage()
                   for r in caplog.records)
        assert status(mtls.client)[0] == 200 and status(mtls.foreign)[0] == 200

        # Back to a good state, then the list deleted: refused again, naming sslctlidentifier.
        cli.ok("http", "update", "sslcert", f"ipport={ipport}", f"certhash={thumb['server']}",
               f"appid={APPID}", "clientcertnegotiation=enable", "sslctlidentifier=partners",
               "sslctlstorename=ROOT")
        assert watcher.wait_generation(store_generation(path))
        assert watcher.errors == {}
        cli.ok("cert", "ctl", "delete", "partners", thumb["root"])
        wait_for(lambda: status(mtls.client)[0] == 403, 5.0, "root's client refused again")
        cli.ok("cert", "ctl", "delete", "partners")
        assert watcher.wait_generation(store_generation(path))
        assert watcher.errors == {
            f"ipport={ipport}": "sslctlidentifier: no trust list 'partners' in the store"}
        assert status(mtls.foreign)[0] == 200  # the last good binding still serves
        assert status(mtls.client)[0] == 403


def store_generation(path: Path) -> int:
    with Store.open(path) as st:
        return st.generation()
