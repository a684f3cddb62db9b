"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

The seeds are the parser cases of tests/http1_cases/, the URL cases of tests/test_url.py and the
hand-written hostile inputs below, each prefixed with the bytes the target reads first (limits
and read size, see the comment at the top of each fuzz_*.c). File names are content hashes, so
running this again only adds what is new. Usage: python fuzz/make_corpus.py
"""

from __future__ import annotations

import ast
import hashlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "http1_cases"))

import casefile

HTTP1_NASTY = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\n folded\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.9\r\nHost: a\r\n\r\n",
    b"GET / http/1.1\r\nHost: a\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a:80/x?y HTTP/1.1\r\nHost: b\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 129 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
]

URL_NASTY = [
    b"/a/" + b"b" * 261,
    b"/" + b"a/" * 256,
    b"/%2e%2e%2f%2e%2e%2fetc/passwd",
    b"/..%5c..%5cwindows",
    b"/a/./b/../../c/./d/..",
    b"/%25%32%65%25%32%65/",
    b"/%c0%ae%c0%ae/",
    b"/%e2%80%ae/",
    b"/a?b=%00&c=/../..",
    b"http://host:8443/a/../b?q",
    b"HTTPS://[::1]:443/x",
    b"http://user@host/",
    b"http://host:99999/",
    b"http://[::1/",
    b"http://host?q",
    b"*",
    b"host:0",
    b"[fe80::1%25eth0]:80",
]

CHUNKED_NASTY = [
    b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
    b"5 ;a\r\nhello\r\n0;x\r\nT: v\r\nU: w\r\n\r\n",
    b"fffffffffffffff\r\n",
    b"ffffffffffffffff0\r\n",
    b"5\nhello\n0\n\n",
    b"0\r\n\r\n",
    b"00000\r\n\r\n",
    b"5\r\nhelloX\r\n",
    b"-1\r\n",
    b"5\r\nhel",
    b"1\r\na\r\n" * 8 + b"0\r\n\r\n",
]


def write(target: str, payload: bytes) -> bool:
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(payload).hexdigest()[:16]
    path = d / name
    if path.exists():
        return False
    path.write_bytes(payload)
    return True


def http1_prefix(limits: bytes | None, step: int) -> bytes:
    """[limits][max_request][step]: small limits need field <= 128 and request <= 256."""
    if limits:
        field, request = (int(x) for x in limits.split())
        if field <= 128 and request <= 256:
            return bytes([0x80 | (field - 1), request - 1, step])
    return bytes([0, 0, step])


def url_cases() -> list[bytes]:
    """The raw paths of test_url.py's CASES list, read without importing the module."""
    tree = ast.parse((ROOT / "tests" / "test_url.py").read_text())
    raws = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "CASES":
            assert isinstance(node.value, ast.List)
            for elt in node.value.elts:
                assert isinstance(elt, ast.Tuple)
                raw = elt.elts[0]
                if isinstance(raw, ast.Constant) and isinstance(raw.value, bytes):
                    raws.append(raw.value)
                elif isinstance(raw, ast.Call):  # "/café".encode()
                    assert isinstance(raw.func, ast.Attribute)
                    assert isinstance(raw.func.value, ast.Constant)
                    raws.append(str(raw.func.value.value).encode())
    return raws


def main() -> None:
    added = 0
    for i, case in enumerate(casefile.load(chunked=False)):
        data = case.joined("input")
        step = 0 if len(data) < 200 else 1 + i % 13
        added += write("http1", http1_prefix(case.first("limits"), step) + data)
    for i, data in enumerate(HTTP1_NASTY):
        added += write("http1", bytes([0, 0, i % 5]) + data)
        added += write("http1", bytes([0x80 | 31, 127, 1 + i % 3]) + data)
    for i, case in enumerate(casefile.load(chunked=True)):
        added += write("chunked", bytes([1 + i % 7]) + case.joined("input"))
    for i, data in enumerate(CHUNKED_NASTY):
        added += write("chunked", bytes([1 + i % 3]) + data)
    for i, data in enumerate(url_cases() + URL_NASTY):
        added += write("url", bytes([i % 2]) + data)
    added += write("url", bytes([2 | 3 << 2 | 2 << 5]) + b"/abcd/ab/a/b/c")
    print(f"{added} new seed files")


if __name__ == "__main__":
    main()
