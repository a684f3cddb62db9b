"""``httpsys cert request`` / ``complete`` / ``list --pending`` and ``show``'s source: the real
console command against a store in a temporary folder, a CA made here (root and intermediate,
``cryptography``) that signs the requests, and a real ``httpsys serve`` presenting the result
to a TLS client. Tampered answers are refused with the store unchanged."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clients import https_get
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_cli_cert import Cli, show, thumb_of

from httpsys.certrequest import CertRequests
from httpsys.certstore import CertStore
from httpsys.store import Store

ROOT = Path(__file__).resolve().parent.parent
APPID = "{00112233-4455-6677-8899-aabbccddeeff}"
NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _ca(name: str, parent: Authority | None, path_length: int | None) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return Authority(cert, key)


@dataclass(frozen=True)
class CA:
    root: Authority
    inter: Authority

    def sign(self, csr_pem: bytes, by: Authority | None = None,
             ca: bool = False) -> x509.Certificate:
        """Issues the request's certificate as a CA would: the request's subject, public key
        and subjectAltName, a server certificate, signed by the intermediate."""
        issuer = by or self.inter
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return (
            x509.CertificateBuilder().subject_name(csr.subject)
            .issuer_name(issuer.cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=90))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(issuer.key, hashes.SHA256())
        )


@pytest.fixture(scope="module")
def ca() -> CA:
    root = _ca("certreq test root", None, 1)
    return CA(root, _ca("certreq test intermediate", root, 0))


class ReqCli(Cli):
    def pending(self) -> list[tuple[Any, ...]]:
        with Store.open(self.store) as st:
            return list(st.execute("SELECT * FROM pending_request ORDER BY id"))

    def everything(self) -> tuple[Any, ...]:
        """Generation, certificates, keys and pending requests: equal means nothing changed."""
        return (*self.state(), self.pending())

    def request(self, *args: str) -> bytes:
        out = self.ok("cert", "request", *args)
        assert out.startswith("-----BEGIN CERTIFICATE REQUEST-----\n"), out
        return out.encode()

    def quick_request(self, dns: str = "localhost") -> bytes:
        """A request made in this process (the CLI's own is tested above): its CSR PEM."""
        with Store.open(self.store) as st:
            return CertRequests(st).create(dns).csr_pem.encode()

    def quick_import(self, cert: x509.Certificate, store: str) -> None:
        path = self.file(f"{store}.pem", pem(cert))
        with Store.open(self.store) as st:
            CertStore(st).import_file(path, store=store)

    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture
def cli(tmp_path: Path) -> ReqCli:
    return ReqCli(tmp_path / "state" / "store.db", tmp_path)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------------------------
# request / list --pending


def test_request_makes_a_csr_and_keeps_the_key_pending(cli: ReqCli) -> None:
    csr_pem = cli.request("--dns", "www.example.test", "--dns", "example.test",
                          "--ip", "127.0.0.1", "--subject", "CN=www.example.test, O=Example, C=DE")
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=www.example.test,O=Example,C=DE"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.test", "example.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)

    out = cli.tmp / "rsa.csr"
    line = cli.ok("cert", "request", "--dns", "rsa.example.test", "--rsa", "2048",
                  "--out", str(out))
    assert re.fullmatch(rf"Certificate request 2 \(CN=rsa.example.test\) written to {out}; .*\n",
                        line)
    rsa_csr = x509.load_pem_x509_csr(out.read_bytes())
    assert rsa_csr.public_key().key_size == 2048  # type: ignore[union-attr]
    assert rsa_csr.subject.rfc4514_string() == "CN=rsa.example.test"
    assert b"PRIVATE KEY" not in out.read_bytes()

    listing = cli.ok("cert", "list", "--pending").splitlines()
    assert listing[0].split() == ["Id", "Created", "Key", "Subject", "Names"]
    assert re.match(r"1 +\S+Z +ECDSA P-256 +CN=www.example.test,O=Example,C=DE +"
                    r"www.example.test, example.test, 127.0.0.1$", listing[1]), listing
    assert re.match(r"2 +\S+Z +RSA 2048 +CN=rsa.example.test +rsa.example.test$", listing[2])
    # Pending requests are not certificates: MY is still empty; the store stays 0600.
    assert cli.state()[1] == []
    assert os.stat(cli.store).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("args", "param"), [
    (["--dns", "bad name"], "--dns"),
    (["--dns", "a.test", "--ip", "300.1.1.1"], "--ip"),
    (["--dns", "a.test", "--rsa", "1024"], "--rsa"),
    (["--dns", "a.test", "--subject", "no equals sign"], "--subject"),
    (["--dns", "a.test", "--out", "/nonexistent/dir/a.csr"], "--out"),
])
def test_request_with_a_bad_parameter_names_it_and_stores_nothing(
        cli: ReqCli, args: list[str], param: str) -> None:
    Store.open(cli.store).close()  # the store exists
    before = cli.everything()
    r = cli("cert", "request", *args)
    assert r.rc == 2 and r.out == "", r
    assert f"error: {param}: " in r.err, r
    assert cli.everything() == before


