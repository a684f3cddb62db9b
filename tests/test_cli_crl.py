"""``httpsys crl add|show|delete``: the real console command (``python -m httpsys``) against a
store in a temporary folder. CAs and CRLs are made with ``cryptography``; the CA certificates
go in with ``httpsys cert import --store ROOT|CA``. Every refusal is checked for its exit code,
its message and for leaving the store (generation included) as it was."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_cli_cert import Cli

from httpsys.store import Store

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
HEADER = "\nCertificate Revocation Lists:\n-----------------------------\n\n"


@dataclass
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def issuer(self) -> str:
        return self.cert.subject.rfc4514_string()

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def crl(self, this_update: datetime.datetime = NOW - datetime.timedelta(hours=1),
            next_update: datetime.datetime | None = NOW + datetime.timedelta(days=7),
            serials: tuple[int, ...] = (), key: ec.EllipticCurvePrivateKey | None = None
            ) -> x509.CertificateRevocationList:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(this_update))
        if next_update is not None:
            builder = builder.next_update(next_update)
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(this_update).build())
        return builder.sign(key or self.key, hashes.SHA256())


def make_ca(name: str) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "crl tests"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return CA(cert, key)


def _tlv(data: bytes, i: int) -> tuple[int, int]:
    """(start of the value, end) of the DER element at ``i``."""
    length, head = data[i + 1], 2
    if length & 0x80:
        n = length & 0x7F
        length, head = int.from_bytes(data[i + 2:i + 2 + n], "big"), 2 + n
    return i + head, i + head + length


def _seq(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + \
        n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def without_next_update(ca: CA) -> x509.CertificateRevocationList:
    """A CRL without nextUpdate (optional in RFC 5280; cryptography's builder always sets it):
    built with one, the field cut out of the TBS, signed again."""
    crl = ca.crl(serials=(7,))
    tbs = crl.tbs_certlist_bytes
    start, end = _tlv(tbs, 0)
    fields, i = [], start
    while i < end:
        _, j = _tlv(tbs, i)
        fields.append(tbs[i:j])
        i = j
    times = [k for k, f in enumerate(fields) if f[0] in (0x17, 0x18)]
    assert len(times) == 2
    del fields[times[1]]
    new_tbs = _seq(0x30, b"".join(fields))
    outer = crl.public_bytes(serialization.Encoding.DER)
    o_start, _ = _tlv(outer, 0)
    _, tbs_end = _tlv(outer, o_start)
    _, alg_end = _tlv(outer, tbs_end)
    signature = ca.key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    blob = _seq(0x30, new_tbs + outer[tbs_end:alg_end] + _seq(0x03, b"\x00" + signature))
    out = x509.load_der_x509_crl(blob)
    assert out.next_update_utc is None and out.is_signature_valid(ca.key.public_key())
    return out


def pem(*crls: x509.CertificateRevocationList) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def thumb(crl: x509.CertificateRevocationList) -> str:
    return hashlib.sha1(der(crl)).hexdigest().upper()


def iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class CrlCli(Cli):
    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def trust(self, ca: CA, store: str = "ROOT") -> None:
        self.ok("cert", "import", self.file(f"{ca.cert.serial_number}.pem", ca.pem()),
                "--store", store)

    def crl_state(self) -> tuple[int, list[tuple[object, ...]]]:
        with Store.open(self.store) as st:
            return st.generation(), list(st.execute(
                "SELECT thumbprint, issuer, der FROM crls ORDER BY thumbprint"))

    def refused(self, *args: str, rc: int = 2) -> str:
        """Runs a command that must fail and change nothing; returns its stderr."""
        before = self.crl_state()
        r = self(*args)
        assert r.rc == rc, r
        assert r.out == "" and "Traceback" not in r.err, r
        assert self.crl_state() == before
        return r.err


def blocks(out: str) -> list[dict[str, str]]:
    assert out.startswith(HEADER), out
    found = []
    for chunk in out[len(HEADER):].split("\n\n"):
        if chunk.strip():
            found.append({k.strip(): v for k, v in
                          (line.split(" : ", 1) for line in chunk.splitlines())})
    return found


@pytest.fixture
def cli(tmp_path: Path) -> CrlCli:
    return CrlCli(tmp_path / "state" / "store.db", tmp_path)


@pytest.fixture(scope="module")
def root() -> CA:
    return make_ca("crl test root")


# --------------------------------------------------------------------------------------------
# add / show


def test_add_pem_and_show(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    assert cli.ok("crl", "show") == HEADER
    generation = cli.crl_state()[0]
    crl = root.crl(serials=(1, 2, 3))
    out = cli.ok("crl", "add", cli.file("root.crl.pem", pem(crl)))
    assert out == thumb(crl) + "\n"
    assert cli.crl_state()[0] == generation + 1

    (shown,) = blocks(cli.ok("crl", "show"))
    assert list(shown) == ["Issuer", "Thumbprint", "This Update", "Next Update",
                           "Revoked Certificates", "Status"]
    assert shown == {
        "Issuer": root.issuer,
        "Thumbprint": thumb(crl),
        "This Update": iso(NOW - datetime.timedelta(hours=1)),
        "Next Update": iso(NOW + datetime.timedelta(days=7)),
        "Revoked Certificates": "3",
        "Status": "Valid",
    }
    # One CRL by thumbprint (any case, with spaces) or by issuer.
    assert cli.ok("crl", "show", thumb(crl).lower()) == cli.ok("crl", "show")
    spaced = " ".join(thumb(crl)[i:i + 2] for i in range(0, 40, 2))
    assert blocks(cli.ok("crl", "show", spaced)) == [shown]
    assert blocks(cli.ok("crl", "show", root.issuer)) == [shown]


def test_add_der_and_a_pem_with_two_issuers(cli: CrlCli, root: CA) -> None:
    intermediate = make_ca("crl test intermediate")
    cli.trust(root)
    cli.trust(intermediate, "CA")
    a = root.crl()
    assert cli.ok("crl", "add", cli.file("root.crl", der(a))).split() == [thumb(a)]
    b = without_next_update(intermediate)
    c = root.crl(this_update=NOW - datetime.timedelta(minutes=30))
    out = cli.ok("crl", "add", cli.file("both.pem", pem(b, c)))
    assert out.splitlines() == [thumb(b), f"{thumb(c)} replaces {thumb(a)} (issuer {root.issuer})"]
    shown = {s["Issuer"]: s for s in blocks(cli.ok("crl", "show"))}
    assert set(shown) == {root.issuer, intermediate.issuer}
    assert shown[root.issuer]["Thumbprint"] == thumb(c)
    assert shown[intermediate.issuer]["Next Update"] == "(null)"
    assert shown[intermediate.issuer]["Revoked Certificates"] == "1"
    assert shown[intermediate.issuer]["Status"] == "Valid"


def test_expired_crl_shows_expired(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    old = root.crl(this_update=NOW - datetime.timedelta(days=10),
                   next_update=NOW - datetime.timedelta(days=3))
    cli.ok("crl", "add", cli.file("old.pem", pem(old)))
    (shown,) = blocks(cli.ok("crl", "show", thumb(old)))
    assert shown["Status"] == "Expired"


def test_newer_replaces_older_is_refused_same_is_reported(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    first = root.crl(this_update=NOW - datetime.timedelta(hours=2))
    second = root.crl(this_update=NOW - datetime.timedelta(hours=1), serials=(9,))
    cli.ok("crl", "add", cli.file("first.pem", pem(first)))
    out = cli.ok("crl", "add", cli.file("second.pem", pem(second)))
    assert out == f"{thumb(second)} replaces {thumb(first)} (issuer {root.issuer})\n"
    assert [s["Thumbprint"] for s in blocks(cli.ok("crl", "show"))] == [thumb(second)]

    # The same CRL again: said so, exit 0, nothing changes (not even the generation).
    before = cli.crl_state()
    out = cli.ok("crl", "add", cli.file("again.pem", pem(second)))
    assert out == f"{thumb(second)} is already in the store (issuer {root.issuer})\n"
    assert cli.crl_state() == before

    # An older one: refused with both thumbprints and times named.
    err = cli.refused("crl", "add", cli.file("first-again.pem", pem(first)), rc=1)
    assert err.startswith("httpsys crl: error: FILE: "), err
    assert "first-again.pem" in err and "not newer" in err
    assert thumb(first) in err and thumb(second) in err
    assert f"httpsys crl delete {thumb(second)}" in err


# --------------------------------------------------------------------------------------------
# refusals


def test_malformed_files_are_refused(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    cli.ok("crl", "add", cli.file("ok.pem", pem(root.crl())))
    err = cli.refused("crl", "add", cli.file("junk.crl", b"\x30\x03\x02\x01\x05 not a CRL"))
    assert err.startswith("httpsys crl: error: FILE: ") and "junk.crl" in err, err
    assert "is not a CRL" in err
    err = cli.refused("crl", "add", cli.file("cert.pem", root.pem()))
    assert "cert.pem" in err and "without an X509 CRL block" in err, err
    broken = pem(root.crl()).replace(b"\nM", b"\nA", 1)
    err = cli.refused("crl", "add", cli.file("broken.pem", broken))
    assert "broken.pem" in err and "malformed" in err, err
    err = cli.refused("crl", "add", str(cli.tmp / "missing.pem"))
    assert "missing.pem" in err and "No such file" in err, err


def test_issuer_not_trusted_is_refused(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    stranger = make_ca("crl test stranger")
    err = cli.refused("crl", "add", cli.file("stranger.pem", pem(stranger.crl())))
    assert "stranger.pem" in err and stranger.issuer in err, err
    assert "is not in the ROOT or CA certificate store" in err
    # A CA certificate in MY (with its key) is not a trust anchor for CRLs either.
    key_pem = stranger.key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    cli.ok("cert", "import", cli.file("stranger-my.pem", stranger.pem() + key_pem))
    err = cli.refused("crl", "add", cli.file("stranger.pem", pem(stranger.crl())))
    assert "is not in the ROOT or CA certificate store" in err, err


def test_bad_signature_is_refused(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    forged = root.crl(key=ec.generate_private_key(ec.SECP256R1()))  # right name, wrong key
    err = cli.refused("crl", "add", cli.file("forged.pem", pem(forged)))
    assert "forged.pem" in err and "bad signature" in err and root.issuer in err, err


def test_one_bad_crl_refuses_the_whole_file(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    other = make_ca("crl test other")
    cli.trust(other, "CA")
    forged = other.crl(key=ec.generate_private_key(ec.SECP256R1()))
    err = cli.refused("crl", "add", cli.file("mixed.pem", pem(root.crl(), forged)))
    assert "bad signature" in err and other.issuer in err, err
    assert cli.ok("crl", "show") == HEADER


# --------------------------------------------------------------------------------------------
# delete


def test_delete_by_thumbprint_and_by_issuer(cli: CrlCli, root: CA) -> None:
    intermediate = make_ca("crl test intermediate two")
    cli.trust(root)
    cli.trust(intermediate, "CA")
    a, b = root.crl(), intermediate.crl()
    cli.ok("crl", "add", cli.file("ab.pem", pem(a, b)))
    generation = cli.crl_state()[0]
    out = cli.ok("crl", "delete", thumb(a).lower())
    assert out == f"CRL {thumb(a)} of {root.issuer} deleted.\n"
    out = cli.ok("crl", "delete", intermediate.issuer)
    assert out == f"CRL {thumb(b)} of {intermediate.issuer} deleted.\n"
    assert cli.ok("crl", "show") == HEADER
    assert cli.crl_state() == (generation + 2, [])


def test_delete_and_show_of_an_unknown_crl_name_it(cli: CrlCli, root: CA) -> None:
    cli.trust(root)
    cli.ok("crl", "add", cli.file("root.pem", pem(root.crl())))
    missing = "AB" * 20
    err = cli.refused("crl", "delete", missing)
    assert err.startswith("httpsys crl: error: ISSUER|THUMBPRINT: ") and missing in err, err
    err = cli.refused("crl", "delete", "CN=nobody,O=nowhere")
    assert "'CN=nobody,O=nowhere'" in err and "no CRL" in err, err
    err = cli.refused("crl", "show", "CN=nobody")
    assert "'CN=nobody'" in err, err


def test_usage_errors(cli: CrlCli) -> None:
    r = cli("crl")
    assert r.rc == 2 and "usage: httpsys crl" in r.err, r
    r = cli("crl", "frobnicate")
    assert r.rc == 2 and "invalid choice" in r.err, r
    r = cli("crl", "delete")
    assert r.rc == 2 and "ISSUER|THUMBPRINT" in r.err, r
    r = cli("--help", store=False)
    assert r.rc == 0 and "crl" in r.out
