"""A real ACME CA for the tests: Debian's ``pebble`` with ``pebble-challtestsrv`` as its DNS.

``start_pebble(folder, http_port=..., tls_port=...)`` makes a CA and an HTTPS certificate for
pebble's own listener (``cryptography``), writes pebble's config with its validation ports
pointed at the httpsys listeners under test, starts ``pebble-challtestsrv`` answering every A
query with 127.0.0.1 (so ``*.test`` names reach httpsys) and ``pebble`` using it as resolver,
and waits for the directory. Validation is real: ``PEBBLE_VA_ALWAYS_VALID`` is never set.
``PEBBLE_VA_NOSLEEP=1`` (no random validation delay), ``PEBBLE_AUTHZREUSE=0`` (every order is
validated, renewals too) and ``PEBBLE_WFE_NONCEREJECT=0`` (no
deliberate badNonce) keep the tests fast. ``validity`` (seconds) makes short-lived
certificates for the renewal tests. ``Pebble.stop()`` ends both processes.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HAVE_PEBBLE = shutil.which("pebble") is not None and shutil.which("pebble-challtestsrv") is not None


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA (the --ca-bundle of the tests) and pebble's HTTPS certificate for 127.0.0.1."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "httpsys test ACME server CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "pebble.pem", folder / "pebble.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


@dataclass
class Pebble:
    directory: str
    ca_bundle: str  # verifies pebble's HTTPS (the tests' --ca-bundle)
    management: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Path | None = None

    def roots_pem(self) -> bytes:
        """The root that signs the certificates pebble issues (it makes one per start)."""
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(f"{self.management}/roots/0", context=ctx, timeout=10) as r:
            return bytes(r.read())

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def start_pebble(folder: Path, *, http_port: int, tls_port: int,
                 validity: int | None = None, eab: dict[str, str] | None = None) -> Pebble:
    """``eab``: {key id: base64url HMAC key}; when given, accounts need an external account
    binding with one of them."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = _tls_files(folder)
    listen, manage, dns = free_port(), free_port(), free_port()
    config: dict[str, object] = {
        "listenAddress": f"127.0.0.1:{listen}",
        "managementListenAddress": f"127.0.0.1:{manage}",
        "certificate": str(cert_file),
        "privateKey": str(key_file),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab),
        "externalAccountMACKeys": eab or {},
    }
    if validity is not None:
        config["certificateValidityPeriod"] = validity
    (folder / "pebble.json").write_text(json.dumps({"pebble": config}))
    log = folder / "pebble.log"
    out = log.open("ab")
    # No PEBBLE_ setting of the caller's, and no sanitizer preload (the ASan run) in Go.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PEBBLE_", "ASAN_")) and k != "LD_PRELOAD"}
    env.update(PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    peb = Pebble(f"https://127.0.0.1:{listen}/dir", str(ca_file), f"https://127.0.0.1:{manage}",
                 log=log)
    peb.procs.append(subprocess.Popen(
        ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns}", "-defaultIPv4", "127.0.0.1",
         "-defaultIPv6", "", "-management", f"127.0.0.1:{free_port()}", "-http01", "",
         "-tlsalpn01", "", "-https01", ""], stdout=out, stderr=out, env=env))
    peb.procs.append(subprocess.Popen(
        ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
        stdout=out, stderr=out, env=env, cwd=folder))
    out.close()
    ctx = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(peb.directory, context=ctx, timeout=2):
                return peb
        except OSError:
            if time.monotonic() > deadline or any(p.poll() is not None for p in peb.procs):
                peb.stop()
                raise AssertionError(f"pebble did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)
