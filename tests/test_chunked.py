"""The C chunked decoder through cffi, without sockets (STYLE.md lessons 1 and 2).

Every case in tests/http1_cases/chunked*.txt runs whole, byte at a time (growing prefixes must
say "incomplete" and hand back a prefix of the data until the body is complete; and reads of 1,
2, 3 and 7 bytes through hs_test_chunked_decode's own stepping), and with trailing bytes appended,
which must be left unconsumed for the next request.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from typing import Any

import pytest
from httpsys._core import ffi, lib


def _load_casefile() -> Any:
    path = pathlib.Path(__file__).parent / "http1_cases" / "casefile.py"
    spec = importlib.util.spec_from_file_location("http1_casefile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


casefile = _load_casefile()
CASES = casefile.load(chunked=True)

HS_OK = 0
HS_AGAIN = -2
OUT_CAP = 1 << 16
TAIL = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def decode(data: bytes, step: int = 0) -> tuple[int, bytes, int]:
    """Calls hs_test_chunked_decode; returns the code, the body data and the bytes consumed."""
    out = ffi.new("char[]", OUT_CAP)
    outlen = ffi.new("size_t *")
    consumed = ffi.new("size_t *")
    rc = lib.hs_test_chunked_decode(data, len(data), step, out, OUT_CAP, outlen, consumed)
    return rc, ffi.unpack(out, outlen[0]), consumed[0]


def expected_code(word: str) -> int:
    """Maps an expect: value to HS_OK, HS_AGAIN or the reject code the C enum gives it."""
    if word == "ok":
        return HS_OK
    if word == "again":
        return HS_AGAIN
    return int(getattr(lib, f"HS_REJECT_{word}"))


class Expected:
    def __init__(self, case: Any) -> None:
        self.input: bytes = case.joined("input")
        self.data: bytes = case.joined("data")
        self.code = expected_code(case.first("expect", b"").decode())

    def check(self, result: tuple[int, bytes, int], what: str) -> None:
        rc, data, consumed = result
        assert rc == self.code, f"{what}: got {rc}, want {self.code}"
        if rc in (HS_OK, HS_AGAIN):
            assert data == self.data, f"{what}: data"
            assert consumed == len(self.input), f"{what}: consumed"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_whole(case: Any) -> None:
    exp = Expected(case)
    exp.check(decode(exp.input), "whole")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_in_pieces(case: Any, step: int) -> None:
    exp = Expected(case)
    exp.check(decode(exp.input, step), f"step {step}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_growing_prefixes(case: Any) -> None:
    exp = Expected(case)
    n = len(exp.input)
    answered_at = None
    # The 4 kB line-limit cases would take a long time byte by byte; every 97th prefix of them
    # is enough, as the stepping test above covers each byte boundary.
    stride = 1 if n < 512 else 97
    for k in list(range(0, n, stride)) + [n]:
        rc, data, consumed = decode(exp.input[:k])
        if rc == HS_AGAIN and answered_at is None:
            assert consumed == k, f"prefix {k}: input left unconsumed"
            assert exp.data.startswith(data) or exp.code > 0, f"prefix {k}: data"
            continue
        answered_at = answered_at if answered_at is not None else k
        exp.check((rc, data, consumed), f"prefix {k} (answered at {answered_at})")
    if exp.code == HS_OK:
        assert answered_at == n


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("step", [0, 1])
def test_trailing_bytes(case: Any, step: int) -> None:
    exp = Expected(case)
    if exp.code == HS_AGAIN:
        pytest.skip("an incomplete body would absorb the trailing bytes")
    exp.check(decode(exp.input + TAIL, step), "trailing")


def test_case_count() -> None:
    assert len(CASES) >= 20


def test_small_output_buffer_is_internal_error() -> None:
    out = ffi.new("char[]", 3)
    outlen = ffi.new("size_t *")
    consumed = ffi.new("size_t *")
    data = b"5\r\nhello\r\n0\r\n\r\n"
    rc = lib.hs_test_chunked_decode(data, len(data), 0, out, 3, outlen, consumed)
    assert rc == lib.HS_REJECT_INTERNAL
