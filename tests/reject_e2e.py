"""Shared by test_canonical_e2e.py and test_smuggling.py: a WSGI app that records every request
it is given, and the check that a raw request got exactly one HTTP.sys answer, then the close,
with nothing after it, and that the request and everything pipelined behind it stayed away from
the app."""

from __future__ import annotations

import threading
from typing import Any

from clients import (
    BODY_INVALID_HOSTNAME,
    BODY_INVALID_URL,
    BODY_NOT_FOUND,
    BODY_TOO_LONG,
    BODY_URL_TOO_LONG,
    ERROR_CONTENT_TYPE,
    Response,
    error_body,
    https_get,
    parse_responses,
    raw_tls,
)

BODY_BAD_REQUEST = error_body(400, "Bad Request", "The request is badly formed.")
BODY_INVALID_HEADER = error_body(
    400, "Bad Request - Invalid Header", "The request has an invalid header name."
)
BODY_INVALID_VERB = error_body(400, "Bad Request - Invalid Verb", "The request verb is invalid.")
BODY_LENGTH_REQUIRED = error_body(
    411, "Length Required", "The request must be chunked or have a content length."
)
BODY_NOT_IMPLEMENTED = error_body(
    501, "Not Implemented", "The request could not be handled by the server."
)
BODY_VERSION = error_body(
    505, "HTTP Version Not Supported", "The HTTP version of the request is not supported."
)

# HTTPERR-style name -> (status line, body) of each answer the tests expect
ANSWERS = {
    "BadRequest": ("HTTP/1.1 400 Bad Request", BODY_BAD_REQUEST),
    "Hostname": ("HTTP/1.1 400 Bad Request", BODY_INVALID_HOSTNAME),
    "URL": ("HTTP/1.1 400 Bad Request", BODY_INVALID_URL),
    "Header": ("HTTP/1.1 400 Bad Request", BODY_INVALID_HEADER),
    "Verb": ("HTTP/1.1 400 Bad Request", BODY_INVALID_VERB),
    "TooLong": ("HTTP/1.1 400 Bad Request", BODY_TOO_LONG),
    "NotFound": ("HTTP/1.1 404 Not Found", BODY_NOT_FOUND),
    "LengthRequired": ("HTTP/1.1 411 Length Required", BODY_LENGTH_REQUIRED),
    "URL_Length": ("HTTP/1.1 414 Request URL Too Long", BODY_URL_TOO_LONG),
    "N/I": ("HTTP/1.1 501 Not Implemented", BODY_NOT_IMPLEMENTED),
    "Version_N/S": ("HTTP/1.1 505 HTTP Version Not Supported", BODY_VERSION),
}


class Recorder:
    """A WSGI app that reads the body, answers 200 with "PATH_INFO RAW_URI" and remembers each
    RAW_URI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            self._seen.append(environ["RAW_URI"])
        # The body first: a framing error in it is then found before the response can start.
        environ["wsgi.input"].read()
        body = f"{environ['PATH_INFO']} {environ['RAW_URI']}".encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    @property
    def seen(self) -> list[str]:
        with self._lock:
            return list(self._seen)


def follow_up(port: int) -> bytes:
    """A valid request pipelined in the same write after a bad one: it must never reach the app,
    because the listener cannot know where the bad request ends and closes the connection."""
    return f"GET /api/after HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()


def assert_answer(raw: bytes, answer: str) -> Response:
    """raw is everything the connection delivered up to its close: exactly one canned answer."""
    status_line, body = ANSWERS[answer]
    responses = parse_responses(raw)
    assert len(responses) == 1, f"expected one response then the close: {raw[:400]!r}"
    (resp,) = responses
    assert resp.raw_head.split(b"\r\n", 1)[0].decode("latin-1") == status_line
    assert resp.body == body, resp.body
    assert raw == resp.raw_head + resp.body, "bytes after the answer"
    assert resp.header("Content-Type") == ERROR_CONTENT_TYPE
    assert resp.header("Content-Length") == str(len(body))
    assert resp.header("Connection") == "close"
    return resp


def refused(port: int, ca_file: str, data: bytes, answer: str, app: Recorder,
            tls_version: str | None = None, head_ok: bool = False) -> None:
    """Sends data and a pipelined good request in one write; checks the one answer, that the app
    saw neither (the bad one may reach it when head_ok: its head is fine and its body is not),
    and that a good client is served afterwards."""
    raw = raw_tls(port, data + follow_up(port), ca_file, tls_version=tls_version, timeout=10)
    assert_answer(raw, answer)
    assert "/api/after" not in app.seen
    if not head_ok:
        assert app.seen == []
    status, _, got = https_get(port, "/api/good", ca=ca_file)
    assert (status, got) == (200, b"/good /api/good")
    # (With head_ok, a worker may take the bad request only now: its connection is gone by
    # then, so whatever the app does with it goes nowhere.)
    assert app.seen.count("/api/good") == 1
    assert "/api/after" not in app.seen
