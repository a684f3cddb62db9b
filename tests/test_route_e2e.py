"""HTTP.sys URL-prefix routing over real TLS (reference sections 2.2-2.4, 3.2, 3.3).

Apps answer with their own name, SCRIPT_NAME and PATH_INFO, so every assertion is about which
app the request reached, as seen by the client.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

import httpsys
from clients import (
    BODY_INVALID_HOSTNAME,
    BODY_NOT_FOUND,
    ERROR_CONTENT_TYPE,
    https_get,
    parse_responses,
    raw_tls,
)

TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"]


def tag_app(name: str) -> Callable[..., list[bytes]]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = f"{name} {environ['SCRIPT_NAME']} {environ['PATH_INFO']}".encode("latin-1")
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    app.__name__ = f"app_{name}"
    return app


def reached(port: int, path: str, host: str, ip: str = "127.0.0.1", **kw: Any) -> str:
    """The name of the app that answered, or the status if no app did."""
    status, _, body = https_get(port, path, host=f"{host}:{port}", ip=ip, **kw)
    if status != 200:
        return str(status)
    return body.decode("latin-1").split(" ", 1)[0]


def raw_get(port: int, target: str, host: str, ca: str, ip: str = "127.0.0.1") -> bytes:
    """One GET sent byte for byte (http.client would not let us send every target), then close."""
    data = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1")
    return raw_tls(port, data, ca, ip=ip)


# ----------------------------------------------------------------------------------------------
# Precedence: strong wildcard > explicit host > IP-bound > weak wildcard


PRECEDENCE_APPS = {
    "https://+:{port}/vroot/": tag_app("plus"),
    "https://adatum.com:{port}/": tag_app("host"),
    "https://127.0.0.2:{port}/": tag_app("ip"),
    "https://*:{port}/": tag_app("star"),
}


@pytest.mark.parametrize(
    "host, ip, path, expected",
    [
        # Reference 2.3 worked example: + beats the explicit host even for that host.
        ("adatum.com", "127.0.0.1", "/vroot/subdir/file.htm", "plus"),
        ("adatum.com", "127.0.0.1", "/default.htm", "host"),
        ("otheradatum.com", "127.0.0.1", "/file.htm", "star"),
        # Explicit host beats IP-bound, even on the bound address.
        ("adatum.com", "127.0.0.2", "/default.htm", "host"),
        # IP-bound beats the weak wildcard, only on its own address.
        ("otheradatum.com", "127.0.0.2", "/file.htm", "ip"),
        ("localhost", "127.0.0.2", "/x", "ip"),
        ("localhost", "127.0.0.1", "/x", "star"),
        # The strong wildcard wins on every host and address.
        ("localhost", "127.0.0.2", "/vroot/", "plus"),
        ("otheradatum.com", "127.0.0.1", "/vroot/a/b", "plus"),
        # Host matching is case-insensitive.
        ("ADATUM.com", "127.0.0.1", "/default.htm", "host"),
    ],
)
def test_precedence_table(server, ca_file, host, ip, path, expected):
    run = server(PRECEDENCE_APPS)
    assert reached(run.port, path, host, ip, ca=ca_file) == expected


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_precedence_over_both_tls_versions(server, ca_file, tls_version):
    run = server(PRECEDENCE_APPS)
    got = [
        reached(run.port, "/vroot/f", "adatum.com", ca=ca_file, tls_version=tls_version),
        reached(run.port, "/f", "adatum.com", ca=ca_file, tls_version=tls_version),
        reached(run.port, "/f", "x.example", "127.0.0.2", ca=ca_file, tls_version=tls_version),
        reached(run.port, "/f", "x.example", ca=ca_file, tls_version=tls_version),
    ]
    assert got == ["plus", "host", "ip", "star"]


def test_first_class_with_a_match_wins_over_a_longer_path(server, ca_file):
    # The explicit host has the longer prefix, but the strong wildcard class is searched first.
    run = server(
        {
            "https://+:{port}/a/": tag_app("plus"),
            "https://adatum.com:{port}/a/b/": tag_app("host"),
        }
    )
    assert reached(run.port, "/a/b/c", "adatum.com", ca=ca_file) == "plus"
    assert reached(run.port, "/other", "adatum.com", ca=ca_file) == "404"


def test_weak_wildcard_only_when_nothing_else_matches(server, ca_file):
    run = server(
        {
            "https://adatum.com:{port}/app/": tag_app("host"),
            "https://*:{port}/": tag_app("star"),
        }
    )
    assert reached(run.port, "/app/x", "adatum.com", ca=ca_file) == "host"
    # A class ends the search only when one of its prefixes matches host and path: the explicit
    # host has no prefix for this path, so the weak wildcard gets it (reference 2.3, step 3).
    assert reached(run.port, "/elsewhere", "adatum.com", ca=ca_file) == "star"
    assert reached(run.port, "/elsewhere", "other.example", ca=ca_file) == "star"


# ----------------------------------------------------------------------------------------------
# Longest whole-segment path


@pytest.mark.parametrize(
    "path, expected, script_name, path_info",
    [
        ("/dir/sna/snadefault.htm", "Q2", "/dir/sna", "/snadefault.htm"),
        ("/dir/app.htm", "Q1", "", "/dir/app.htm"),
        ("/default.htm", "Q1", "", "/default.htm"),
        # Whole segments only: /dir/snake/ does not match the prefix /dir/sna/.
        ("/dir/snake/x", "Q1", "", "/dir/snake/x"),
        ("/dir/sna/deeper/x", "Q2", "/dir/sna", "/deeper/x"),
        # Path matching is case-insensitive.
        ("/DIR/SNA/x", "Q2", None, "/x"),
    ],
)
def test_longest_whole_segment_wins(server, ca_file, path, expected, script_name, path_info):
    run = server(
        {
            "https://www.adatum.com:{port}/": tag_app("Q1"),
            "https://www.adatum.com:{port}/dir/sna/": tag_app("Q2"),
        }
    )
    status, _, body = https_get(run.port, path, host=f"www.adatum.com:{run.port}", ca=ca_file)
    assert status == 200
    name, got_script, got_path = body.decode("latin-1").split(" ", 2)
    assert name == expected
    if script_name is not None:
        assert got_script == script_name
    else:
        assert got_script.lower() == "/dir/sna"
    assert got_path == path_info


# ----------------------------------------------------------------------------------------------
# Errors the listener answers itself (reference 3.3)


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_unknown_host_gives_400_invalid_hostname(server, ca_file, tls_version):
    run = server({"https://adatum.com:{port}/": tag_app("host")})
    status, headers, body = https_get(
        run.port, "/x", host=f"other.example:{run.port}", ca=ca_file, tls_version=tls_version
    )
    assert status == 400
    assert body == BODY_INVALID_HOSTNAME
    assert headers["Content-Type"] == ERROR_CONTENT_TYPE
    assert headers["Content-Length"] == str(len(BODY_INVALID_HOSTNAME))


def test_unknown_host_raw_bytes(server, ca_file):
    run = server({"https://adatum.com:{port}/": tag_app("host")})
    (resp,) = parse_responses(raw_get(run.port, "/", f"nobody.example:{run.port}", ca_file))
    assert resp.status == 400
    assert resp.raw_head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert resp.body == BODY_INVALID_HOSTNAME


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_known_host_unmatched_path_gives_404(server, ca_file, tls_version):
    run = server({"https://adatum.com:{port}/app/": tag_app("host")})
    status, headers, body = https_get(
        run.port, "/other/x", host=f"adatum.com:{run.port}", ca=ca_file, tls_version=tls_version
    )
    assert status == 404
    assert body == BODY_NOT_FOUND
    assert headers["Content-Type"] == ERROR_CONTENT_TYPE
    assert headers["Content-Length"] == str(len(BODY_NOT_FOUND))


def test_strong_wildcard_unmatched_path_gives_404(server, ca_file):
    run = server({"/api/": tag_app("api")})
    status, headers, body = https_get(run.port, "/nothing/here", ca=ca_file)
    assert status == 404
    assert body == BODY_NOT_FOUND
    assert headers["Content-Type"] == ERROR_CONTENT_TYPE


def test_404_keeps_the_connection_usable(server, ca_file):
    run = server({"/api/": tag_app("api")})
    data = (
        f"GET /nope HTTP/1.1\r\nHost: localhost:{run.port}\r\n\r\n"
        f"GET /api/x HTTP/1.1\r\nHost: localhost:{run.port}\r\nConnection: close\r\n\r\n"
    ).encode()
    responses = parse_responses(raw_tls(run.port, data, ca_file))
    assert [r.status for r in responses] == [404, 200]
    assert responses[0].body == BODY_NOT_FOUND
    assert responses[1].body == b"api /api /x"


# ----------------------------------------------------------------------------------------------
# Registration


def test_duplicate_add_app_raises_already_exists(server):
    run = server({"/api/": tag_app("one")})
    with pytest.raises(httpsys.AlreadyExistsError) as info:
        run.srv.add_app(f"https://+:{run.port}/api/", tag_app("two"))
    assert info.value.winerror == 183
    assert isinstance(info.value, httpsys.HttpsysError)


def test_duplicate_differs_only_in_case(server):
    run = server({"https://adatum.com:{port}/api/": tag_app("one")})
    with pytest.raises(httpsys.AlreadyExistsError) as info:
        run.srv.add_app(f"https://ADATUM.com:{run.port}/API/", tag_app("two"))
    assert info.value.winerror == 183


def test_same_path_in_other_classes_is_allowed(server, ca_file):
    run = server({"/api/": tag_app("plus")})
    run.srv.add_app(f"https://adatum.com:{run.port}/api/", tag_app("host"))
    run.srv.add_app(f"https://*:{run.port}/api/", tag_app("star"))
    run.srv.add_app(f"https://127.0.0.2:{run.port}/api/", tag_app("ip"))
    assert reached(run.port, "/api/x", "adatum.com", ca=ca_file) == "plus"


def test_duplicate_before_start(server):
    run = server(start=False)
    run.srv.add_app(f"https://+:{run.port}/api/", tag_app("one"))
    with pytest.raises(httpsys.AlreadyExistsError):
        run.srv.add_app(f"https://+:{run.port}/api/", tag_app("two"))


@pytest.mark.parametrize(
    "prefix",
    [
        "https://+:8443/api",  # the path must end with /
        "https://+/api/",  # no port
        "https://+:0/api/",  # port out of range
        "https://+:65536/api/",
        "https://+:08443/api/",  # leading zero
        "https://+:*/api/",  # the port is never a wildcard
        "HTTPS://+:8443/api/",  # scheme is lowercase only
        "ftp://+:8443/api/",
        "+:8443/api/",
        "",
    ],
)
def test_malformed_prefix_raises_invalid_parameter(server, prefix):
    run = server(start=False)
    with pytest.raises(httpsys.InvalidParameterError) as info:
        run.srv.add_app(prefix, tag_app("x"))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, httpsys.HttpsysError)


def test_remove_app_then_404(server, ca_file):
    run = server({"/api/": tag_app("api"), "/keep/": tag_app("keep")})
    assert reached(run.port, "/api/x", "localhost", ca=ca_file) == "api"
    run.srv.remove_app(f"https://+:{run.port}/api/")
    status, _, body = https_get(run.port, "/api/x", ca=ca_file)
    assert status == 404
    assert body == BODY_NOT_FOUND
    assert reached(run.port, "/keep/x", "localhost", ca=ca_file) == "keep"
    # The prefix is free again.
    run.srv.add_app(f"https://+:{run.port}/api/", tag_app("again"))
    assert reached(run.port, "/api/x", "localhost", ca=ca_file) == "again"


def test_remove_explicit_host_then_400(server, ca_file):
    run = server(
        {
            "https://adatum.com:{port}/": tag_app("adatum"),
            "https://contoso.com:{port}/": tag_app("contoso"),
        }
    )
    assert reached(run.port, "/x", "adatum.com", ca=ca_file) == "adatum"
    run.srv.remove_app(f"https://adatum.com:{run.port}/")
    status, _, body = https_get(run.port, "/x", host=f"adatum.com:{run.port}", ca=ca_file)
    assert status == 400
    assert body == BODY_INVALID_HOSTNAME
    assert reached(run.port, "/x", "contoso.com", ca=ca_file) == "contoso"


def test_remove_longer_prefix_falls_back_to_shorter(server, ca_file):
    run = server({"/": tag_app("root"), "/a/b/": tag_app("ab")})
    assert reached(run.port, "/a/b/c", "localhost", ca=ca_file) == "ab"
    run.srv.remove_app(f"https://+:{run.port}/a/b/")
    assert reached(run.port, "/a/b/c", "localhost", ca=ca_file) == "root"


# ----------------------------------------------------------------------------------------------
# Canonical paths (reference 3.2)


@pytest.mark.parametrize(
    "target, expected_app, expected_path_info",
    [
        ("/API/%2e%2e/api/x", "api", "/x"),
        ("/other/../api/x", "api", "/x"),
        ("/other/%2E%2E/api/x", "api", "/x"),
        ("/api/./x", "api", "/x"),
        ("/%61pi/x", "api", "/x"),
        ("/%41%50%49/x", "api", "/x"),
        ("/api/../other/y", "other", "/y"),
        ("/api/%2e%2e/other/y", "other", "/y"),
        ("/apix/y", "404", None),  # whole segments: /apix is not under /api/
    ],
)
def test_canonical_path_routing(server, ca_file, target, expected_app, expected_path_info):
    run = server({"/api/": tag_app("api"), "/other/": tag_app("other")})
    (resp,) = parse_responses(raw_get(run.port, target, f"localhost:{run.port}", ca_file))
    if expected_app == "404":
        assert resp.status == 404
        assert resp.body == BODY_NOT_FOUND
        return
    assert resp.status == 200, resp.body[:300]
    name, _, path_info = resp.body.decode("latin-1").split(" ", 2)
    assert name == expected_app
    assert path_info == expected_path_info
