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


if __name__ == "__main__":  # python bench/certs.py DIR: make the pair by hand
    import sys

    made = make(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print(made.cert_path, made.key_path)
