"""Client-certificate mapping (IIS one-to-one and many-to-one) on SslMapCert prefixes: REMOTE_USER
from the core, 403.12 for a Deny or no match, live changes (issue 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import clients
import pytest
from mtls_pki import MtlsPKI
from test_client_certs import bind, fetch, show_cert

from httpsys.certmapping import ManyToOne, OneToOne, Rule
from httpsys.errors import InvalidParameterError

MAP = "Ssl,SslNegotiateCert,SslMapCert"
BODY_403_12 = b"HTTP Error 403.12. The client certificate mapping denied access to this resource."


def who(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"user": environ.get("REMOTE_USER"), "auth": environ.get("AUTH_TYPE")}).encode()]


def start(server: Callable[..., Any], mtls: MtlsPKI, mappings: list[Any]) -> Any:
    run = server(cert=None)
    bind(run, mtls)
    run.srv.set_certmappings(mappings)
    run.srv.add_app(f"https://+:{run.port}/map/", who, ssl_flags=MAP)
    run.srv.add_app(f"https://+:{run.port}/plain/", who, ssl_flags="Ssl,SslNegotiateCert")
    return run


def user_of(run: Any, mtls: MtlsPKI, cert: Any, path: str = "/map/") -> Any:
    resp = fetch(run.port, path, mtls.client_context(cert))
    if resp.status == 403:
        assert BODY_403_12 in resp.body, resp.body
        return 403
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_one_to_one_is_an_exact_certificate(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, [OneToOne(mtls.client.der, "alice")])
    assert user_of(run, mtls, mtls.client) == {"user": "alice", "auth": "SSL/PCT"}
    # Same issuer and fields but another certificate: no match.
    assert user_of(run, mtls, mtls.make_client("client_reissued")) == 403
    # A prefix without SslMapCert never sees REMOTE_USER.
    assert user_of(run, mtls, mtls.client, "/plain/") == {"user": None, "auth": None}


def test_many_to_one_rules_wildcards_case_and_order(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    subject_o = mtls.client.cert.subject.rfc4514_string()  # CN=...,O=httpsys mtls tests
    assert "O=httpsys mtls tests" in subject_o
    mappings = [
        ManyToOne("deny-revoked-name", "", (Rule("Subject", "CN", "*revoked*"),), permission="Deny"),
        ManyToOne("tests", "testers", (Rule("Subject", "O", "HTTPSYS MTLS *"),
                                       Rule("Issuer", "CN", "*intermediate*")), case_sensitive=False),
        ManyToOne("everyone", "guest", (Rule("Subject", "CN", "*"),)),
    ]
    run = start(server, mtls, mappings)
    assert user_of(run, mtls, mtls.client)["user"] == "testers"
    wrong_case = start(server, mtls, [ManyToOne("tests", "testers", (Rule("Subject", "O", "HTTPSYS MTLS *"),))])
    assert user_of(wrong_case, mtls, mtls.client) == 403  # case-sensitive by default


def test_deny_and_no_match_are_403_12(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    cn = mtls.client.cert.subject.rfc4514_string().split(",")[0].split("=", 1)[1]
    run = start(server, mtls, [ManyToOne("deny", "", (Rule("Subject", "CN", cn),), permission="Deny"),
                               ManyToOne("all", "guest", (Rule("Subject", "CN", "*"),))])
    assert user_of(run, mtls, mtls.client) == 403
    assert user_of(run, mtls, mtls.make_client("someone_else"))["user"] == "guest"
    empty = start(server, mtls, [])
    assert user_of(empty, mtls, mtls.client) == 403
    assert user_of(empty, mtls, None) == 403  # no certificate, nothing to map


def test_invalid_certificates_are_never_mapped(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, [ManyToOne("all", "guest", (Rule("Subject", "CN", "*"),))])
    for cert, sub in ((mtls.foreign, 16), (mtls.revoked, 13), (mtls.expired, 17)):
        resp = fetch(run.port, "/map/", mtls.client_context(cert))
        assert resp.status == 403 and f"HTTP Error 403.{sub}. ".encode() in resp.body


def test_mappings_change_live_on_an_open_connection(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, [OneToOne(mtls.client.der, "alice")])
    with clients.tls_socket(run.port, context=mtls.client_context(mtls.client)) as sock:
        buf = bytearray()

        def ask() -> Any:
            sock.sendall(b"GET /map/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            resp = clients.read_response(sock, buf)
            return json.loads(resp.body)["user"] if resp.status == 200 else resp.status

        assert ask() == "alice"
        run.srv.set_certmappings([OneToOne(mtls.client.der, "bob")])
        assert ask() == "bob"
        run.srv.set_certmappings([])
        assert ask() == 403


@pytest.mark.parametrize("mapping, param", [
    (ManyToOne("x", "u", (Rule("Subject", "XX", "a"),)), "certificateSubField"),
    (ManyToOne("x", "u", (Rule("Body", "CN", "a"),)), "certificateField"),
    (ManyToOne("x", "u", ()), "rules"),
    (ManyToOne("x", "u", (Rule("Subject", "CN", "a\tb"),)), "matchCriteria"),
    (ManyToOne("x", "u", (Rule("Subject", "CN", "a"),), permission="Maybe"), "permissionMode"),
    (OneToOne(b"", "u"), "certificate"),
    (OneToOne(b"\x30\x00", ""), "userName"),
])
def test_bad_mappings_are_refused_naming_the_field(server: Callable[..., Any], mtls: MtlsPKI,
                                                   mapping: Any, param: str) -> None:
    run = start(server, mtls, [OneToOne(mtls.client.der, "alice")])
    with pytest.raises(InvalidParameterError) as exc:
        run.srv.set_certmappings([mapping])
    assert exc.value.param == param
    assert user_of(run, mtls, mtls.client)["user"] == "alice"  # the old set stays


def test_show_cert_app_is_unaffected(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, [])
    run.srv.add_app(f"https://+:{run.port}/env/", show_cert, ssl_flags="Ssl,SslNegotiateCert")
    env = json.loads(fetch(run.port, "/env/", mtls.client_context(mtls.client)).body)
    assert "REMOTE_USER" not in env
