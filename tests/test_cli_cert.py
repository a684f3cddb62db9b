"""``httpsys cert``: the real console command (``python -m httpsys``) against a store in a
temporary folder, asserting on stdout, stderr and exit codes, and on the store itself."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PKI
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from httpsys.store import Store

ROOT = Path(__file__).resolve().parent.parent
THUMB = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Cli:
    store: Path
    tmp: Path

    def __call__(self, *args: str, store: bool = True) -> Result:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # Never the user's or root's real store: without --store, HTTPSYS_STORE points here.
        env["HTTPSYS_STORE"] = str(self.tmp / "env-store" / "store.db")
        argv = [sys.executable, "-m", "httpsys"]
        if store:
            argv += ["--store", str(self.store)]
        p = subprocess.run([*argv, *args], check=False, capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=120)
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.rc == 0, r
        assert r.err == "", r
        return r.out

    def state(self) -> tuple[int, list[tuple[object, ...]]]:
        """The store's generation and every certificate and key: 'nothing changed' means equal."""
        with Store.open(self.store) as st:
            rows = list(st.execute("SELECT thumbprint, store, der, chain FROM certificates "
                                   "ORDER BY thumbprint"))
            rows += list(st.execute("SELECT * FROM private_keys ORDER BY thumbprint"))
            return st.generation(), rows


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


