"""Micro-benchmarks of C units through cffi, with pytest-benchmark.

Not collected by CI (testpaths = ["tests"]). Run from the repository root:

    python -m pytest bench/test_micro.py --benchmark-only -q

Every C entry point here is reached through cffi, whose call costs a few hundred nanoseconds by
itself (``test_cffi_call_floor`` and the ``*_cffi_floor`` variants measure it for the same
signature); where that dominates, the per-op cost in C is the difference, or, where an entry
point loops in C (CRL lookup), the batched figure.

Request parse (csrc/http1.c) of a typical browser request head (Chrome, 17 headers, 1 KiB):
  - hs_test_parse_request parses the head and then serialises every field into an output buffer
    (format_request); the server's own parse does not do that copy, so this is an upper bound;
  - the same call on an empty buffer returns HS_AGAIN at once: the cffi floor of this signature.

Route lookup (csrc/route.c) with 1,000 registered prefixes:
  - hs_test_route builds a route table from the prefixes, routes one request and frees the table
    on every call, and no entry point keeps a table between calls or loops lookups in C. So the
    1,000-prefix figure is build + one lookup + free; the same call with port 0, which the lookup
    rejects before hashing anything, is build + free: the lookup is the difference, which is far
    below the noise of a ~100 us call;
  - the lookup itself is hashing (one host-node probe per class, then one probe per path segment
    boundary up to the host's longest registered path), independent of how many prefixes there
    are; it is measured by the same difference on a four-prefix table (one per class) with the
    same path, where the build is cheap enough for the difference to show.

Environ build:
  - the C half (csrc/environ.c hs__environ_build: the NUL-separated key/value block, laid out on
    the I/O thread for every request) through hs_test_environ_build, which parses the head once
    and then builds and frees the block N times in C: with N = 1000 the mean / 1000 is the
    per-request cost without cffi; with N = 1 the block is checked to have the keys, in order, of
    the block a real server made;
  - the Python half, httpsys.wsgi.build_environ over ffi.unpack of the block (what every WSGI
    request pays on the worker thread), is: on the block a real httpsys server produced for the
    same browser request over TLS (captured by a module fixture).

CRL index (csrc/crl.c), for a 100,000-entry CRL of random 64-bit serials:
  - build: d2i_X509_CRL of the DER, one pass copying serials into fixed-size keys, one qsort;
    this is paid once per CRL load, never per handshake;
  - lookup: one serial through cffi, which is mostly cffi's call overhead;
  - lookup x1000: 1,000 lookups inside one C call, so the per-lookup cost in C is the mean / 1000
    and is what a handshake pays.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from httpsys._core import ffi, lib

sys.path.insert(0, str(Path(__file__).resolve().parent))
import certs

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


# ---- cffi floor ---------------------------------------------------------------------------------

def test_cffi_call_floor(benchmark: Any) -> None:
    """A C function with no arguments that returns a constant: the least a cffi call costs."""
    assert benchmark(lib.hs_reject_count) > 0


# ---- request parse ----------------------------------------------------------------------------

BROWSER_REQUEST = (
    b"GET /app/dashboard?tab=overview&page=2 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b'sec-ch-ua-platform: "Windows"\r\n'
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-User: ?1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Referer: https://www.example.com/app/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    b"Cookie: session=7f3c9a1e5b2d4f6081a9c3e7d5b1f2a4; _ga=GA1.1.1234567890.1700000000; "
    b"theme=dark\r\n"
    b"\r\n"
)
LIMIT = 16384   # HTTP.sys's MaxFieldLength and MaxRequestBytes defaults
OUT_CAP = 1 << 16


def test_parse_browser_request(benchmark: Any) -> None:
    out = ffi.new("char[]", OUT_CAP)
    outlen, consumed = ffi.new("size_t *"), ffi.new("size_t *")
    data, n = BROWSER_REQUEST, len(BROWSER_REQUEST)
    rc = benchmark(lib.hs_test_parse_request, data, n, LIMIT, LIMIT, out, OUT_CAP, outlen, consumed)
    assert rc == 0 and consumed[0] == n
    fields = ffi.unpack(out, outlen[0]).split(b"\0")
    assert fields[0] == b"GET" and fields[8] == b"www.example.com"


def test_parse_cffi_floor(benchmark: Any) -> None:
    """The same call on an empty buffer: HS_AGAIN (-2) before any parsing."""
    out = ffi.new("char[]", OUT_CAP)
    outlen, consumed = ffi.new("size_t *"), ffi.new("size_t *")
    data = BROWSER_REQUEST
    assert benchmark(lib.hs_test_parse_request, data, 0, LIMIT, LIMIT, out, OUT_CAP, outlen,
                     consumed) == -2


# ---- route lookup -----------------------------------------------------------------------------

ROUTE_PATH = b"/s0499/api/v1/items/42/details"


def thousand_prefixes() -> list[bytes]:
    """1,000 prefixes over the four classes, the way many apps on one machine would register:
    250 strong (+) paths, 250 explicit host names, 250 paths bound to 127.0.0.1, 250 weak (*)
    paths, the last weak one the root."""
    out = [f"https://+:443/s{i:04d}/api/".encode() for i in range(250)]
    out += [f"https://app{i:04d}.example.com:443/".encode() for i in range(250)]
    out += [f"https://127.0.0.1:443/ip{i:04d}/".encode() for i in range(250)]
    out += [f"https://*:443/w{i:04d}/".encode() for i in range(249)]
    out.append(b"https://*:443/")
    return out


def route_args(prefixes: list[bytes], port: int) -> tuple[Any, ...]:
    blob = b"".join(p + b"\0" for p in prefixes)
    return (blob, len(blob), b"app0100.example.com", b"127.0.0.1", port, ROUTE_PATH,
            ffi.new("int *"), ffi.new("size_t *"))


def test_route_1000_prefixes_build_and_lookup(benchmark: Any) -> None:
    """Build a 1,000-prefix table, route one request, free: the call hs_test_route makes."""
    args = route_args(thousand_prefixes(), 443)
    assert benchmark(lib.hs_test_route, *args) == 0
    # /s0499/ is not registered (strong paths stop at s0249): app0100's explicit root wins.
    assert args[6][0] == 250 + 100 and args[7][0] == 0


def test_route_1000_prefixes_build_only(benchmark: Any) -> None:
    """The same call with port 0: the lookup rejects at once, so this is build + free."""
    args = route_args(thousand_prefixes(), 0)
    assert benchmark(lib.hs_test_route, *args) == lib.HS_REJECT_INVALID_HOSTNAME


FOUR_CLASSES = [b"https://+:443/s0249/api/", b"https://app0100.example.com:443/",
                b"https://127.0.0.1:443/ip0000/", b"https://*:443/"]


def test_route_lookup_four_prefixes(benchmark: Any) -> None:
    """The lookup on a small table (one prefix per class), plus the build of four prefixes."""
    args = route_args(FOUR_CLASSES, 443)
    assert benchmark(lib.hs_test_route, *args) == 0
    assert args[6][0] == 1


def test_route_lookup_four_prefixes_build_only(benchmark: Any) -> None:
    args = route_args(FOUR_CLASSES, 0)
    assert benchmark(lib.hs_test_route, *args) == lib.HS_REJECT_INVALID_HOSTNAME


# ---- environ build (the Python half) -----------------------------------------------------------

@pytest.fixture(scope="module")
def environ_block() -> Iterator[bytes]:
    """The environ block an httpsys server made for BROWSER_REQUEST over TLS 1.3, rebuilt from
    what the app received (build_environ keeps the block's order; only str values come from it)."""
    import httpsys
    from httpsys import wsgi

    os.environ.setdefault("HTTPSYS_RUNTIME_DIR", tempfile.mkdtemp(prefix="httpsys-micro-run-"))
    cert = certs.make(Path(tempfile.mkdtemp(prefix="httpsys-micro-")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: dict[str, Any] = {}
    got = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        got.set()
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = httpsys.Server(io_threads=1, workers=1)
    try:
        srv.set_sslcert(f"0.0.0.0:{port}", cert.cert_pem, cert.key_pem)
        srv.add_app(f"https://+:{port}/", app)
        srv.start()
        ctx = ssl.create_default_context(cafile=str(cert.cert_path))
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(BROWSER_REQUEST)
            assert got.wait(10)
            tls.recv(4096)
    finally:
        srv.close()
    block = b"".join(k.encode("latin-1") + b"\0" + str(v).encode("latin-1") + b"\0"
                     for k, v in seen.items()
                     if k not in wsgi._BASE_ENVIRON and k != "wsgi.input")
    yield block


def test_environ_python_half(benchmark: Any, environ_block: bytes) -> None:
    """ffi.unpack of the C block + wsgi.build_environ: the per-request environ work in Python."""
    from httpsys import wsgi

    cbuf = ffi.new("char[]", environ_block)
    n = len(environ_block)
    base = wsgi._BASE_ENVIRON

    def once() -> dict[str, Any]:
        return wsgi.build_environ(ffi.unpack(cbuf, n), base)

    env = benchmark(once)
    assert env["HTTP_USER_AGENT"].startswith("Mozilla/5.0") and env["REQUEST_METHOD"] == "GET"
    assert env["wsgi.version"] == (1, 0)


ENV_BATCH = 1_000


def _environ_c(iterations: int) -> tuple[Any, Any, Any]:
    out = ffi.new("char[]", OUT_CAP)
    outlen = ffi.new("size_t *")
    return out, outlen, lambda: lib.hs_test_environ_build(
        BROWSER_REQUEST, len(BROWSER_REQUEST), 0, 1, iterations, out, OUT_CAP, outlen)


def test_environ_c_half_one_call(benchmark: Any, environ_block: bytes) -> None:
    """hs_test_environ_build: one parse + one hs__environ_build + free, through cffi."""
    out, outlen, call = _environ_c(1)
    assert benchmark(call) == 0
    # The same keys, in the same order, as the block the real server made for this request
    # but for the client-certificate pairs (SSL_CLIENT_VERIFY, httpsys.client_cert_error): the
    # entry point has no connection.
    ours = ffi.unpack(out, outlen[0]).split(b"\0")[:-1:2]
    real = [k for k in environ_block.split(b"\0")[:-1:2] 
            if not k.startswith((b"SSL_CLIENT_", b"httpsys.client_cert"))]
    assert ours == real


def test_environ_c_half_x1000_in_c(benchmark: Any) -> None:
    """One parse, then 1,000 builds (malloc, lay out, free) inside one C call: mean / 1000 is
    what the I/O thread pays per request for the environ block."""
    _, _, call = _environ_c(ENV_BATCH)
    assert benchmark(call) == 0
