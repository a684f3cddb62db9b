"""The C request-head parser through cffi, without sockets (STYLE.md lessons 1 and 2).

Every case in tests/http1_cases (except chunked*.txt) runs whole, byte at a time (each growing
prefix parsed on its own must say "incomplete" until the head is complete, then give the same
answer), and with trailing bytes appended (a pipelined request, or garbage).
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
CASES = casefile.load(chunked=False)

HS_OK = 0
HS_AGAIN = -2
DEFAULT_LIMIT = 16384
OUT_CAP = 1 << 16
FIXED_FIELDS = {
    "method": b"",
    "target": b"",
    "minor": b"1",
    "content-length": b"-1",
    "chunked": b"0",
    "expect-continue": b"0",
    "close": b"0",
    "keep-alive": b"0",
    "host": b"",
}
TAILS = [b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n", b"\r\n\r\n\x00\r"]


def parse(data: bytes, limits: tuple[int, int]) -> tuple[int, list[bytes], int]:
    """Calls hs_test_parse_request; returns the code, the output fields and the head length."""
    out = ffi.new("char[]", OUT_CAP)
    outlen = ffi.new("size_t *")
    consumed = ffi.new("size_t *")
    rc = lib.hs_test_parse_request(
        data, len(data), limits[0], limits[1], out, OUT_CAP, outlen, consumed
    )
    fields = ffi.unpack(out, outlen[0]).split(b"\0")[:-1] if rc == HS_OK else []
    return rc, fields, consumed[0]


def expected_code(word: str) -> int:
    """Maps an expect: value to HS_OK, HS_AGAIN or the reject code the C enum gives it."""
    if word == "ok":
        return HS_OK
    if word == "again":
        return HS_AGAIN
    return int(getattr(lib, f"HS_REJECT_{word}"))


class Expected:
    """What a case expects, in the terms hs_test_parse_request answers in."""

    def __init__(self, case: Any) -> None:
        self.input: bytes = case.joined("input")
        self.code = expected_code(case.first("expect", b"").decode())
        limits = case.first("limits")
        field, request = map(int, limits.split()) if limits else (DEFAULT_LIMIT, DEFAULT_LIMIT)
        self.limits = (field, request)
        self.consumed = int(case.first("consumed", str(len(self.input)).encode()))
        self.fixed = [case.first(k, v) for k, v in FIXED_FIELDS.items()]
        count = case.first("header-count")
        self.header_count = int(count) if count is not None else None
        self.headers = []
        for line in case.all("header"):
            name, _, value = line.partition(b":")
            self.headers += [name, value.strip(b" \t")]

    def check(self, result: tuple[int, list[bytes], int], what: str) -> None:
        rc, fields, consumed = result
        assert rc == self.code, f"{what}: got {rc}, want {self.code}"
        if rc != HS_OK:
            return
        assert consumed == self.consumed, f"{what}: head length"
        assert fields[: len(self.fixed)] == self.fixed, f"{what}: fixed fields"
        headers = fields[len(self.fixed) :]
        if self.header_count is not None:
            assert len(headers) == 2 * self.header_count, f"{what}: header count"
        else:
            assert headers == self.headers, f"{what}: headers"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_whole(case: Any) -> None:
    exp = Expected(case)
    exp.check(parse(exp.input, exp.limits), "whole")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_byte_at_a_time(case: Any) -> None:
    exp = Expected(case)
    answered_at = None
    for k in range(1, len(exp.input) + 1):
        result = parse(exp.input[:k], exp.limits)
        if result[0] == HS_AGAIN and answered_at is None:
            assert exp.code != HS_OK or k < exp.consumed, f"prefix {k}: still incomplete"
            continue
        # Once the parser has answered, longer prefixes must give the same answer.
        answered_at = answered_at or k
        exp.check(result, f"prefix {k} (answered at {answered_at})")
    if exp.code == HS_AGAIN:
        assert answered_at is None
    else:
        assert answered_at is not None, "never answered"
        if exp.code == HS_OK:
            assert answered_at == exp.consumed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("tail", TAILS, ids=["pipelined", "garbage"])
def test_trailing_bytes(case: Any, tail: bytes) -> None:
    exp = Expected(case)
    if exp.code == HS_AGAIN:
        pytest.skip("an incomplete head would absorb the trailing bytes")
    exp.check(parse(exp.input + tail, exp.limits), "trailing")


def test_case_count() -> None:
    assert len(CASES) >= 40


def test_small_output_buffer_is_internal_error() -> None:
    out = ffi.new("char[]", 8)
    outlen = ffi.new("size_t *")
    consumed = ffi.new("size_t *")
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    rc = lib.hs_test_parse_request(data, len(data), 16384, 16384, out, 8, outlen, consumed)
    assert rc == lib.HS_REJECT_INTERNAL
