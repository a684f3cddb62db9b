"""Shared fixtures for the end-to-end tests.

- ``pki`` (session): a root CA and leaf certificates made with ``cryptography``: ``leaf`` (ECDSA
  P-256 for DNS localhost and IPs 127.0.0.1 / 127.0.0.2), ``leaf2`` (same names, another key, so
  a test can tell which one the server presented) and ``rsa_leaf`` (RSA-2048).
- ``ca_file`` (session): the CA certificate as a PEM file for clients.
- ``free_port()``: a port nobody listens on right now (each test gets its own, so tests can run
  in parallel).
- ``server``: a factory that builds an ``httpsys.Server``, registers certificates and apps,
  starts it and always closes it at teardown.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Control sockets of the servers the tests start (in-process and as subprocesses) go to a
# private folder for this run, not /run/httpsys; a test can still point a server elsewhere.
os.environ.setdefault("HTTPSYS_RUNTIME_DIR", tempfile.mkdtemp(prefix="httpsys-test-run-"))

# --------------------------------------------------------------------------------------------
# PKI


@dataclass(frozen=True)
class Leaf:
    name: str
    cert_pem: bytes  # the leaf alone
    chain_pem: bytes  # leaf first, then the CA
    key_pem: bytes  # PKCS#8, unencrypted
    der: bytes  # the leaf, DER: what a client sees with getpeercert(binary_form=True)


@dataclass(frozen=True)
class PKI:
    ca_pem: bytes
    ca_der: bytes
    leaf: Leaf
    leaf2: Leaf
    rsa_leaf: Leaf


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "httpsys tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name("httpsys test root CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> Leaf:
    now = datetime.datetime.now(datetime.timezone.utc)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.2")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Leaf(
        name=name,
        cert_pem=cert_pem,
        chain_pem=cert_pem + ca_pem,
        key_pem=key_pem,
        der=cert.public_bytes(serialization.Encoding.DER),
    )


@pytest.fixture(scope="session")
def pki() -> PKI:
    ca_cert, ca_key = _make_ca()
    leaf = _make_leaf("httpsys leaf one", ca_cert, ca_key, ec.generate_private_key(ec.SECP256R1()))
    leaf2 = _make_leaf("httpsys leaf two", ca_cert, ca_key, ec.generate_private_key(ec.SECP256R1()))
    rsa_leaf = _make_leaf(
        "httpsys leaf rsa",
        ca_cert,
        ca_key,
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    assert len({leaf.der, leaf2.der, rsa_leaf.der}) == 3
    return PKI(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_der=ca_cert.public_bytes(serialization.Encoding.DER),
        leaf=leaf,
        leaf2=leaf2,
        rsa_leaf=rsa_leaf,
    )


@pytest.fixture(scope="session")
def ca_file(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(pki.ca_pem)
    return str(path)


@pytest.fixture(scope="session")
def leaf_files(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The ECDSA leaf chain and key as files (for servers other than httpsys, e.g. a control)."""
    d = tmp_path_factory.mktemp("leaf")
    (d / "chain.pem").write_bytes(pki.leaf.chain_pem)
    (d / "key.pem").write_bytes(pki.leaf.key_pem)
    return str(d / "chain.pem"), str(d / "key.pem")


# --------------------------------------------------------------------------------------------
# Ports


def free_port() -> int:
    """A TCP port that was free a moment ago: bind 127.0.0.1:0, read the port, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Server factory

DEFAULT = object()


@dataclass
class Running:
    srv: Any  # httpsys.Server
    port: int

    def prefix(self, path: str = "/", host: str = "+") -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture
def server(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Running]]:
    """``server(apps, cert=..., port=None, start=True, **Server_kwargs) -> Running``.

    ``apps`` maps prefixes to WSGI apps: a key starting with ``/`` means ``https://+:PORT<key>``;
    any other key is a full prefix where ``{port}`` is replaced by the port. ``cert`` is what
    gets bound: by default the ECDSA leaf on ``0.0.0.0:PORT``; a ``Leaf`` to bind that one on
    ``0.0.0.0:PORT``; a dict ``{"IP:{port}": Leaf}``; or None for no binding. The server is
    started unless ``start=False`` and is closed at teardown whatever happened."""
    import httpsys

    # Keep any persistent state the server may write away from the user's store.
    monkeypatch.setenv("HTTPSYS_STORE", str(tmp_path / "store.db"))

    made: list[Any] = []

    def make(
        apps: dict[str, Callable[..., Any]] | None = None,
        *,
        cert: Any = DEFAULT,
        port: int | None = None,
        start: bool = True,
        **kwargs: Any,
    ) -> Running:
        if port is None:
            port = free_port()
        kwargs.setdefault("workers", 2)
        srv = httpsys.Server(**kwargs)
        made.append(srv)
        if cert is DEFAULT:
            cert = {"0.0.0.0:{port}": pki.leaf}
        elif isinstance(cert, Leaf):
            cert = {"0.0.0.0:{port}": cert}
        for ipport, leaf in (cert or {}).items():
            srv.set_sslcert(ipport.format(port=port), leaf.chain_pem, leaf.key_pem)
        for key, app in (apps or {}).items():
            prefix = f"https://+:{port}{key}" if key.startswith("/") else key.format(port=port)
            srv.add_app(prefix, app)
        if start:
            srv.start()
        return Running(srv, port)

    yield make
    errors = []
    for srv in reversed(made):
        try:
            srv.close()
        except Exception as exc:  # close every server even if one fails; report afterwards
            errors.append(exc)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------------------------
# Client certificates (mutual TLS)


from mtls_pki import MtlsPKI  # here rather than at the top: this section was appended


@pytest.fixture(scope="session")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> MtlsPKI:
    """The mutual-TLS PKI of tests/mtls_pki.py: root, intermediate, server, client
    certificates valid / expired / not yet valid / revoked / wrong EKU / foreign, and CRLs; the
    files live in a session temp dir."""
    return MtlsPKI(tmp_path_factory.mktemp("mtls"))
