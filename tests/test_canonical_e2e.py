"""Canonicalization and limits as HTTP.sys (reference 3.1-3.3), end to end: exact bytes over a
raw TLS socket, the exact status line and HTML body the core answers with, the close, no app
call for the bad request or for what was pipelined after it, and a good client served after."""

from __future__ import annotations

import pytest
from clients import https_get, parse_responses, raw_tls
from reject_e2e import Recorder, refused


def get(target: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    """A GET for target; {host} is replaced by the server's host:port."""
    return b"GET " + target + b" " + version + b"\r\nHost: {host}\r\n" + extra + b"\r\n"


# (id, request bytes, answer); each comment says which bug the case guards against
CASES = [
    # Percent-decoding happens before anything judges the path (reference 3.2).
    ("decoded-nul", get(b"/api/a%00b"), "URL"),  # a NUL would cut the path for C consumers
    ("decoded-ctl", get(b"/api/a%1fb"), "URL"),  # decoded U+0000-U+001F are restricted
    ("decoded-del", get(b"/api/a%7fb"), "URL"),  # so is U+007F
    ("decoded-c1", get(b"/api/a%c2%85b"), "URL"),  # and U+0080-U+009F (NEL here)
    ("bad-utf8", get(b"/api/%ff"), "URL"),  # not UTF-8 after decoding (EnableNonUTF8=0)
    ("raw-bad-utf8", get(b"/api/\xc3("), "URL"),  # raw bytes are judged the same way
    ("overlong-slash", get(b"/api/..%c0%af..%c0%afx"), "URL"),  # the IIS overlong '/' trick
    ("surrogate", get(b"/api/%ed%a0%80"), "URL"),  # a UTF-16 surrogate is not a character
    ("lone-surrogate", get(b"/api/%uD800"), "URL"),  # %uNNNN must make a character
    ("percent-u-dotdot", get(b"/%u002e%u002e/api/"), "URL"),  # %u dots climb no higher
    ("bad-escape", get(b"/api/%zz"), "URL"),  # a '%' without two hex digits
    ("cut-escape", get(b"/api/%4"), "URL"),  # an escape cut at the end of the path
    # Dot segments are removed; climbing above the root is refused, however it is spelt.
    ("above-root", get(b"/../api/"), "URL"),
    ("above-root-deep", get(b"/api/../../api/"), "URL"),
    ("above-root-escaped", get(b"/%2e%2e/api/"), "URL"),
    ("above-root-2f", get(b"/api/..%2f..%2fapi/"), "URL"),  # %2F separates segments too
    ("above-root-backslash", get(b"/api\\..\\..\\api/"), "URL"),  # '\' is '/'
    ("above-root-5c", get(b"/api%5c..%5c..%5capi/"), "URL"),  # and so is %5C
    # UrlSegmentMaxLength (260) and UrlSegmentMaxCount (255) on the canonical path.
    ("segment-261", get(b"/api/" + b"s" * 261), "URL"),
    ("segment-261-escaped", get(b"/api/" + b"%73" * 261), "URL"),  # counted after decoding
    ("segments-256", get(b"/api" + b"/s" * 255), "URL"),
    # MaxFieldLength bounds the URL (414) and each header (400 Request Too Long).
    ("url-too-long", get(b"/api/" + b"u" * 16400), "URL_Length"),
    ("header-too-long", get(b"/api/", b"X-Big: " + b"h" * 16400 + b"\r\n"), "TooLong"),
    ("head-too-long", get(b"/api/", b"".join(b"X-%d: %s\r\n" % (i, b"h" * 8000) for i in range(3))),
     "TooLong"),
    # Invalid headers and verbs.
    ("header-name-space", get(b"/api/", b"Bad Name: x\r\n"), "Header"),
    ("header-no-colon", get(b"/api/", b"NoColon\r\n"), "Header"),
    ("header-separator", get(b"/api/", b"X(y): x\r\n"), "Header"),
    ("header-value-nul", get(b"/api/", b"X: a\x00b\r\n"), "Header"),
    ("header-value-ctl", get(b"/api/", b"X: a\x01b\r\n"), "Header"),
    ("two-hosts", get(b"/api/", b"Host: {host}\r\n"), "Header"),
    ("verb-lower", b"get /api/ HTTP/1.1\r\nHost: {host}\r\n\r\n", "Verb"),
    ("verb-separator", b"G(T /api/ HTTP/1.1\r\nHost: {host}\r\n\r\n", "Verb"),
    ("verb-nul", b"GE\x00T /api/ HTTP/1.1\r\nHost: {host}\r\n\r\n", "Verb"),
    # A method that carries content needs its length (411).
    ("post-no-length", b"POST /api/ HTTP/1.1\r\nHost: {host}\r\n\r\n", "LengthRequired"),
    ("put-no-length", b"PUT /api/ HTTP/1.1\r\nHost: {host}\r\n\r\n", "LengthRequired"),
    ("post-10-no-length", b"POST /api/ HTTP/1.0\r\n\r\n", "LengthRequired"),
    # HTTP/2.0 and later on the HTTP/1 path (505).
    ("http-2.0", get(b"/api/", version=b"HTTP/2.0"), "Version_N/S"),
    ("http-3.0", get(b"/api/", version=b"HTTP/3.0"), "Version_N/S"),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "Version_N/S"),
    # Transfer codings other than chunked (501).
    ("te-gzip", b"POST /api/ HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\n", "N/I"),
    ("te-chunked-gzip",
     b"POST /api/ HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "N/I"),
    ("no-host", b"GET /api/ HTTP/1.1\r\n\r\n", "Hostname"),  # HTTP/1.1 needs a Host
    # Everything else malformed gets the generic page.
    ("http-0.9", b"GET /api/\r\n\r\n", "BadRequest"),
    ("bad-content-length", get(b"/api/", b"Content-Length: 1x\r\n"), "BadRequest"),
]


@pytest.mark.parametrize("data, answer", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_httpsys_answer(server, ca_file, data, answer):
    app = Recorder()
    run = server({"/api/": app})
    data = data.replace(b"{host}", f"localhost:{run.port}".encode())
    refused(run.port, ca_file, data, answer, app)


@pytest.mark.parametrize("tls_version", ["TLSv1.2", "TLSv1.3"])
def test_refused_over_both_tls_versions(server, ca_file, tls_version):
    app = Recorder()
    run = server({"/api/": app})
    refused(run.port, ca_file, get(b"/%2e%2e/api/").replace(b"{host}", b"localhost"), "URL", app,
            tls_version=tls_version)


# (raw target, PATH_INFO the app sees): routing and the app use the canonical path, and
# RAW_URI keeps the target as sent
SERVED = [
    ("/api/%7Euser/./a/../b%2Fc?q=%2e%2e", "/~user/b/c"),
    ("/API/x", "/x"),  # prefixes match case-insensitively
    ("/other/../api/x", "/x"),  # dot segments are resolved before routing
    ("/api\\x\\y", "/x/y"),  # '\' is '/' for routing too
    ("/api/a//b/", "/a//b/"),  # empty segments are kept
    ("/api/%u0041%uD83D%uDE00", "/A\U0001f600"),  # HTTP.sys's %uNNNN, a surrogate pair too
    ("/api/caf%C3%A9", "/caf\u00e9"),  # UTF-8 decoded (PATH_INFO is its latin-1 view in WSGI)
    ("/api/" + "s" * 260, "/" + "s" * 260),  # UrlSegmentMaxLength is inclusive
    ("/api/" + "%C3%A9" * 260, "/" + "\u00e9" * 260),  # and counts characters, not bytes
    ("/api" + "/s" * 254, "/s" * 254),  # 255 segments with "api"
    ("/api/x/y/..", "/x/"),  # a final ".." leaves the trailing '/'
]


@pytest.mark.parametrize("target, path_info", SERVED, ids=[t[:40] for t, _ in SERVED])
def test_app_sees_canonical_and_raw_path(server, ca_file, target, path_info):
    app = Recorder()
    run = server({"/api/": app})
    data = f"GET {target} HTTP/1.1\r\nHost: localhost:{run.port}\r\nConnection: close\r\n\r\n"
    (resp,) = parse_responses(raw_tls(run.port, data.encode(), ca_file))
    assert resp.status == 200, resp.body[:300]
    expected = path_info.encode("utf-8").decode("latin-1")
    assert resp.body.decode("latin-1") == f"{expected} {target}"
    assert app.seen == [target]


def test_segment_limits_per_server(server, ca_file):
    app = Recorder()
    run = server({"/api/": app}, limits={"UrlSegmentMaxLength": 0, "UrlSegmentMaxCount": 0})
    # 0 means no limit (reference 3.1).
    long_path = "/api/" + "s" * 2000 + "/s" * 600
    assert https_get(run.port, long_path, ca=ca_file)[0] == 200
