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
