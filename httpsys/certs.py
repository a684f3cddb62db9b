"""Certificates with `cryptography`: the self-signed default the demo serves with.

The full certificate store (MY / ROOT / CA keyed by thumbprint) lives in the config store; this
module makes and loads what the demo needs until then.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def default_dir() -> Path:
    """Where httpsys keeps its state: HTTPSYS_STORE's folder, /var/lib/httpsys for root,
    ~/.local/share/httpsys otherwise."""
    env = os.environ.get("HTTPSYS_STORE")
    if env:
        return Path(env).expanduser().parent
    if os.geteuid() == 0:
        return Path("/var/lib/httpsys")
    return Path.home() / ".local" / "share" / "httpsys"


def self_signed(dns: str = "localhost", ips: tuple[str, ...] = ("127.0.0.1",),
                days: int = 365) -> tuple[bytes, bytes]:
    """An ECDSA P-256 self-signed server certificate; returns (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(dns)] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def demo_certificate(directory: Path | None = None) -> tuple[bytes, bytes, Path]:
    """Loads the demo's self-signed localhost certificate, creating it on first use.

    The folder is created 0700 and the key file 0600: private keys are for the owner only.
    """
    folder = directory or default_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = folder / "demo-localhost.crt", folder / "demo-localhost.key"
    if not (cert_path.exists() and key_path.exists()):
        cert, key = self_signed()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        cert_path.write_bytes(cert)
    return cert_path.read_bytes(), key_path.read_bytes(), cert_path