def test_list_pending_when_there_are_none(cli: ReqCli) -> None:
    assert cli.ok("cert", "list", "--pending") == "No pending certificate requests.\n"
    r = cli("cert", "list", "--pending", "--store", "MY")
    assert r.rc == 2 and "not allowed with argument" in r.err


# --------------------------------------------------------------------------------------------
# complete


@pytest.mark.parametrize("form", ["pem-chain", "pkcs7-pem", "pkcs7-der"])
def test_complete_stores_the_chain_with_the_pending_key(cli: ReqCli, ca: CA, form: str) -> None:
    csr_pem = cli.request("--dns", "localhost") if form == "pem-chain" else cli.quick_request()
    leaf = ca.sign(csr_pem)
    certs = [leaf, ca.inter.cert, ca.root.cert]
    if form == "pem-chain":
        data = pem(*certs)
    else:  # PKCS#7 has no order: give it scrambled
        encoding = serialization.Encoding.PEM if form == "pkcs7-pem" else \
            serialization.Encoding.DER
        data = pkcs7.serialize_certificates([ca.root.cert, leaf, ca.inter.cert], encoding)
    out = cli.ok("cert", "complete", cli.file("answer", data))
    thumb = out.strip()
    assert thumb == thumb_of(der(leaf))
    assert cli.pending() == []
    d = {k.strip(): v for k, v in show(cli, thumb).items()}
    assert d["Store"] == "MY" and d["Has Private Key"] == "Yes"
    assert d["Source"] == "request" and d["Next Renewal"] == "-"
    assert d["Not After"] == f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    assert d["Chain Length"] == "3"
    assert cli.ok("cert", "export", thumb).encode() == pem(*certs)
    if form != "pem-chain":
        return
    assert "No pending" in cli.ok("cert", "list", "--pending")
    # The same answer again: its request is gone, so it matches none.
    r = cli("cert", "complete", cli.file("answer", data))
    assert r.rc == 2 and "matches no pending certificate request" in r.err, r


def test_complete_finds_the_issuers_in_root_and_ca(cli: ReqCli, ca: CA) -> None:
    csr_pem = cli.request("--dns", "localhost")
    leaf = ca.sign(csr_pem)
    answer = cli.file("leaf.pem", pem(leaf))
    before = cli.everything()
    r = cli("cert", "complete", answer)
    assert r.rc == 2 and r.out == "", r
    assert ("the issuer of certificate 1 of the chain (CN=localhost), CN=certreq test "
            "intermediate, cannot be checked: it is neither in the response nor in the ROOT "
            "or CA store") in r.err, r
    assert cli.everything() == before

    cli.quick_import(ca.root.cert, "ROOT")
    cli.quick_import(ca.inter.cert, "CA")
    thumb = cli.ok("cert", "complete", answer).strip()
    # The answer had the leaf alone; the intermediate clients need comes from CA.
    assert cli.ok("cert", "export", thumb).encode() == pem(leaf, ca.inter.cert)


