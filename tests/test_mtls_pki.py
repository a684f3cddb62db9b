"""The ``mtls`` fixture (tests/mtls_pki.py) is what later mutual-TLS tests take as ground truth,
so its facts are checked here: with ``cryptography`` (signatures, chain building, dates, EKUs,
CRL contents) and with OpenSSL through ``ssl`` (a real handshake with a Python TLS server that
requires client certificates and checks the CRL)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from mtls_pki import CRL_100K_SIZE, Issued, MtlsPKI

UTC = datetime.timezone.utc

CLIENTS = ["client", "expired", "not_yet_valid", "revoked", "wrong_eku"]


def eku(issued: Issued) -> list[x509.ObjectIdentifier]:
    return list(issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def verify_client(mtls: MtlsPKI, leaf: Issued, roots: list[Issued] | None = None) -> None:
    """Builds and checks the client chain as a verifier would (raises VerificationError)."""
    store = Store([r.cert for r in (roots or [mtls.root])])
    verifier = PolicyBuilder().store(store).build_client_verifier()
    verifier.verify(leaf.cert, [mtls.intermediate.cert])


# ---- issuance --------------------------------------------------------------------------------


def test_chain_is_signed_by_the_right_issuers(mtls: MtlsPKI) -> None:
    mtls.root.cert.verify_directly_issued_by(mtls.root.cert)
    mtls.foreign_root.cert.verify_directly_issued_by(mtls.foreign_root.cert)
    mtls.intermediate.cert.verify_directly_issued_by(mtls.root.cert)
    for name in ["server", *CLIENTS]:
        getattr(mtls, name).cert.verify_directly_issued_by(mtls.intermediate.cert)
    mtls.foreign.cert.verify_directly_issued_by(mtls.foreign_root.cert)
    with pytest.raises((ValueError, InvalidSignature)):
        mtls.foreign.cert.verify_directly_issued_by(mtls.intermediate.cert)
    with pytest.raises((ValueError, InvalidSignature)):
        mtls.client.cert.verify_directly_issued_by(mtls.root.cert)


def test_ca_flags(mtls: MtlsPKI) -> None:
    def is_ca(i: Issued) -> bool:
        return bool(i.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

    assert is_ca(mtls.root) and is_ca(mtls.intermediate) and is_ca(mtls.foreign_root)
    assert not any(is_ca(getattr(mtls, n)) for n in ["server", "foreign", *CLIENTS])


def test_serials_are_distinct(mtls: MtlsPKI) -> None:
    names = ["root", "intermediate", "foreign_root", "server", "foreign", *CLIENTS]
    assert len({getattr(mtls, n).serial for n in names}) == len(names)


def test_ekus(mtls: MtlsPKI) -> None:
    assert eku(mtls.server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    for name in ["client", "expired", "not_yet_valid", "revoked", "foreign"]:
        assert eku(getattr(mtls, name)) == [ExtendedKeyUsageOID.CLIENT_AUTH], name
    assert eku(mtls.wrong_eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_server_names_and_key(mtls: MtlsPKI) -> None:
    san = mtls.server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert mtls.server.cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    verifier = (PolicyBuilder().store(Store([mtls.root.cert]))
                .build_server_verifier(x509.DNSName("localhost")))
    chain = verifier.verify(mtls.server.cert, [mtls.intermediate.cert])
    assert [c.subject for c in chain] == [mtls.server.cert.subject,
                                          mtls.intermediate.cert.subject,
                                          mtls.root.cert.subject]


def test_dates(mtls: MtlsPKI) -> None:
    now = datetime.datetime.now(UTC)
    for name in ["root", "intermediate", "server", "client", "revoked", "wrong_eku", "foreign"]:
        c = getattr(mtls, name).cert
        assert c.not_valid_before_utc < now < c.not_valid_after_utc, name
    assert mtls.expired.cert.not_valid_after_utc < now
    assert mtls.not_yet_valid.cert.not_valid_before_utc > now
    # The CAs cover the odd dates, so "expired" is the only thing wrong with those two.
    for c in (mtls.expired.cert, mtls.not_yet_valid.cert):
        assert mtls.intermediate.cert.not_valid_before_utc <= c.not_valid_before_utc
        assert c.not_valid_after_utc <= mtls.intermediate.cert.not_valid_after_utc


def test_client_chains_by_policy(mtls: MtlsPKI) -> None:
    verify_client(mtls, mtls.client)
    verify_client(mtls, mtls.revoked)  # revocation is not the verifier's business
    for bad in (mtls.expired, mtls.not_yet_valid, mtls.wrong_eku):
        with pytest.raises(VerificationError):
            verify_client(mtls, bad)
    with pytest.raises(VerificationError):
        verify_client(mtls, mtls.foreign)


def test_chain_pem_and_files(mtls: MtlsPKI) -> None:
    assert mtls.client.chain_pem == mtls.client.cert_pem + mtls.intermediate.cert_pem
    assert mtls.server.chain_pem == mtls.server.cert_pem + mtls.intermediate.cert_pem
    assert mtls.foreign.chain_pem == mtls.foreign.cert_pem  # no intermediate; root not sent
    assert mtls.trusted_ca_pem == mtls.root.cert_pem + mtls.intermediate.cert_pem
    assert mtls.trusted_ca_file.read_bytes() == mtls.trusted_ca_pem
    for name in ["server", "foreign", *CLIENTS]:
        i = getattr(mtls, name)
        assert i.cert_file.read_bytes() == i.cert_pem
        assert i.key_file.read_bytes() == i.key_pem
        assert i.chain_file.read_bytes() == i.chain_pem
        assert x509.load_pem_x509_certificate(i.cert_pem) == i.cert


def test_make_client_with_cdp(mtls: MtlsPKI) -> None:
    c = mtls.make_client("with_cdp", cdp_url="http://127.0.0.1:9/int.crl")
    cdp = c.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in cdp[0].full_name or []] == ["http://127.0.0.1:9/int.crl"]
    verify_client(mtls, c)
    with pytest.raises(x509.ExtensionNotFound):
        mtls.client.cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS)


# ---- CRLs ------------------------------------------------------------------------------------


def test_crls(mtls: MtlsPKI) -> None:
    now = datetime.datetime.now(UTC)
    ci, cr, ce = mtls.crl_intermediate, mtls.crl_root, mtls.crl_expired
    assert ci.serials == {mtls.revoked.serial}
    assert cr.serials == set()
    assert ce.serials == {mtls.revoked.serial}
    assert ci.crl.issuer == ce.crl.issuer == mtls.intermediate.cert.subject
    assert cr.crl.issuer == mtls.root.cert.subject
    assert ci.crl.is_signature_valid(mtls.intermediate.cert.public_key())  # type: ignore[arg-type]
    assert ce.crl.is_signature_valid(mtls.intermediate.cert.public_key())  # type: ignore[arg-type]
    assert cr.crl.is_signature_valid(mtls.root.cert.public_key())  # type: ignore[arg-type]
    assert not ci.crl.is_signature_valid(mtls.root.cert.public_key())  # type: ignore[arg-type]
    for crl in (ci, cr):
        assert crl.crl.last_update_utc <= now < crl.crl.next_update_utc  # type: ignore[operator]
    assert ce.crl.next_update_utc is not None and ce.crl.next_update_utc < now
    for crl in (ci, cr, ce):
        assert x509.load_der_x509_crl(crl.der_file.read_bytes()) == crl.crl
        assert x509.load_pem_x509_crl(crl.pem_file.read_bytes()) == crl.crl
        assert crl.der == crl.der_file.read_bytes()


def test_crl_100k(mtls: MtlsPKI) -> None:
    big = mtls.crl_100k
    assert mtls.crl_100k is big  # built once
    assert len(big.crl) == CRL_100K_SIZE
    assert len(big.serials) == CRL_100K_SIZE
    assert mtls.revoked.serial in big.serials
    assert mtls.client.serial not in big.serials
    assert big.crl.get_revoked_certificate_by_serial_number(mtls.revoked.serial) is not None
    assert big.crl.is_signature_valid(mtls.intermediate.cert.public_key())  # type: ignore[arg-type]
    assert big.der_file.read_bytes() == big.der
    assert big.crl.next_update_utc is not None
    assert big.crl.next_update_utc > datetime.datetime.now(UTC)


# ---- a real handshake through OpenSSL --------------------------------------------------------


def handshake(mtls: MtlsPKI, client: ssl.SSLContext, crl: bool = False,
              tls_version: str = "1.3") -> str:
    """Runs one TLS connection against a Python TLS server that requires a client certificate
    from the trusted CAs (and checks the intermediate CRL if ``crl``); returns what the server
    saw: "ok CN" or the server's verify error."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(mtls.server.chain_file, mtls.server.key_file)
    srv.load_verify_locations(cadata=mtls.trusted_ca_pem.decode())
    srv.verify_mode = ssl.CERT_REQUIRED
    srv.maximum_version = ssl.TLSVersion.TLSv1_3 if tls_version == "1.3" else ssl.TLSVersion.TLSv1_2
    if crl:
        srv.load_verify_locations(cafile=str(mtls.crl_intermediate.pem_file))
        srv.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    result: list[str] = []
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> None:
        conn, _ = lsock.accept()
        try:
            with srv.wrap_socket(conn, server_side=True) as s:
                der = s.getpeercert(binary_form=True)
                assert der is not None
                cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
                    NameOID.COMMON_NAME)[0].value
                assert isinstance(cn, str)
                result.append(f"ok {cn}")
                s.sendall(b"hello")
        except ssl.SSLError as e:
            result.append(getattr(e, "verify_message", None) or str(e))
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            try:
                with client.wrap_socket(raw, server_hostname="localhost") as s:
                    s.recv(5)
            except (ssl.SSLError, ConnectionError):
                pass
    finally:
        t.join(10)
        lsock.close()
    return result[0]


