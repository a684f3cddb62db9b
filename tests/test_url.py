"""URL canonicalisation (csrc/url.c) through cffi, with no sockets.

Each case is (raw path, expected canonical path or reject code); the comment says which bug it
guards against. Limits default to HTTP.sys' UrlSegmentMaxLength 260 and UrlSegmentMaxCount 255.
"""

from __future__ import annotations

import pytest

from httpsys._core import ffi, lib

INVALID = lib.HS_REJECT_INVALID_URL


def canonicalize(path: bytes, seg_max_len: int = 260, seg_max_count: int = 255) -> bytes | int:
    """Returns the canonical path, or the reject code."""
    out = ffi.new("char[]", len(path) + 1)
    out_len = ffi.new("size_t *")
    rc = lib.hs_test_url_canonicalize(
        path, len(path), seg_max_len, seg_max_count, out, len(path) + 1, out_len
    )
    if rc != 0:
        return int(rc)
    return bytes(ffi.buffer(out, out_len[0]))


CASES: list[tuple[bytes, bytes | int]] = [
    (b"/", b"/"),  # the root is already canonical
    (b"/index.html", b"/index.html"),  # plain paths pass untouched
    (b"/a%20b", b"/a b"),  # ordinary escapes are decoded
    (b"/%41%62%63", b"/Abc"),  # hex digits in both cases, decoded byte for byte
    (b"/a%2Fb", b"/a/b"),  # %2F is decoded and becomes a separator, as in HTTP.sys
    (b"/a/b%2F..%2Fc", b"/a/c"),  # a decoded '/' can form dot segments that are then removed
    (b"/%2e%2e/x", INVALID),  # encoded ".." above the root must not bypass the climb check
    (b"/a/%2E%2e", b"/"),  # encoded ".." is a dot segment (no decode-after-check bypass)
    (b"/%2541", b"/%41"),  # single decoding only: "%25" yields a literal '%'
    (b"/%", INVALID),  # a lone '%' at the end is malformed
    (b"/%4", INVALID),  # an escape cut short reads no byte past the input
    (b"/a%4g", INVALID),  # non-hex second digit
    (b"/a%g4", INVALID),  # non-hex first digit
    (b"/%u0041", b"/A"),  # HTTP.sys's %uNNNN (PercentUAllowed, on by default)
    (b"/%U00e9", "/é".encode()),  # decoded into UTF-8, 'u' and hex in either case
    (b"/%u20AC", "/€".encode()),  # a three-byte character
    (b"/%uD83D%uDE00", "/😀".encode()),  # a surrogate pair is one character
    (b"/a/%u002e%u002E/b", b"/b"),  # %u-encoded dots are dot segments
    (b"/%u002e%u002e/x", INVALID),  # and cannot climb above the root
    (b"/a%u002Fb", b"/a/b"),  # %u002F separates segments like %2F
    (b"/a%u005Cb", b"/a/b"),  # and %u005C is '\', so '/'
    (b"/a%u0000b", INVALID),  # a NUL however it is spelt
    (b"/a%u000a", INVALID),  # C0 controls
    (b"/a%u0085", INVALID),  # C1 controls
    (b"/%uD83D", INVALID),  # a lone high surrogate
    (b"/%uDE00", INVALID),  # a lone low surrogate
    (b"/%uD83D%u0041", INVALID),  # a high surrogate must be followed by a low one
    (b"/%uD83D%2541", INVALID),  # as another %u escape
    (b"/%uD83D%uDE0", INVALID),  # cut short inside the second escape
    (b"/%u004", INVALID),  # cut short: reads no byte past the input
    (b"/%u00G1", INVALID),  # a non-hex digit
    (b"/%u", INVALID),  # nothing after the 'u'
    (b"", INVALID),  # an empty path is not an abs-path
    (b"a/b", INVALID),  # a path must start with '/'
    (b"/a\\b", b"/a/b"),  # a raw backslash is a separator
    (b"/a%5Cb", b"/a/b"),  # an encoded backslash is a separator too
    (b"/%5c..%5c..%5cetc", INVALID),  # backslash traversal above the root is refused
    (b"/a/%5c..%5c..%5cetc", b"/etc"),  # backslash dot segments are removed like slash ones
    (b"/./a", b"/a"),  # a "." segment disappears
    (b"/a/.", b"/a/"),  # a final "." leaves the directory slash (RFC 3986 5.2.4)
    (b"/a/b/..", b"/a/"),  # a final ".." leaves the directory slash
    (b"/a/b/../../c", b"/c"),  # ".." pops one segment each
    (b"/..", INVALID),  # climbing above the root is rejected, not clamped
    (b"/a/../..", INVALID),  # climbing above the root after a pop
    (b"/...", b"/..."),  # three dots is an ordinary name
    (b"/.a/a./..b", b"/.a/a./..b"),  # dots inside names are ordinary
    (b"//", b"//"),  # repeated slashes are kept, not collapsed
    (b"/a//b", b"/a//b"),  # empty segments in the middle are kept
    (b"/a//../b", b"/a/b"),  # ".." removes an empty segment like any other
    (b"/a%00b", INVALID),  # an encoded NUL would truncate the path for C consumers
    (b"/a\x00b", INVALID),  # a raw NUL likewise
    (b"/a%0d%0aSet-Cookie:x", INVALID),  # CR LF injection into logs or headers
    (b"/a%1F", INVALID),  # the last C0 control
    (b"/a%7F", INVALID),  # DEL is a restricted character
    (b"/a\tb", INVALID),  # raw control bytes are rejected too
    (b"/caf%C3%A9", "/café".encode()),  # encoded UTF-8 decodes to the same bytes
    ("/café".encode(), "/café".encode()),  # raw UTF-8 passes
    (b"/%F0%9F%98%80", "/\U0001f600".encode()),  # four-byte sequences are fine
    (b"/%F4%8F%BF%BF", "/\U0010ffff".encode()),  # U+10FFFF is the last code point
    (b"/%C0%AF", INVALID),  # overlong '/' (the IIS Unicode traversal bug)
    (b"/%C0%AE%C0%AE/x", INVALID),  # overlong ".." must not become a dot segment
    (b"/%E0%80%AF", INVALID),  # three-byte overlong
    (b"/%F0%8F%BF%BF", INVALID),  # four-byte overlong
    (b"/%ED%A0%80", INVALID),  # a UTF-16 surrogate is not a scalar value
    (b"/%ED%9F%BF", "/\ud7ff".encode()),  # the code point right below the surrogates is fine
    (b"/%F4%90%80%80", INVALID),  # above U+10FFFF
    (b"/%FF", INVALID),  # a byte that never occurs in UTF-8
    (b"/%C3", INVALID),  # a truncated sequence at the end of the path
    (b"/%80", INVALID),  # a stray continuation byte
    (b"/%C3%28", INVALID),  # a lead byte followed by ASCII
    (b"/%C2%80", INVALID),  # C1 control U+0080 is restricted (reference 3.1)
    (b"/%C2%A0", "/\u00a0".encode()),  # U+00A0 is past the C1 range and allowed
]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_canonicalize(raw: bytes, expected: bytes | int) -> None:
    assert canonicalize(raw) == expected


