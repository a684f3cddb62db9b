"""Request smuggling and framing, end to end: every request whose length two parsers could read
differently gets 400 and the close, and nothing pipelined behind it is ever processed (issue 7;
RFC 9112 sections 5, 6 and 7.1; reference 3.3)."""

from __future__ import annotations

import pytest
from clients import parse_responses, raw_tls
from reject_e2e import Recorder, assert_answer, follow_up, refused


def post(headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /api/ " + version + b"\r\nHost: {host}\r\n" + headers + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"

# (id, request bytes, answer, whether the head is fine so the request may reach the app before
# its body turns out to be broken); each comment says which bug the case guards against
CASES = [
    # CL.TE and TE.CL: a front end honouring the other header would see a different request.
    ("cl-te", post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\nG"), "BadRequest", False),
    ("te-cl", post(CHUNKED + b"Content-Length: 6\r\n", b"0\r\n\r\nG"), "BadRequest", False),
    ("cl-te-unknown-coding", post(b"Content-Length: 3\r\nTransfer-Encoding: x\r\n", b"abc"),
     "BadRequest", False),
    ("te-http10", post(CHUNKED, b"0\r\n\r\n", version=b"HTTP/1.0"), "BadRequest", False),
    # Two lengths: which one a proxy picks decides where the next request starts.
    ("cl-conflict", post(b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"), "Header", False),
    ("cl-list-conflict", post(b"Content-Length: 3, 4\r\n", b"abcd"), "Header", False),
    # obs-fold: "X: a\r\n Transfer-Encoding: chunked" is a header to some parsers, not to others.
    ("obs-fold", post(b"Content-Length: 4\r\nX: a\r\n Transfer-Encoding: chunked\r\n", b"abcd"),
     "Header", False),
    ("obs-fold-tab", post(b"Content-Length: 4\r\nX: a\r\n\tmore\r\n", b"abcd"), "Header", False),
    # Whitespace before the colon: "Transfer-Encoding : chunked" is ignored by some, honoured by
    # others (RFC 9112 5.1 says reject).
    ("space-before-colon", post(b"Content-Length: 4\r\nTransfer-Encoding : chunked\r\n", b"abcd"),
     "Header", False),
    ("tab-before-colon", post(b"Content-Length\t: 4\r\n", b"abcd"), "Header", False),
    # A bare CR is a line end to some parsers and a byte to others.
    ("bare-cr-header", post(b"Content-Length: 4\rX: y\r\n", b"abcd"), "BadRequest", False),
    ("bare-cr-request-line", b"GET /api/\r HTTP/1.1\r\nHost: {host}\r\n\r\n", "BadRequest", False),
    ("bare-cr-header-end", b"GET /api/ HTTP/1.1\r\nHost: {host}\r\r\n\r\n", "BadRequest", False),
    # Chunk framing: the head is fine, the body is not.
    ("chunk-size-overflow", post(CHUNKED, b"10000000000000001\r\nG\r\n0\r\n\r\n"), "BadRequest",
     True),
    ("chunk-size-16-digits", post(CHUNKED, b"0000000000000001\r\nG\r\n0\r\n\r\n"), "BadRequest",
     True),
    ("chunk-size-not-hex", post(CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n"), "BadRequest", True),
    ("chunk-bare-cr", post(CHUNKED, b"3\rabc\r\n0\r\n\r\n"), "BadRequest", True),
    ("chunk-too-long", post(CHUNKED, b"3\r\nabcdef\r\n0\r\n\r\n"), "BadRequest", True),
]


@pytest.mark.parametrize("data, answer, head_ok", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_and_closed(server, ca_file, data, answer, head_ok):
    app = Recorder()
    run = server({"/api/": app})
    data = data.replace(b"{host}", f"localhost:{run.port}".encode())
    refused(run.port, ca_file, data, answer, app, head_ok=head_ok)
    # The broken request itself is never answered by the app.
    assert app.seen.count("/api/") <= (1 if head_ok else 0)


@pytest.mark.parametrize("tls_version", ["TLSv1.2", "TLSv1.3"])
def test_good_then_bad_then_good_in_one_write(server, ca_file, tls_version):
    """The request before the bad one is served; the one after it never reaches the app."""
    app = Recorder()
    run = server({"/api/": app})
    host = f"localhost:{run.port}".encode()
    data = (b"GET /api/first HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
            + b"POST /api/ HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 6\r\n" + CHUNKED
            + b"\r\n0\r\n\r\nG" + follow_up(run.port))
    raw = raw_tls(run.port, data, ca_file, tls_version=tls_version, timeout=10)
    first, *rest = parse_responses(raw)
    assert (first.status, first.body) == (200, b"/first /api/first")
    assert_answer(raw[len(first.raw_head) + len(first.body):], "BadRequest")
    assert len(rest) == 1
    assert app.seen == ["/api/first"]



@pytest.mark.parametrize(
    "target, host, answer",
    [("/nothere/", "localhost:{port}", "NotFound"), ("/api/", "unknown.example", "Hostname"),
     ("/%2e%2e/api/", "localhost:{port}", "URL")],
    ids=["404", "invalid-hostname", "invalid-url"],
)
def test_body_of_a_refused_request_is_never_read_as_a_request(server, ca_file, target, host, answer):
    """A request refused after its head was parsed (no route, bad URL) still has its body on the
    wire. Read as a head, a body that spells a request would be served: the core must close
    instead (a 404 keeps the connection only when there is no body)."""
    app = Recorder()
    run = server({"https://localhost:{port}/api/": app})  # explicit host: others are not routed
    inner = f"GET /api/smuggled HTTP/1.1\r\nHost: localhost:{run.port}\r\n\r\n".encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: {host.format(port=run.port)}\r\n"
            f"Content-Length: {len(inner)}\r\n\r\n").encode()
    raw = raw_tls(run.port, head + inner + follow_up(run.port), ca_file, timeout=10)
    assert_answer(raw, answer)
    assert app.seen == []
