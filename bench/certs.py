"""The one certificate every server in the benchmark serves: ECDSA P-256, self-signed, for
``localhost`` and ``127.0.0.1``, made fresh with `cryptography` into a temporary folder.

Every server gets the same leaf and key so that the signature in each full handshake costs
the same everywhere (ECDSA P-256 sign on the server, verify skipped by wrk).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """Paths of the PEM files, plus their bytes for servers configured in-process."""

    cert_path: Path
    key_path: Path
    cert_pem: bytes
    key_pem: bytes


def make(directory: Path, dns_name: str = "localhost", ip: str = "127.0.0.1") -> CertFiles:
    """Writes ``cert.pem`` and ``key.pem`` (PKCS#8, unencrypted, mode 0600) into ``directory``.

    PKCS#8 because granian reads only that format; nginx and httpsys read it too.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(dns_name), x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return CertFiles(cert_path, key_path, cert_pem, key_pem)


@dataclass(frozen=True)
class MtlsFiles:
    """The mutual-TLS PKI of the mtls scenarios (bench/mtls.py), as files in one folder (PEM
    unless named .der)."""

    ca_path: Path            # the CA certificate: what servers trust for client certificates
    server_cert_path: Path   # leaf issued by the CA (serverAuth, localhost / 127.0.0.1)
    server_key_path: Path
    client_cert_path: Path   # leaf issued by the CA (clientAuth), not revoked
    client_key_path: Path
    revoked_cert_path: Path  # leaf issued by the CA (clientAuth), listed in the CRL
    revoked_key_path: Path
    crl_pem_path: Path       # the CRL by the CA: crl_entries serials, the revoked client's among them
    crl_der_path: Path
    crl_entries: int
    client_serial: int
    revoked_serial: int


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _leaf(ca_name: x509.Name, ca_key: ec.EllipticCurvePrivateKey, common_name: str,
          eku: x509.ObjectIdentifier, now: datetime.datetime, sans: list[x509.GeneralName],
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_mtls(directory: Path, crl_entries: int = 100_000) -> MtlsFiles:
    """A CA (ECDSA P-256) issuing a server certificate, a client certificate and a revoked
    client certificate (both clientAuth), and a CRL by that CA listing ``crl_entries`` serials:
    the revoked client's and ``crl_entries - 1`` random others (never the good client's)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "httpsys bench mTLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server, server_key = _leaf(ca_name, ca_key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, now,
                               [x509.DNSName("localhost"),
                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client, client_key = _leaf(ca_name, ca_key, "bench client", ExtendedKeyUsageOID.CLIENT_AUTH, now, [])
    revoked, revoked_key = _leaf(ca_name, ca_key, "bench revoked client",
                                 ExtendedKeyUsageOID.CLIENT_AUTH, now, [])

    serials = {revoked.serial_number}
    while len(serials) < crl_entries:
        s = x509.random_serial_number()
        if s != client.serial_number:
            serials.add(s)
    revoked_at = now - datetime.timedelta(hours=1)
    # The whole list goes to the constructor: add_revoked_certificate() copies the list each
    # time, which is quadratic (16 s for 100,000 entries instead of about 2).
    entries = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(revoked_at).build()
               for s in sorted(serials)]
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(ca_name)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=7))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    crl = builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    paths = {name: directory / name for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "revoked.pem",
        "revoked.key", "crl.pem", "crl.der")}
    paths["ca.pem"].write_bytes(ca.public_bytes(pem))
    paths["server.pem"].write_bytes(server.public_bytes(pem))
    paths["client.pem"].write_bytes(client.public_bytes(pem))
    paths["revoked.pem"].write_bytes(revoked.public_bytes(pem))
    _write_key(paths["server.key"], server_key)
    _write_key(paths["client.key"], client_key)
    _write_key(paths["revoked.key"], revoked_key)
    paths["crl.pem"].write_bytes(crl.public_bytes(pem))
    paths["crl.der"].write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return MtlsFiles(paths["ca.pem"], paths["server.pem"], paths["server.key"], paths["client.pem"],
                     paths["client.key"], paths["revoked.pem"], paths["revoked.key"],
                     paths["crl.pem"], paths["crl.der"], crl_entries, client.serial_number,
                     revoked.serial_number)


if __name__ == "__main__":  # python bench/certs.py DIR: make the pair by hand
    import sys

    made = make(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print(made.cert_path, made.key_path)
