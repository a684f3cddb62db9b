"""Micro-benchmarks of C units through cffi, with pytest-benchmark.

Not collected by CI (testpaths = ["tests"]). Run from the repository root:

    python -m pytest bench/test_micro.py --benchmark-only -q

CRL index (csrc/crl.c), for a 100,000-entry CRL of random 64-bit serials:
  - build: d2i_X509_CRL of the DER, one pass copying serials into fixed-size keys, one qsort;
    this is paid once per CRL load, never per handshake;
  - lookup: one serial through cffi, which is mostly cffi's call overhead;
  - lookup x1000: 1,000 lookups inside one C call, so the per-lookup cost in C is the mean / 1000
    and is what a handshake pays.
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

ENTRIES = 100_000
BATCH = 1_000


@pytest.fixture(scope="module")
def crl() -> tuple[bytes, list[int]]:
    rng = random.Random(ENTRIES)
    serials: set[int] = set()
    while len(serials) < ENTRIES:
        serials.add(rng.getrandbits(64) | 1)
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    revoked = [
        x509.RevokedCertificateBuilder().serial_number(s).revocation_date(when).build()
        for s in serials
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")]),
        last_update=when,
        next_update=when + datetime.timedelta(days=7),
        revoked_certificates=revoked,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return der, list(serials)


def build(der: bytes) -> Any:
    out = ffi.new("void **")
    err = ffi.new("char[]", 256)
    assert lib.hs_test_crl_build(der, len(der), out, err, 256) == 0, ffi.string(err)
    return ffi.gc(out[0], lib.hs_test_crl_free)


def test_crl_index_build_100k(benchmark: Any, crl: tuple[bytes, list[int]]) -> None:
    der, _ = crl

    def once() -> None:
        out = ffi.new("void **")
        assert lib.hs_test_crl_build(der, len(der), out, ffi.NULL, 0) == 0
        lib.hs_test_crl_free(out[0])

    benchmark.pedantic(once, rounds=10, iterations=1, warmup_rounds=1)


def test_crl_lookup_100k_one_call(benchmark: Any, crl: tuple[bytes, list[int]]) -> None:
    der, serials = crl
    ix = build(der)
    serial = serials[len(serials) // 2].to_bytes(8, "big")
    assert benchmark(lib.hs_test_crl_lookup, ix, serial, 8) == 1


def test_crl_lookup_100k_x1000_in_c(benchmark: Any, crl: tuple[bytes, list[int]]) -> None:
    der, serials = crl
    ix = build(der)
    rng = random.Random(1)
    # Half listed, half absent neighbours, in random order: no branch predictor favours.
    picks = [s ^ rng.getrandbits(1) for s in rng.sample(serials, BATCH)]
    packed = ffi.from_buffer(b"".join(s.to_bytes(8, "big") for s in picks))
    hits = benchmark(lib.hs_test_crl_lookup_many, ix, packed, 8, BATCH)
    assert 0 < hits < BATCH
