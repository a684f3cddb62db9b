"""Client-certificate options of stored bindings (issue 4): ``binding_options`` on a real store,
the trust digest of a snapshot, and a running Server + StoreWatcher setting every binding again
when the ROOT/CA stores or the CRLs change."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import pytest
from clients import https_get, openssl_s_client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_cli_crl import make_ca
from test_watcher import APPID, hello_app, import_leaf, wait_for

from httpsys.certstore import CertStore
from httpsys.crlstore import CrlStore
from httpsys.store import Store
from httpsys.watcher import (
    StoreWatcher,
    binding_options,
    read_snapshot,
)

IPPORT = "0.0.0.0:8443"


def _row(store: Store) -> Any:
    return read_snapshot(store).bindings[("ipport", IPPORT)]


def _trust(store: Store, pem: bytes, tmp: Path, name: str, where: str) -> str:
    path = tmp / f"{name}.pem"
    path.write_bytes(pem)
    (thumb,) = CertStore(store).import_file(path, store=where)
    return thumb


def _add_crl(store: Store, tmp: Path, ca: Any, name: str,
             this_update: datetime.datetime | None = None) -> bytes:
    crl = ca.crl() if this_update is None else ca.crl(this_update=this_update)
    path = tmp / f"{name}.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    CrlStore(store).add_file(path)
    return bytes(crl.public_bytes(serialization.Encoding.DER))


@pytest.fixture
def store(tmp_path: Path, pki: Any) -> Any:
    st = Store.open(tmp_path / "store.db")
    thumb = import_leaf(CertStore(st), tmp_path, pki.leaf)
    yield st, thumb
    st.close()


def test_defaults_are_netsh_defaults_and_no_trust(store: Any) -> None:
    st, thumb = store
    st.add_sslcert("ipport", IPPORT, thumb, APPID)
    snap = read_snapshot(st)
    assert snap.crls == ()
    assert binding_options(_row(st), CertStore(st), snap.crls) == {
        "reject": False, "disabletls12": False, "disabletls13": False,
        "enablesessionticket": False,
        "clientcertnegotiation": False, "verifyclientcertrevocation": True,
        "verifyrevocationwithcachedclientcertonly": False, "usagecheck": True,
        "revocationfreshnesstime": 0, "urlretrievaltimeout": 0,
        "trusted_ca_pem": None, "crls": (),
    }


def test_stored_values_trust_list_and_crls(store: Any, pki: Any, tmp_path: Path) -> None:
    st, thumb = store
    st.add_sslcert("ipport", IPPORT, thumb, APPID, clientcertnegotiation=1,
                   verifyclientcertrevocation=0, verifyrevocationwithcachedclientcertonly=1,
                   usagecheck=0, revocationfreshnesstime=300, urlretrievaltimeout=5000,
                   disabletls13=1, enablesessionticket=1)
    root, intermediate = make_ca("options root"), make_ca("options intermediate")
    _trust(st, root.pem(), tmp_path, "root", "ROOT")
    _trust(st, pki.ca_pem, tmp_path, "pki-ca", "ROOT")
    _trust(st, intermediate.pem(), tmp_path, "intermediate", "CA")
    der_root = _add_crl(st, tmp_path, root, "root")
    der_intermediate = _add_crl(st, tmp_path, intermediate, "intermediate")

    snap = read_snapshot(st)
    options = binding_options(_row(st), CertStore(st), snap.crls)
    assert {k: options[k] for k in options if k not in ("trusted_ca_pem", "crls")} == {
        "reject": False, "disabletls12": False, "disabletls13": True,
        "enablesessionticket": True,
        "clientcertnegotiation": True, "verifyclientcertrevocation": False,
        "verifyrevocationwithcachedclientcertonly": True, "usagecheck": False,
        "revocationfreshnesstime": 300, "urlretrievaltimeout": 5000,
    }
    # ROOT first, then CA: the names a client is asked for.
    trusted = x509.load_pem_x509_certificates(options["trusted_ca_pem"])
    subjects = [c.subject.rfc4514_string() for c in trusted]
    assert sorted(subjects[:2]) == sorted([root.issuer,
                                           x509.load_pem_x509_certificate(pki.ca_pem)
                                           .subject.rfc4514_string()])
    assert subjects[2:] == [intermediate.issuer]
    assert sorted(options["crls"]) == sorted([der_root, der_intermediate])
    for der in options["crls"]:
        x509.load_der_x509_crl(der)


def test_trust_digest_follows_root_ca_and_crls_only(store: Any, pki: Any,
                                                    tmp_path: Path) -> None:
    st, thumb = store
    seen = [read_snapshot(st).trust]
    st.add_sslcert("ipport", IPPORT, thumb, APPID)  # a binding: not trust
    import_leaf(CertStore(st), tmp_path, pki.leaf2)  # a MY certificate: not trust
    assert read_snapshot(st).trust == seen[-1]

    root = make_ca("digest root")
    root_thumb = _trust(st, root.pem(), tmp_path, "root", "ROOT")
    seen.append(read_snapshot(st).trust)
    ca_thumb = _trust(st, make_ca("digest ca").pem(), tmp_path, "ca", "CA")
    seen.append(read_snapshot(st).trust)
    now = datetime.datetime.now(datetime.timezone.utc)
    _add_crl(st, tmp_path, root, "one", now - datetime.timedelta(hours=2))
    seen.append(read_snapshot(st).trust)
    _add_crl(st, tmp_path, root, "two", now - datetime.timedelta(hours=1))  # replaces one
    seen.append(read_snapshot(st).trust)
    CrlStore(st).delete(root.issuer)
    seen.append(read_snapshot(st).trust)
    CertStore(st).delete(ca_thumb)
    seen.append(read_snapshot(st).trust)
    CertStore(st).delete(root_thumb)
    seen.append(read_snapshot(st).trust)
    assert len(set(seen[:5])) == 5  # every change gave a new digest
    assert seen[5:] == [seen[2], seen[1], seen[0]]  # and undoing them the old ones


def test_trust_change_sets_every_binding_again(server: Any, pki: Any, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture,
                                               ca_file: str) -> None:
    path = tmp_path / "store.db"
    st = Store.open(path)
    thumb = import_leaf(CertStore(st), tmp_path, pki.leaf)
    run = server({"/": hello_app}, cert=None)
    ipport = f"0.0.0.0:{run.port}"
    # Client-certificate options in the row: applied on any Server (the ones it does not take
    # yet are left out), no error.
    st.add_sslcert("ipport", ipport, thumb, APPID, clientcertnegotiation=1)
    st.add_sslcert("ipport", f"127.0.0.2:{run.port}", thumb, APPID)

    def live_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().endswith("is live")]

    with caplog.at_level(logging.INFO, logger="httpsys.watcher"), \
            StoreWatcher(run.srv, path, interval=0.01) as watcher:
        assert watcher.errors == {} and len(watcher.bindings) == 2
        assert len(live_lines()) == 2
        assert https_get(run.port, "/", ca=ca_file)[0] == 200

        import_leaf(CertStore(st), tmp_path, pki.leaf2)  # MY: nothing to set again
        assert watcher.wait_generation(st.generation())
        assert len(live_lines()) == 2

        root = make_ca("live root")
        _trust(st, root.pem(), tmp_path, "root", "ROOT")
        assert watcher.wait_generation(st.generation())
        wait_for(lambda: len(live_lines()) == 4, 2.0, "both bindings set again (ROOT)")

        _add_crl(st, tmp_path, root, "root")
        assert watcher.wait_generation(st.generation())
        wait_for(lambda: len(live_lines()) == 6, 2.0, "both bindings set again (CRL)")
        assert watcher.errors == {}
        assert https_get(run.port, "/", ca=ca_file)[0] == 200
    st.close()


def test_trusted_ca_names_sent_to_clients_follow_the_store(server: Any, pki: Any,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    st = Store.open(path)
    thumb = import_leaf(CertStore(st), tmp_path, pki.leaf)
    run = server({"/": hello_app}, cert=None)
    st.add_sslcert("ipport", f"0.0.0.0:{run.port}", thumb, APPID, clientcertnegotiation=1)
    root = make_ca("names root")
    _trust(st, root.pem(), tmp_path, "root", "ROOT")

    def ca_names() -> str:
        p = openssl_s_client(["-connect", f"127.0.0.1:{run.port}", "-servername", "localhost"],
                             input=b"Q\n")
        return p.stdout.decode(errors="replace")

    with StoreWatcher(run.srv, path, interval=0.01):
        out = ca_names()
        assert "Acceptable client certificate CA names" in out and "names root" in out
        other = make_ca("names intermediate")
        _trust(st, other.pem(), tmp_path, "other", "CA")
        wait_for(lambda: "names intermediate" in ca_names(), 3.0, "new CA name sent")
    st.close()
