"""Store migration 5 and the certificate store API the ACME client uses: where a certificate
came from (``source``), when it is renewed (``renew_at``), ``add_chain`` / ``put_chain`` /
``set_renew_at``. A real SQLite store; certificates made here with ``cryptography``."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import PKI
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from httpsys import store as store_mod
from httpsys.certs import self_signed
from httpsys.certstore import CertificateNotFoundError, CertStore
from httpsys.errors import InvalidParameterError
from httpsys.store import MIGRATIONS, Store

UTC = datetime.timezone.utc


def _insert_v4(c: Any, cert_pem: bytes, store: str, key_pem: bytes | None,
               chain: bytes = b"") -> str:
    """Inserts a certificate with version 4's columns, as that version's code did."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    thumb = hashlib.sha1(der).hexdigest()
    c.execute("INSERT INTO certificates (thumbprint, store, der, chain, subject, issuer, "
              "not_before, not_after) VALUES (?, ?, ?, ?, ?, ?, 'a', 'b')",
              (thumb, store, der, chain, cert.subject.rfc4514_string(),
               cert.issuer.rfc4514_string()))
    if key_pem is not None:
        key = serialization.load_pem_private_key(key_pem, None)
        c.execute("INSERT INTO private_keys VALUES (?, ?)", (thumb, key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())))
    return thumb


def test_migration_5_labels_existing_certificates(tmp_path: Path, pki: PKI,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:4])
    made_pem, made_key = self_signed("old.example")  # the shape of what cert new made
    with Store.open(path) as st:
        assert st.schema_version() == 4
        with st.transaction() as c:
            made = _insert_v4(c, made_pem, "MY", made_key)
            imported = _insert_v4(c, pki.leaf.cert_pem, "MY", pki.leaf.key_pem,
                                  chain=pki.ca_der)
            root = _insert_v4(c, pki.ca_pem, "ROOT", None)
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with Store.open(path) as st:
        assert st.schema_version() == len(MIGRATIONS) >= 5
        certs = CertStore(st)
        assert certs.get(made).source == "self-signed"
        assert certs.get(imported).source == "import"
        assert certs.get(root).source == "import"
        assert {e.renew_at for e in certs.list()} == {None}
        assert st.execute("SELECT count(*) FROM pending_request").fetchone() == (0,)


def test_add_chain_with_source_and_renew_at(tmp_path: Path, pki: PKI) -> None:
    when = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with Store.open(tmp_path / "store.db") as st:
        certs = CertStore(st)
        thumb = certs.add_chain(pki.leaf.chain_pem.decode(), pki.leaf.key_pem, source="acme",
                                renew_at=when)
        entry = certs.get(thumb)
        assert (entry.store, entry.has_key, entry.source) == ("MY", True, "acme")
        assert entry.renew_at == "2030-01-02T03:04:05Z"
        assert len(entry.chain) == 1
        assert certs.export(thumb) == pki.leaf.chain_pem

        certs.set_renew_at(thumb, datetime.datetime(2029, 6, 1, tzinfo=UTC))
        assert certs.get(thumb).renew_at == "2029-06-01T00:00:00Z"
        assert [e.thumbprint for e in certs.renewals()] == [thumb]
        certs.set_renew_at(thumb, None)
        assert certs.get(thumb).renew_at is None
        assert certs.renewals() == []

        # Importing it again replaces the chain but keeps where it came from.
        certs.set_renew_at(thumb, when)
        (tmp_path / "again.pem").write_bytes(pki.leaf.chain_pem + pki.leaf.key_pem)
        certs.import_file(tmp_path / "again.pem")
        assert (certs.get(thumb).source, certs.get(thumb).renew_at) == ("acme",
                                                                        "2030-01-02T03:04:05Z")


def test_put_chain_is_part_of_the_callers_transaction(tmp_path: Path, pki: PKI) -> None:
    with Store.open(tmp_path / "store.db") as st:
        certs = CertStore(st)
        before = st.generation()
        with st.transaction() as c:
            thumb = certs.put_chain(c, pki.leaf.chain_pem, pki.leaf.key_pem, source="request")
            c.execute("INSERT INTO iplisten VALUES ('127.0.0.1')")
        assert st.generation() == before + 1
        assert certs.get(thumb).source == "request"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"source": "stolen"}, "source"),
    ({"source": "acme", "renew_at": datetime.datetime(2030, 1, 1)}, "renew_at"),
    ({"source": "acme", "key": "other"}, "key"),
    ({"source": "acme", "key": b"not a key"}, "key"),
    ({"source": "acme", "chain": b"-----BEGIN CERTIFICATE-----\nAAAA\n"}, "chain"),
    ({"source": "acme", "chain": b""}, "chain"),
])
def test_add_chain_refusals_name_the_parameter_and_store_nothing(
        tmp_path: Path, pki: PKI, kwargs: dict[str, object], param: str) -> None:
    args: dict[str, object] = {"chain": pki.leaf.chain_pem, "key": pki.leaf.key_pem, **kwargs}
    if args["key"] == "other":
        args["key"] = pki.leaf2.key_pem
    with Store.open(tmp_path / "store.db") as st:
        certs = CertStore(st)
        with pytest.raises(InvalidParameterError) as e:
            certs.add_chain(args.pop("chain"), args.pop("key"), **args)  # type: ignore[arg-type]
        assert e.value.param == param
        assert str(e.value).startswith(f"{param}: ")
        assert (st.generation(), certs.list()) == (0, [])


def test_set_renew_at_of_an_unknown_certificate(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as st:
        with pytest.raises(CertificateNotFoundError):
            CertStore(st).set_renew_at("ab" * 20, None)
        with pytest.raises(InvalidParameterError, match="renew_at"):
            CertStore(st).set_renew_at("ab" * 20, datetime.datetime(2030, 1, 1))
        assert st.generation() == 0


def test_cert_new_is_self_signed_and_import_is_import(tmp_path: Path, pki: PKI) -> None:
    with Store.open(tmp_path / "store.db") as st:
        certs = CertStore(st)
        assert certs.get(certs.new_self_signed("a.example")).source == "self-signed"
        (tmp_path / "k.pem").write_bytes(pki.rsa_leaf.chain_pem + pki.rsa_leaf.key_pem)
        assert certs.get(certs.import_file(tmp_path / "k.pem")[0]).source == "import"
        with pytest.raises(Exception, match="CHECK constraint"), st.transaction() as c:
            c.execute("UPDATE certificates SET source = 'other'")