# (raw path, segment max length, segment max count, expected)
LIMIT_CASES: list[tuple[bytes, int, int, bytes | int]] = [
    (b"/" + b"a" * 260, 260, 255, b"/" + b"a" * 260),  # exactly UrlSegmentMaxLength passes
    (b"/" + b"a" * 261, 260, 255, INVALID),  # one byte over the segment length limit
    (b"/" + b"a" * 261, 0, 255, b"/" + b"a" * 261),  # 0 means unlimited
    (b"/%41%42%43", 3, 0, b"/ABC"),  # the length counts decoded bytes, not escapes
    (b"/%41%42%43%44", 3, 0, INVALID),  # decoded length over the limit
    ("/ééé".encode(), 3, 0, "/ééé".encode()),  # lengths are characters, not bytes of UTF-8
    ("/éééé".encode(), 3, 0, INVALID),  # one character over
    ("/a😀".encode(), 3, 0, "/a😀".encode()),  # outside the BMP: two (UTF-16)
    ("/ab😀".encode(), 3, 0, INVALID),
    (b"/aaaa/../b", 3, 0, b"/b"),  # a segment removed by ".." does not count
    (b"/x" * 255, 260, 255, b"/x" * 255),  # exactly UrlSegmentMaxCount passes
    (b"/x" * 255 + b"/", 260, 255, b"/x" * 255 + b"/"),  # a trailing '/' adds no segment
    (b"/x" * 256, 260, 255, INVALID),  # one segment over the count limit
    (b"/x" * 256, 260, 0, b"/x" * 256),  # 0 means unlimited
    (b"/a//", 260, 1, INVALID),  # empty segments in the middle count
    (b"/a/b/..", 260, 1, b"/a/"),  # the count is taken after dot removal
]


@pytest.mark.parametrize(
    ("raw", "seg_len", "seg_count", "expected"),
    LIMIT_CASES,
    ids=[f"{c[0][:20]!r}-{c[1]}-{c[2]}" for c in LIMIT_CASES],
)
def test_segment_limits(raw: bytes, seg_len: int, seg_count: int, expected: bytes | int) -> None:
    assert canonicalize(raw, seg_len, seg_count) == expected


def test_output_capacity_is_checked() -> None:
    # The entry point refuses an output buffer smaller than len + 1 instead of overflowing it.
    out = ffi.new("char[]", 4)
    out_len = ffi.new("size_t *")
    rc = lib.hs_test_url_canonicalize(b"/abcd", 5, 260, 255, out, 4, out_len)
    assert rc == lib.HS_REJECT_INTERNAL


def test_result_is_nul_terminated() -> None:
    # Callers use the output as a C string; the NUL sits right after the canonical path.
    out = ffi.new("char[]", b"\xff" * 8)
    out_len = ffi.new("size_t *")
    assert lib.hs_test_url_canonicalize(b"/a/../b", 7, 260, 255, out, 8, out_len) == 0
    assert ffi.string(out) == b"/b" and out_len[0] == 2
