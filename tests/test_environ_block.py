"""wsgi.build_environ splits the C environ block in one pass (pure, no sockets)."""

from __future__ import annotations

import io

from httpsys import wsgi


def block(*pairs: str) -> bytes:
    return "".join(p + "\0" for p in pairs).encode("latin-1")


def test_pairs_and_base() -> None:
    raw = block("REQUEST_METHOD", "GET", "SCRIPT_NAME", "/api", "PATH_INFO", "/x",
                "HTTP_X_NAME", "caf\xe9")
    env = wsgi.build_environ(raw, {"wsgi.version": (1, 0)})
    assert env == {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/api", "PATH_INFO": "/x",
                   "HTTP_X_NAME": "caf\xe9", "wsgi.version": (1, 0)}


def test_empty_values_survive() -> None:
    env = wsgi.build_environ(block("QUERY_STRING", "", "SCRIPT_NAME", ""), {})
    assert env == {"QUERY_STRING": "", "SCRIPT_NAME": ""}


def test_no_body_input_behaves_like_an_empty_file() -> None:
    nobody = wsgi._NO_BODY
    empty = io.BytesIO(b"")
    assert nobody.read() == empty.read() == b""
    assert nobody.readline() == b""
    assert nobody.readlines() == []
    assert list(nobody) == []


def c_environ(head: bytes, script_len: int = 0, tls: int = 1) -> tuple[int, dict[str, str]]:
    """hs_test_environ_build: the C half of the environ for one request head."""
    from httpsys._native import ffi, lib

    out, outlen = ffi.new("char[]", 1 << 16), ffi.new("size_t *")
    rc = lib.hs_test_environ_build(head, len(head), script_len, tls, 3, out, 1 << 16, outlen)
    return rc, wsgi.build_environ(ffi.unpack(out, outlen[0]), {})


def test_c_half_lays_out_headers_and_path() -> None:
    rc, env = c_environ(b"POST /api/items/7?x=1&y=2 HTTP/1.1\r\nHost: example.com:8443\r\n"
                        b"Content-Type: text/plain\r\nContent-Length: 0\r\nX-Tag: a\r\n"
                        b"x-tag: b\r\nX_Bad: no\r\nProxy: evil\r\n\r\n", script_len=4)
    assert rc == 0
    assert (env["REQUEST_METHOD"], env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == \
        ("POST", "/api", "/items/7", "x=1&y=2")
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"], env["HTTP_X_TAG"]) == ("text/plain", "0", "a, b")
    assert "HTTP_X_BAD" not in env and "HTTP_PROXY" not in env and "HTTP_CONTENT_TYPE" not in env
    assert (env["HTTPS"], env["SSL_PROTOCOL"], env["wsgi.url_scheme"]) == ("on", "TLSv1.3", "https")
    assert env["RAW_URI"] == "/api/items/7?x=1&y=2" and env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_c_half_plain_and_bad_heads() -> None:
    rc, env = c_environ(b"GET / HTTP/1.0\r\n\r\n", tls=0)
    assert rc == 0 and env["wsgi.url_scheme"] == "http" and "HTTPS" not in env
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0" and env["PATH_INFO"] == "/"
    assert c_environ(b"GET / HTTP/1.1\r\nHost: a\r\n")[0] == -2          # HS_AGAIN: incomplete
    assert c_environ(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")[0] > 0  # a reject code