@pytest.mark.parametrize("tls_version", ["1.2", "1.3"])
def test_client_context_handshake(mtls: MtlsPKI, tls_version: str) -> None:
    ok = handshake(mtls, mtls.client_context(mtls.client, tls_version=tls_version),
                   tls_version=tls_version)
    assert ok == "ok httpsys mtls client"
    assert "expired" in handshake(mtls, mtls.client_context(mtls.expired))
    assert "not yet valid" in handshake(mtls, mtls.client_context(mtls.not_yet_valid))
    assert "certificate purpose" in handshake(
        mtls, mtls.client_context(mtls.wrong_eku))
    assert "unable to get local issuer" in handshake(mtls, mtls.client_context(mtls.foreign))
    # With the CRL loaded OpenSSL refuses the revoked certificate and still takes the good one.
    assert handshake(mtls, mtls.client_context(mtls.revoked)) == "ok httpsys mtls revoked"
    assert "revoked" in handshake(mtls, mtls.client_context(mtls.revoked), crl=True)
    assert handshake(mtls, mtls.client_context(mtls.client), crl=True) == "ok httpsys mtls client"


def test_client_context_options(mtls: MtlsPKI) -> None:
    ctx = mtls.client_context(tls_version="1.2", post_handshake_auth=True)
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.post_handshake_auth is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert mtls.client_context().post_handshake_auth is False
    with pytest.raises(ValueError):
        mtls.client_context(tls_version="1.1")
    # No client certificate: the server that requires one refuses.
    assert "certificate" in handshake(mtls, mtls.client_context())