def thumb_of(pem_or_der: bytes) -> str:
    if pem_or_der.startswith(b"-----"):
        pem_or_der = x509.load_pem_x509_certificate(pem_or_der).public_bytes(
            serialization.Encoding.DER)
    return hashlib.sha1(pem_or_der).hexdigest()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def make_ca(tmp: Path) -> tuple[str, x509.Certificate]:
    """A CA certificate with its key as one PEM file, for --signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cli test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return write(tmp / "ca-with-key.pem", pem), cert


def show(cli: Cli, thumb: str) -> dict[str, str]:
    out = cli.ok("cert", "show", thumb)
    return dict(line.split(" : ", 1) for line in out.splitlines())


def fields(d: dict[str, str]) -> dict[str, str]:
    return {k.strip(): v for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# new / list / show


def test_new_prints_the_thumbprint_and_lists_it(cli: Cli) -> None:
    out = cli.ok("cert", "new", "--dns", "app.example.test", "--ip", "127.0.0.1")
    thumb = out.strip()
    assert THUMB.match(thumb), out
    listing = cli.ok("cert", "list")
    assert listing.splitlines()[0].split()[:2] == ["Store", "Thumbprint"]
    row = next(line for line in listing.splitlines() if thumb in line)
    assert row.split()[0] == "MY" and row.split()[2] == "yes"
    assert "CN=app.example.test" in row
    assert cli.ok("cert", "list", "--store", "ROOT").count("\n") == 1  # the header only

    info = fields(show(cli, thumb))
    assert info["Thumbprint"] == thumb
    assert info["Store"] == "MY"
    assert info["Subject"] == info["Issuer"] == "CN=app.example.test"
    assert info["Has Private Key"] == "Yes"
    assert info["DNS Names"] == "app.example.test"
    assert info["IP Addresses"] == "127.0.0.1"
    assert info["Public Key"] == "ECDSA P-256"
    not_before = datetime.datetime.fromisoformat(info["Not Before"].replace("Z", "+00:00"))
    not_after = datetime.datetime.fromisoformat(info["Not After"].replace("Z", "+00:00"))
    assert datetime.timedelta(days=364) < not_after - not_before < datetime.timedelta(days=366)
    assert info["Bindings"] == "(none)"

    # The exported certificate is the one the thumbprint names.
    assert thumb_of(cli.ok("cert", "export", thumb).encode()) == thumb
    # Either case, and Windows' copy-paste spaces, name the same certificate.
    spaced = " ".join(thumb[i:i + 2] for i in range(0, 40, 2)).upper()
    assert fields(show(cli, spaced))["Thumbprint"] == thumb


def test_new_rsa_days_and_signer(cli: Cli) -> None:
    thumb = cli.ok("cert", "new", "--dns", "rsa.test", "--rsa", "2048", "--days", "10").strip()
    info = fields(show(cli, thumb))
    assert info["Public Key"] == "RSA 2048"
    not_after = datetime.datetime.fromisoformat(info["Not After"].replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=9) < not_after - now < datetime.timedelta(days=11)

    ca_file, ca_cert = make_ca(cli.tmp)
    (ca_thumb,) = cli.ok("cert", "import", ca_file).split()
    leaf_thumb = cli.ok("cert", "new", "--dns", "signed.test", "--signer", ca_thumb).strip()
    info = fields(show(cli, leaf_thumb))
    assert info["Issuer"] == "CN=cli test CA"
    assert info["Chain Length"] == "2"
    chain = x509.load_pem_x509_certificates(cli.ok("cert", "export", leaf_thumb).encode())
    assert [thumb_of(c.public_bytes(serialization.Encoding.DER)) for c in chain] == [
        leaf_thumb, ca_thumb]
    chain[0].verify_directly_issued_by(ca_cert)

    # A signer that is not a CA, and one not in the store, are refused by name.
    before = cli.state()
    r = cli("cert", "new", "--dns", "x.test", "--signer", thumb)
    assert r.rc == 2 and "--signer" in r.err and "not a CA" in r.err, r
    r = cli("cert", "new", "--dns", "x.test", "--signer", "ab" * 20)
    assert r.rc == 2 and "--signer" in r.err and "ab" * 20 in r.err, r
    assert cli.state() == before


@pytest.mark.parametrize(
    "args, param",
    [
        (["--dns", "ok.test", "--rsa", "1024"], "--rsa"),
        (["--dns", "ok.test", "--days", "0"], "--days"),
        (["--dns", "ok.test", "--days", "many"], "--days"),
        (["--dns", "bad name!"], "--dns"),
        (["--dns", "ok.test", "--ip", "300.1.1.1"], "--ip"),
        ([], "--dns"),
    ],
)
def test_new_with_a_bad_parameter_names_it(cli: Cli, args: list[str], param: str) -> None:
    cli.ok("cert", "list")
    before = cli.state()
    r = cli("cert", "new", *args)
    assert r.rc == 2, r
    assert param in r.err and r.out == "", r
    assert cli.state() == before


# --------------------------------------------------------------------------------------------
# import / export


def test_import_pem_chain_and_key(cli: Cli, pki: PKI) -> None:
    path = write(cli.tmp / "leaf.pem", pki.leaf.chain_pem + pki.leaf.key_pem)
    out = cli.ok("cert", "import", path)
    thumb = hashlib.sha1(pki.leaf.der).hexdigest()
    assert out.split() == [thumb]
    info = fields(show(cli, thumb))
    assert info["Has Private Key"] == "Yes"
    assert info["Chain Length"] == "2"
    assert info["Subject"] == "CN=httpsys leaf one,O=httpsys tests"

    exported = cli.ok("cert", "export", thumb)
    assert exported.encode() == pki.leaf.chain_pem
    assert "PRIVATE KEY" not in exported
    with_key = cli.ok("cert", "export", thumb, "--with-key")
    assert with_key.count("-----BEGIN CERTIFICATE-----") == 2
    assert "-----BEGIN PRIVATE KEY-----" in with_key
    key = serialization.load_pem_private_key(with_key.encode(), password=None)
    leaf = x509.load_pem_x509_certificate(pki.leaf.cert_pem)
    assert key.public_key() == leaf.public_key()

    # Importing it again changes nothing but the generation.
    assert cli.ok("cert", "import", path).split() == [thumb]
    assert len(cli.state()[1]) == 2


def test_import_roots_without_keys(cli: Cli, pki: PKI) -> None:
    ca = write(cli.tmp / "ca.pem", pki.ca_pem)
    out = cli.ok("cert", "import", ca, "--store", "root")
    thumb = hashlib.sha1(pki.ca_der).hexdigest()
    assert out.split() == [thumb]
    assert fields(show(cli, thumb))["Store"] == "ROOT"
    assert fields(show(cli, thumb))["Has Private Key"] == "No"
    listing = cli.ok("cert", "list", "--store", "ROOT")
    assert thumb in listing and " no " in listing
    assert thumb not in cli.ok("cert", "list", "--store", "MY")
    r = cli("cert", "export", thumb, "--with-key")
    assert r.rc == 2 and "--with-key" in r.err and "no private key" in r.err, r
    # The same certificate cannot also go into MY.
    r = cli("cert", "import", write(cli.tmp / "ca-again.pem", pki.ca_pem), "--store", "CA")
    assert r.rc == 2 and "already in store ROOT" in r.err, r


def test_import_into_my_needs_the_key(cli: Cli, pki: PKI) -> None:
    cli.ok("cert", "list")
    before = cli.state()
    r = cli("cert", "import", write(cli.tmp / "nokey.pem", pki.leaf.chain_pem))
    assert r.rc == 2 and "FILE" in r.err and "0 private keys" in r.err, r
    r = cli("cert", "import", write(cli.tmp / "other.pem", pki.leaf.chain_pem + pki.leaf2.key_pem))
    assert r.rc == 2 and "belongs to none of its certificates" in r.err, r
    r = cli("cert", "import", str(cli.tmp / "missing.pem"))
    assert r.rc == 2 and "FILE" in r.err and "No such file" in r.err, r
    r = cli("cert", "import", write(cli.tmp / "junk.bin", b"\x01\x02 not a certificate"))
    assert r.rc == 2, r
    r = cli("cert", "import", write(cli.tmp / "x.pem", pki.ca_pem), "--store", "TRUST")
    assert r.rc == 2 and "--store" in r.err, r
    assert cli.state() == before


def _p12(pki: PKI, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(pki.rsa_leaf.key_pem, password=None)
    cert = x509.load_pem_x509_certificate(pki.rsa_leaf.cert_pem)
    ca = x509.load_pem_x509_certificate(pki.ca_pem)
    return pkcs12.serialize_key_and_certificates(
        b"rsa leaf", key, cert, [ca],  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(password))


def test_import_pkcs12_with_password(cli: Cli, pki: PKI) -> None:
    path = write(cli.tmp / "leaf.p12", _p12(pki, b"s3cret"))
    thumb = hashlib.sha1(pki.rsa_leaf.der).hexdigest()
    assert cli.ok("cert", "import", path, "--password", "s3cret").split() == [thumb]
    info = fields(show(cli, thumb))
    assert info["Has Private Key"] == "Yes" and info["Public Key"] == "RSA 2048"
    assert info["Chain Length"] == "2"
    assert cli.ok("cert", "export", thumb).encode() == pki.rsa_leaf.chain_pem


def test_pkcs12_wrong_or_missing_password_changes_nothing(cli: Cli, pki: PKI) -> None:
    cli.ok("cert", "new", "--dns", "already.test")
    before = cli.state()
    path = write(cli.tmp / "leaf.p12", _p12(pki, b"s3cret"))
    r = cli("cert", "import", path, "--password", "wrong")
    assert r.rc == 2, r
    assert r.out == ""
    assert r.err.startswith("httpsys cert: error: --password: wrong password"), r
    assert "Traceback" not in r.err
    r = cli("cert", "import", path)
    assert r.rc == 2 and "--password" in r.err, r
    assert cli.state() == before


def test_encrypted_pem_key(cli: Cli, pki: PKI) -> None:
    key = serialization.load_pem_private_key(pki.leaf2.key_pem, password=None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw"))
    path = write(cli.tmp / "enc.pem", pki.leaf2.chain_pem + enc)
    r = cli("cert", "import", path)
    assert r.rc == 2 and "--password" in r.err and "encrypted" in r.err, r
    r = cli("cert", "import", path, "--password", "nope")
    assert r.rc == 2 and "--password: wrong password" in r.err, r
    assert cli.ok("cert", "import", path, "--password", "pw").split() == [
        hashlib.sha1(pki.leaf2.der).hexdigest()]


# --------------------------------------------------------------------------------------------
# delete


def test_delete(cli: Cli) -> None:
    thumb = cli.ok("cert", "new", "--dns", "gone.test").strip()
    out = cli.ok("cert", "delete", thumb.upper())
    assert out.strip() == f"Certificate {thumb} deleted from store MY."
    assert thumb not in cli.ok("cert", "list")
    with Store.open(cli.store) as st:  # the key went with it
        assert st.execute("SELECT count(*) FROM private_keys").fetchone() == (0,)


def test_delete_of_an_unknown_thumbprint_names_it(cli: Cli) -> None:
    cli.ok("cert", "new", "--dns", "stays.test")
    before = cli.state()
    missing = "0123456789abcdef0123456789abcdef01234567"
    r = cli("cert", "delete", missing)
    assert r.rc == 2, r
    assert "THUMBPRINT" in r.err and missing in r.err and "Traceback" not in r.err
    r = cli("cert", "show", missing)
    assert r.rc == 2 and missing in r.err, r
    r = cli("cert", "delete", "not-a-thumbprint")
    assert r.rc == 2 and "THUMBPRINT" in r.err and "40 hex digits" in r.err, r
    assert cli.state() == before


def test_delete_is_refused_while_a_binding_uses_it(cli: Cli) -> None:
    thumb = cli.ok("cert", "new", "--dns", "bound.test").strip()
    with Store.open(cli.store) as st:
        st.add_sslcert("ipport", "0.0.0.0:443", thumb, "{214124cd-d05b-4309-9af9-9caa44b2b74a}")
    before = cli.state()
    r = cli("cert", "delete", thumb)
    assert r.rc == 1, r
    assert "ipport=0.0.0.0:443" in r.err and "delete the binding first" in r.err, r
    assert cli.state() == before
    assert fields(show(cli, thumb))["Bindings"] == "ipport=0.0.0.0:443"


# --------------------------------------------------------------------------------------------
# The store the commands use, and the rest of the command line


def test_httpsys_store_environment_variable(cli: Cli) -> None:
    thumb = cli("cert", "new", "--dns", "env.test", store=False).out.strip()
    assert THUMB.match(thumb)
    env_store = cli.tmp / "env-store" / "store.db"
    assert os.stat(env_store).st_mode & 0o777 == 0o600
    assert thumb in cli("cert", "list", store=False).out
    assert thumb not in cli.ok("cert", "list")  # --store PATH chose another database


def test_a_store_others_can_read_is_refused(cli: Cli) -> None:
    cli.ok("cert", "list")
    os.chmod(cli.store, 0o644)
    r = cli("cert", "list")
    assert r.rc == 1 and r.out == "", r
    assert "readable or writable by other users" in r.err
    assert f"chmod 600 {cli.store}" in r.err


def test_usage_errors(cli: Cli) -> None:
    r = cli("cert")
    assert r.rc == 2 and "usage: httpsys cert" in r.err, r
    r = cli("cert", "frobnicate")
    assert r.rc == 2 and "invalid choice" in r.err, r
    r = cli("cret", "list")
    assert r.rc == 2 and "did you mean 'cert'" in r.err, r
    r = cli("--store", store=False)
    assert r.rc == 2 and "--store" in r.err, r


def test_demo_and_serve_are_still_there(cli: Cli) -> None:
    r = cli("--help", store=False)
    assert r.rc == 0
    assert "demo" in r.out and "serve" in r.out and "cert" in r.out
    r = cli("serve", store=False)  # serve without --app: argparse's usage error
    assert r.rc == 2 and "--app" in r.err, r
