"""The pure parts of the ASGI adapter: build_scope from an environ block, the TLS extension,
interface detection and the response head (no sockets)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from httpsys import InvalidParameterError
from httpsys.asgi import build_scope, detect_interface, response_head


def block(*pairs: str) -> bytes:
    return "".join(p + "\0" for p in pairs).encode("latin-1")


FIXED = ("REQUEST_METHOD", "POST", "SCRIPT_NAME", "/api", "PATH_INFO", "/a b",
         "QUERY_STRING", "x=%20&y", "SERVER_PROTOCOL", "HTTP/1.1", "REMOTE_ADDR", "127.0.0.9",
         "REMOTE_PORT", "5555", "SERVER_NAME", "example.test", "SERVER_PORT", "8443",
         "RAW_URI", "/api/a%20b?x=%20&y", "wsgi.url_scheme", "https")


def test_scope_of_a_tls_request() -> None:
    raw = block(*FIXED, "HTTP_HOST", "example.test:8443", "CONTENT_TYPE", "text/plain",
                "CONTENT_LENGTH", "3", "HTTP_X_MULTI", "a, b",
                "HTTPS", "on", "SSL_PROTOCOL", "TLSv1.3", "SSL_CIPHER", "TLS_AES_128_GCM_SHA256",
                "SSL_CLIENT_VERIFY", "NONE", "httpsys.client_cert_error", "0",
                "SERVER_ADDR", "127.0.0.1", "httpsys.cipher_suite", "4865",
                "httpsys.server_cert", "AB" * 20)
    scope = build_scope(raw, {"AB" * 20: "PEM"}, {"db": 1})
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/api/a b",
        "raw_path": b"/api/a%20b",
        "query_string": b"x=%20&y",
        "root_path": "/api",
        "headers": [(b"host", b"example.test:8443"), (b"content-type", b"text/plain"),
                    (b"content-length", b"3"), (b"x-multi", b"a, b")],
        "client": ("127.0.0.9", 5555),
        "server": ("127.0.0.1", 8443),
        "state": {"db": 1},
        "extensions": {"tls": {"server_cert": "PEM", "client_cert_chain": (),
                               "client_cert_name": None, "client_cert_error": None,
                               "tls_version": 0x0304, "cipher_suite": 0x1301}},
    }


def test_plain_http_has_no_tls_extension_and_utf8_paths() -> None:
    pairs = list(FIXED)
    pairs[pairs.index("wsgi.url_scheme") + 1] = "http"
    pairs[pairs.index("PATH_INFO") + 1] = "/é".encode().decode("latin-1")  # C gives UTF-8 bytes
    pairs[pairs.index("SERVER_PROTOCOL") + 1] = "HTTP/1.0"
    scope = build_scope(block(*pairs, "SERVER_ADDR", "10.0.0.1"))
    assert "extensions" not in scope and "state" not in scope
    assert scope["scheme"] == "http" and scope["http_version"] == "1.0"
    assert scope["path"] == "/api/é" and scope["headers"] == []
    assert scope["server"] == ("10.0.0.1", 8443)


def test_absolute_form_target_gives_the_path_as_raw_path() -> None:
    pairs = list(FIXED)
    pairs[pairs.index("RAW_URI") + 1] = "https://example.test:8443/api/x?q"
    assert build_scope(block(*pairs))["raw_path"] == b"/api/x"


def test_tls_extension_with_a_client_certificate_chain_and_an_error() -> None:
    raw = block(*FIXED, "HTTPS", "on", "SSL_PROTOCOL", "TLSv1.2",
                "SSL_CLIENT_VERIFY", "FAILED:certificate has expired",
                "httpsys.client_cert_error", "2148204801", "SSL_CLIENT_CERT", "LEAF",
                "SSL_CLIENT_S_DN", "CN=alice,O=test", "SSL_CLIENT_CERT_CHAIN_0", "INTER",
                "SSL_CLIENT_CERT_CHAIN_1", "ROOT", "httpsys.cipher_suite", "49195")
    tls = build_scope(raw)["extensions"]["tls"]
    assert tls == {"server_cert": None, "client_cert_chain": ("LEAF", "INTER", "ROOT"),
                   "client_cert_name": "CN=alice,O=test",
                   "client_cert_error": "certificate has expired",
                   "tls_version": 0x0303, "cipher_suite": 0xC02B}


async def asgi3(scope: Any, receive: Any, send: Any) -> None:
    pass


async def two(scope: Any, receive: Any) -> None:
    pass


def wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


class AsgiObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class WsgiObject:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


def test_detect_interface() -> None:
    assert detect_interface(asgi3) == "asgi"
    assert detect_interface(AsgiObject()) == "asgi"
    assert detect_interface(functools.partial(asgi3)) == "asgi"
    assert detect_interface(wsgi) == "wsgi"
    assert detect_interface(WsgiObject()) == "wsgi"
    with pytest.raises(InvalidParameterError) as e:
        detect_interface(two)
    assert e.value.param == "interface"
    with pytest.raises(InvalidParameterError):
        detect_interface("not an app")


def test_response_head() -> None:
    head, length = response_head(201, [(b"content-type", b"text/plain"), (b"Content-Length", b"5")])
    assert head == b"201 Created\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n"
    assert length == 5
    assert response_head(299, [])[0] == b"299 Unknown\r\n"


@pytest.mark.parametrize("status, headers", [
    (200, [(b"x", b"a\r\nSet-Cookie: evil")]),  # a value that would split the response
    (200, [(b"bad name", b"v")]),
    (200, [(b"x:y", b"v")]),
    ("200", []),
    (42, []),
])
def test_response_head_refuses_what_would_corrupt_the_response(status: Any, headers: Any) -> None:
    with pytest.raises(ValueError):
        response_head(status, headers)


def test_response_head_wants_bytes() -> None:
    with pytest.raises(TypeError):
        response_head(200, [("content-type", "text/plain")])


def test_connection_facts_are_cached_but_each_scope_has_its_own_extension() -> None:
    raw = block(*FIXED, "HTTP_HOST", "h", "HTTPS", "on", "SSL_PROTOCOL", "TLSv1.3",
                "SERVER_ADDR", "127.0.0.1", "httpsys.cipher_suite", "4865")
    cache: dict[bytes, Any] = {}
    one, two = build_scope(raw, cache=cache), build_scope(raw, cache=cache)
    assert len(cache) == 1 and one == two
    one["extensions"]["tls"]["tls_version"] = 0
    assert two["extensions"]["tls"]["tls_version"] == 0x0304
    assert build_scope(raw, cache=cache)["extensions"]["tls"]["tls_version"] == 0x0304


def test_headers_cannot_pose_as_the_pairs_after_them() -> None:
    # build_scope splits only up to HTTPS (TLS) or the last SERVER_ADDR (plain HTTP): header
    # values that spell those keys stay headers, and the connection facts stay the core's.
    cache: dict[bytes, Any] = {}
    plain = list(FIXED)
    plain[plain.index("wsgi.url_scheme") + 1] = "http"
    raw = block(*plain, "HTTP_X_A", "SERVER_ADDR", "HTTP_X_B", "6.6.6.6",
                "SERVER_ADDR", "10.0.0.1")
    for _ in range(2):
        scope = build_scope(raw, cache=cache)
        assert scope["headers"] == [(b"x-a", b"SERVER_ADDR"), (b"x-b", b"6.6.6.6")]
        assert scope["server"] == ("10.0.0.1", 8443) and "extensions" not in scope
    raw = block(*FIXED, "HTTP_X_A", "HTTPS", "HTTP_ON", "on", "HTTPS", "on",
                "SSL_PROTOCOL", "TLSv1.2", "SERVER_ADDR", "127.0.0.1")
    for _ in range(2):
        scope = build_scope(raw, cache=cache)
        assert scope["headers"] == [(b"x-a", b"HTTPS"), (b"on", b"on")]
        assert scope["extensions"]["tls"]["tls_version"] == 0x0303
    # Without either (not a block of an ASGI queue), all of it is split as before.
    scope = build_scope(block(*FIXED, "HTTP_HOST", "h", "SSL_PROTOCOL", "TLSv1.3"), cache=cache)
    assert scope["headers"] == [(b"host", b"h")] and scope["server"] == ("example.test", 8443)
    assert "extensions" not in scope and len(cache) == 3


def test_response_heads_are_cached_and_generators_work() -> None:
    headers = ((b"content-type", b"text/plain"),)
    assert response_head(200, headers) is response_head(200, headers)
    assert response_head(200, (h for h in headers))[0] == b"200 OK\r\ncontent-type: text/plain\r\n"
    assert response_head(200, [[b"x", b"1"]])[0] == b"200 OK\r\nx: 1\r\n"
    with pytest.raises(ValueError):
        response_head(200.0, headers)
