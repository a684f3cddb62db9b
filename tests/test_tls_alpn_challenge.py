"""TLS-ALPN-01 (RFC 8737) in the core: Server.set_acme_challenge / delete_acme_challenge.

A ClientHello for the challenge's name offering ALPN ``acme-tls/1`` alone gets the challenge
certificate (with the acmeIdentifier extension) and negotiates acme-tls/1, on a port whose
name has a binding and on a port with no binding at all; every other client (no ALPN, other
protocols, acme-tls/1 among others, another name) gets what it got before.
"""

from __future__ import annotations

import hashlib
import socket
import ssl

import pytest
from clients import https_get, peer_cert_der
from cryptography import x509

from httpsys import InvalidParameterError, NotFoundError
from httpsys.acmeclient import ACME_IDENTIFIER_OID, tls_alpn_certificate

NAME = "challenge.example"
KEY_AUTH = "token-abc.thumbprint-xyz"


def hello(port: int, sni: str | None, alpn: list[str] | None) -> tuple[bytes, str | None]:
    """Handshake without verification: the leaf the server sent and the ALPN it chose."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der, tls.selected_alpn_protocol()


def acme_value(der: bytes) -> bytes:
    ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


def test_challenge_certificate_for_acme_tls_1_only(server, pki):
    run = server({"/": lambda e, s: (s("200 OK", [("Content-Length", "2")]), [b"ok"])[1]})
    cert, key = tls_alpn_certificate(NAME, KEY_AUTH)
    run.srv.set_acme_challenge(NAME, cert, key)
    der, alpn = hello(run.port, NAME, ["acme-tls/1"])
    assert alpn == "acme-tls/1"
    assert acme_value(der) == b"\x04\x20" + hashlib.sha256(KEY_AUTH.encode()).digest()
    assert hello(run.port, NAME.upper(), ["acme-tls/1"])[0] == der  # names are case-insensitive
    # Everyone else gets the binding's certificate, as before.
    assert hello(run.port, NAME, None) == (pki.leaf.der, None)
    assert hello(run.port, NAME, ["h2", "http/1.1"]) == (pki.leaf.der, None)
    assert hello(run.port, NAME, ["acme-tls/1", "http/1.1"])[0] == pki.leaf.der
    assert hello(run.port, "other.example", ["acme-tls/1"])[0] == pki.leaf.der
    assert https_get(run.port, "/", sni="localhost")[0] == 200
    run.srv.delete_acme_challenge(NAME)
    assert hello(run.port, NAME, ["acme-tls/1"])[0] == pki.leaf.der
    with pytest.raises(NotFoundError):
        run.srv.delete_acme_challenge(NAME)


def test_challenge_on_a_port_with_no_binding_yet(server):
    run = server({"/": lambda e, s: [b""]}, cert=None)
    cert, key = tls_alpn_certificate(NAME, KEY_AUTH)
    run.srv.set_acme_challenge(NAME, cert, key)
    der, alpn = hello(run.port, NAME, ["acme-tls/1"])
    assert alpn == "acme-tls/1" and acme_value(der)
    # A normal client still has nothing to talk to there: the handshake fails.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        peer_cert_der(run.port, sni=NAME)
    # Replacing the challenge swaps the certificate for the next handshake.
    cert2, key2 = tls_alpn_certificate(NAME, "other.auth")
    run.srv.set_acme_challenge(NAME, cert2, key2)
    assert acme_value(hello(run.port, NAME, ["acme-tls/1"])[0]) == \
        b"\x04\x20" + hashlib.sha256(b"other.auth").digest()


@pytest.mark.parametrize(("host", "cert_ok", "param"), [
    ("bad name!", True, "host"),
    (NAME, False, "cert_chain_pem"),
])
def test_bad_challenge_refused(server, host, cert_ok, param):
    run = server({"/": lambda e, s: [b""]})
    cert, key = tls_alpn_certificate(NAME, KEY_AUTH)
    with pytest.raises(InvalidParameterError) as e:
        run.srv.set_acme_challenge(host, cert if cert_ok else b"not a pem", key)
    assert e.value.param == param
