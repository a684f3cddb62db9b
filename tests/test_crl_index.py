"""The CRL revocation index (csrc/crl.c) through cffi, with CRLs made by `cryptography`.

The index is what every mutual-TLS handshake searches, so these tests pin its answers: listed
serials are found whatever their length or padding, their neighbours are not, freshness follows
the injected clock with both ends included, and bad DER is refused with a message.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from httpsys._core import ffi, lib

UTC = datetime.timezone.utc
THIS_UPDATE = datetime.datetime(2024, 1, 1, tzinfo=UTC)
NEXT_UPDATE = datetime.datetime(2024, 1, 8, tzinfo=UTC)
LARGE = 100_000
MAX_SERIAL = 2**159 - 1  # the largest serial cryptography lets a CA issue (20 octets)

GOOD, REVOKED, OTHER_ISSUER = 0, 1, 2


def ts(d: datetime.datetime) -> int:
    return int(d.timestamp())


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def be(n: int, length: int | None = None) -> bytes:
    """Big-endian magnitude, minimal unless a length is given."""
    return n.to_bytes(length if length is not None else max(1, (n.bit_length() + 7) // 8), "big")


@pytest.fixture(scope="module")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_crl(
    key: ec.EllipticCurvePrivateKey,
    serials: list[int],
    issuer: str = "Test CA",
    this_update: datetime.datetime = THIS_UPDATE,
    next_update: datetime.datetime = NEXT_UPDATE,
) -> bytes:
    # Passing the list to the constructor is linear; add_revoked_certificate copies the builder
    # each time and is quadratic (24 s for 100,000 entries).
    revoked = [
        x509.RevokedCertificateBuilder().serial_number(s).revocation_date(this_update).build()
        for s in serials
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=name(issuer),
        last_update=this_update,
        next_update=next_update,
        revoked_certificates=revoked,
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def build(der: bytes) -> Any:
    """Returns the index handle (freed by the GC), or raises ValueError with the C message."""
    out = ffi.new("void **")
    err = ffi.new("char[]", 256)
    rc = lib.hs_test_crl_build(der, len(der), out, err, 256)
    if rc != 0:
        assert out[0] == ffi.NULL
        raise ValueError(ffi.string(err).decode())
    return ffi.gc(out[0], lib.hs_test_crl_free)


def revoked(ix: Any, serial: bytes) -> bool:
    return bool(lib.hs_test_crl_lookup(ix, serial, len(serial)))


def make_cert(key: ec.EllipticCurvePrivateKey, issuer: str, serial: int) -> bytes:
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("client"))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(THIS_UPDATE)
        .not_valid_after(NEXT_UPDATE)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def small(ca_key: ec.EllipticCurvePrivateKey) -> tuple[Any, list[int]]:
    rng = random.Random(4)
    serials = sorted({rng.getrandbits(64) | 1 for _ in range(50)} | {1, 0x80, MAX_SERIAL})
    return build(make_crl(ca_key, serials)), serials


def test_count(small: tuple[Any, list[int]]) -> None:
    ix, serials = small
    assert lib.hs_test_crl_count(ix) == len(serials)


def test_listed_serials_are_found(small: tuple[Any, list[int]]) -> None:
    ix, serials = small
    for s in serials:
        assert revoked(ix, be(s)), hex(s)


def test_neighbours_are_absent(small: tuple[Any, list[int]]) -> None:
    # Guards against an off-by-one in the binary search and against prefix matches.
    ix, serials = small
    listed = set(serials)
    for s in serials:
        for n in (s - 1, s + 1, s << 8, s >> 8):
            if n > 0 and n not in listed:
                assert not revoked(ix, be(n)), hex(n)
    assert not revoked(ix, b"\x00")
    assert not revoked(ix, b"")


def test_padding_is_ignored(small: tuple[Any, list[int]]) -> None:
    # A certificate's DER serial carries a 0x00 sign octet when the top bit is set; callers may
    # also pass fixed-width buffers.
    ix, _ = small
    assert revoked(ix, b"\x00\x80")
    assert revoked(ix, be(1, 20))
    assert revoked(ix, be(MAX_SERIAL, 21))
    assert not revoked(ix, b"\xff" * 21)  # longer than any serial: absent, no overread


def test_max_serial_boundary(small: tuple[Any, list[int]]) -> None:
    ix, _ = small
    assert revoked(ix, be(MAX_SERIAL))
    assert not revoked(ix, be(MAX_SERIAL - 1))
    assert not revoked(ix, be(MAX_SERIAL + 1))


@pytest.mark.parametrize(
    ("now", "fresh"),
    [
        (ts(THIS_UPDATE) - 1, False),  # not yet valid: a CRL from the future is not trusted
        (ts(THIS_UPDATE), True),  # thisUpdate is included
        (ts(NEXT_UPDATE), True),  # nextUpdate is included
        (ts(NEXT_UPDATE) + 1, False),  # stale one second later: fail closed
        (0, False),
    ],
)
def test_freshness(small: tuple[Any, list[int]], now: int, fresh: bool) -> None:
    ix, _ = small
    assert bool(lib.hs_test_crl_fresh(ix, now)) is fresh


def test_generalized_time(ca_key: ec.EllipticCurvePrivateKey) -> None:
    # Dates from 2050 on are GeneralizedTime in DER, UTCTime before: both must convert exactly.
    later = datetime.datetime(2061, 3, 4, 5, 6, 7, tzinfo=UTC)
    ix = build(make_crl(ca_key, [7], next_update=later))
    assert lib.hs_test_crl_fresh(ix, ts(later)) == 1
    assert lib.hs_test_crl_fresh(ix, ts(later) + 1) == 0


def test_empty_crl(ca_key: ec.EllipticCurvePrivateKey) -> None:
    ix = build(make_crl(ca_key, []))
    assert lib.hs_test_crl_count(ix) == 0
    assert not revoked(ix, b"\x01")


def test_check_cert(ca_key: ec.EllipticCurvePrivateKey) -> None:
    ix = build(make_crl(ca_key, [1000, MAX_SERIAL]))

    def check(issuer: str, serial: int) -> int:
        der = make_cert(ca_key, issuer, serial)
        return int(lib.hs_test_crl_check_cert(ix, der, len(der)))

    assert check("Test CA", 1000) == REVOKED
    assert check("Test CA", MAX_SERIAL) == REVOKED
    assert check("Test CA", 1001) == GOOD
    assert check("Other CA", 1000) == OTHER_ISSUER
    assert check("test  ca", 1000) == REVOKED  # names match in OpenSSL's canonical form
    assert lib.hs_test_crl_check_cert(ix, b"junk", 4) == -1


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"garbage",
        b"\x30\x82\xff\xff",  # a SEQUENCE header promising more than is there
    ],
)
def test_garbage_is_refused(der: bytes) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        build(der)


def test_truncated_and_trailing_are_refused(ca_key: ec.EllipticCurvePrivateKey) -> None:
    der = make_crl(ca_key, [1, 2, 3])
    with pytest.raises(ValueError, match="DER"):
        build(der[:-1])
    with pytest.raises(ValueError, match="trailing"):
        build(der + b"\x00")


@pytest.fixture(scope="module")
def large(ca_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, list[int]]:
    rng = random.Random(100_000)
    serials: set[int] = set()
    while len(serials) < LARGE:
        serials.add(rng.getrandbits(64) | 1)  # odd, so s ^ 1 is never listed
    listed = list(serials)
    return make_crl(ca_key, listed, issuer="Big CA"), listed


def test_large_crl(large: tuple[bytes, list[int]]) -> None:
    der, serials = large
    ix = build(der)
    assert lib.hs_test_crl_count(ix) == LARGE
    packed = b"".join(s.to_bytes(8, "big") for s in serials)
    assert lib.hs_test_crl_lookup_many(ix, packed, 8, LARGE) == LARGE
    evens = b"".join((s ^ 1).to_bytes(8, "big") for s in serials)
    assert lib.hs_test_crl_lookup_many(ix, evens, 8, LARGE) == 0
    for s in serials[:1000]:
        assert revoked(ix, be(s))
        assert not revoked(ix, be(s ^ 1))