def test_completed_certificate_is_served(cli: ReqCli, ca: CA, tmp_path: Path) -> None:
    csr_pem = cli.request("--dns", "localhost", "--ip", "127.0.0.1")
    leaf = ca.sign(csr_pem)
    cli.quick_import(ca.root.cert, "ROOT")
    thumb = cli.ok("cert", "complete", cli.file("answer.pem", pem(leaf, ca.inter.cert))).strip()
    port = free_port()
    cli.ok("http", "add", "sslcert", f"ipport=127.0.0.1:{port}", f"certhash={thumb}",
           f"appid={APPID}")
    root_file = cli.file("root-only.pem", ca.root.pem)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_STORE=str(tmp_path / "env.db"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "httpsys", "--store", str(cli.store), "serve", "--app",
         f"https://127.0.0.1:{port}/=httpsys.demo:app", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        info: dict[str, Any] = {}
        status, body = _get_when_up(proc, port, root_file, info)
        # Verified against the root alone: the server sent the intermediate too.
        assert status == 200 and b"httpsys is serving this page" in body
        assert info["peer_cert"] == der(leaf)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def _get_when_up(proc: subprocess.Popen[str], port: int, ca_file: str,
                 info: dict[str, Any]) -> tuple[int, bytes]:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            status, _, body = https_get(port, "/", ca=ca_file, info=info, timeout=5)
            return status, body
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Refused answers: the message says which, exit non-zero, nothing stored


def _break_signature(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with the last byte of its signature changed."""
    data = bytearray(der(cert))
    data[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(data))


def _impostor(ca: CA) -> Authority:
    """An intermediate with the real one's name but another key."""
    return _ca("certreq test intermediate", ca.root, 0)


TAMPERED = [
    ("signature-broken", ("certificate 1 of the chain (CN=localhost) is not signed by its "
                          "issuer CN=certreq test intermediate in the response: the signature "
                          "does not verify")),
    ("wrong-key", ("matches no pending certificate request: none of its 2 certificate(s) is "
                   "for a key made by httpsys cert request")),
    ("intermediate-does-not-sign-leaf", ("certificate 1 of the chain (CN=localhost) is not "
                                         "signed by its issuer CN=certreq test intermediate")),
    ("intermediate-broken", ("certificate 2 of the chain (CN=certreq test intermediate) is not "
                             "signed by its issuer CN=certreq test root")),
    ("root-broken", ("certificate 3 of the chain (CN=certreq test root) is a root whose "
                     "self-signature does not verify")),
    ("signer-not-a-ca", ("certificate 1 of the chain (CN=localhost) is signed by "
                         "CN=certreq test intermediate, which is not a CA")),
    ("unrelated-extra", ("CN=stranger is not on the chain of the certificate for the pending "
                         "request (CN=localhost)")),
    ("garbage", "is not a certificate chain (PEM) or PKCS#7 file"),
]


@pytest.mark.parametrize(("case", "message"), TAMPERED, ids=[case for case, _ in TAMPERED])
def test_tampered_answer_is_refused_and_nothing_stored(cli: ReqCli, ca: CA, case: str,
                                                       message: str) -> None:
    csr_pem = cli.quick_request()
    leaf = ca.sign(csr_pem)
    chain = [leaf, ca.inter.cert]
    if case == "signature-broken":
        chain = [_break_signature(leaf), ca.inter.cert]
    elif case == "wrong-key":
        other = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False).sign(
            ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        chain = [ca.sign(other.public_bytes(serialization.Encoding.PEM)), ca.inter.cert]
    elif case == "intermediate-does-not-sign-leaf":
        chain = [leaf, _impostor(ca).cert, ca.root.cert]
    elif case == "intermediate-broken":
        chain = [leaf, _break_signature(ca.inter.cert), ca.root.cert]
    elif case == "root-broken":
        chain = [leaf, ca.inter.cert, _break_signature(ca.root.cert)]
    elif case == "signer-not-a-ca":
        chain = list(_signed_by_non_ca(csr_pem, ca))
    elif case == "unrelated-extra":
        chain = [leaf, ca.inter.cert, ca.root.cert, _ca("stranger", None, None).cert]
    data = b"not a certificate\x00\x01" if case == "garbage" else pem(*chain)
    answer = cli.file("answer.pem", data)
    if case != "wrong-key":
        cli.quick_import(ca.root.cert, "ROOT")
    before = cli.everything()
    r = cli("cert", "complete", answer)
    assert r.rc == 2 and r.out == "", r
    assert r.err.startswith("httpsys cert: error: FILE: "), r
    assert message in r.err, r
    assert cli.everything() == before
    with Store.open(cli.store) as st:
        assert CertStore(st).list("MY") == []


def _signed_by_non_ca(csr_pem: bytes, ca: CA) -> tuple[x509.Certificate, x509.Certificate]:
    """The request's certificate signed by a certificate that is named like the intermediate
    and has the key that signed it, but is no CA; and that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    non_ca = (
        x509.CertificateBuilder().subject_name(ca.inter.cert.subject)
        .issuer_name(ca.root.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.root.key, hashes.SHA256())
    )
    return CA(ca.root, Authority(non_ca, key)).sign(csr_pem), non_ca


def test_pending_key_never_leaves_the_store(cli: ReqCli, ca: CA) -> None:
    csr_pem = cli.request("--dns", "localhost")
    with Store.open(cli.store) as st:
        (key_der,) = st.execute("SELECT pkcs8_der FROM pending_request").fetchone()
    key = serialization.load_der_private_key(bytes(key_der), None)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    seen = [csr_pem.decode(), cli.ok("cert", "list", "--pending"), cli.ok("cert", "list")]
    out = cli.tmp / "again.csr"
    seen.append(cli.ok("cert", "request", "--dns", "b.test", "--out", str(out)))
    seen.append(out.read_text())
    body = key_pem.decode().splitlines()[1]
    for text in seen:
        assert "PRIVATE KEY" not in text and body not in text
    assert os.stat(cli.store).st_mode & 0o777 == 0o600
    for extra in ("-wal", "-shm"):
        p = Path(f"{cli.store}{extra}")
        if p.exists():
            assert os.stat(p).st_mode & 0o777 == 0o600


def test_show_tells_the_source(cli: ReqCli) -> None:
    thumb = cli.ok("cert", "new", "--dns", "made.test").strip()
    d = {k.strip(): v for k, v in show(cli, thumb).items()}
    assert (d["Source"], d["Next Renewal"]) == ("self-signed", "-")
