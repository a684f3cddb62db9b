"""Client certificates end to end: the binding's trust list and CRLs, the prefix's IIS sslFlags,
the 403.x answers from the core, the SSL_CLIENT_* environ, certificates asked for after the
handshake, live CRL changes and resumed sessions (issue 4)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import clients
import pytest
from mtls_pki import Issued, MtlsPKI
from OpenSSL import SSL

REQUIRE = "Ssl,SslNegotiateCert,SslRequireCert"
NEGOTIATE = "Ssl,SslNegotiateCert"

CERT_E_REVOKED = 0x800B010C
CERT_E_UNTRUSTEDROOT = 0x800B0109
CERT_E_EXPIRED = 0x800B0101
CERT_E_WRONG_USAGE = 0x800B0110


def show_cert(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    keys = [k for k in environ if k.startswith(("SSL_", "httpsys.")) or k == "HTTPS"]
    body = json.dumps({k: environ[k] for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def forbidden_body(sub: int, heading: str, text: str) -> bytes:
    return "\r\n".join([
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">',
        "<HTML><HEAD><TITLE>Forbidden</TITLE>",
        '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>',
        f"<BODY><h2>Forbidden - {heading}</h2>",
        f"<hr><p>HTTP Error 403.{sub}. {text}</p>",
        "</BODY></HTML>", ""]).encode()


BODY_403_7 = forbidden_body(7, "Client certificate required",
                            "A client certificate is required to view this resource.")


def start(server: Callable[..., Any], mtls: MtlsPKI, *, negotiate: bool = True, crls: Any = None,
          **opts: Any) -> Any:
    """A server with the mTLS PKI's server certificate, prefixes /req/ (Require), /neg/
    (Negotiate) and / (no flags)."""
    run = server(cert=None)
    bind(run, mtls, negotiate=negotiate, crls=crls, **opts)
    run.srv.add_app(f"https://+:{run.port}/req/", show_cert, ssl_flags=REQUIRE)
    run.srv.add_app(f"https://+:{run.port}/neg/", show_cert, ssl_flags=NEGOTIATE)
    run.srv.add_app(f"https://+:{run.port}/", show_cert)
    return run


def bind(run: Any, mtls: MtlsPKI, *, negotiate: bool = True, crls: Any = None, **opts: Any) -> None:
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                        clientcertnegotiation=negotiate, trusted_ca_pem=mtls.trusted_ca_pem,
                        crls=[mtls.crl_intermediate.pem] if crls is None else crls, **opts)


def get(port: int, path: str, ctx: ssl.SSLContext,
        session: Any = None) -> tuple[clients.Response, Any, bool]:
    """One GET over a new connection (closed afterwards): the response, the TLS session to
    resume with, and whether this connection resumed one."""
    import socket

    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        resp = clients.read_response(sock, bytearray())
        return resp, sock.session, sock.session_reused
    finally:
        sock.close()


def fetch(port: int, path: str, ctx: ssl.SSLContext) -> clients.Response:
    return get(port, path, ctx)[0]


def as_json(resp: clients.Response) -> dict[str, Any]:
    assert resp.status == 200, (resp.status, resp.body[:300])
    return dict(json.loads(resp.body))


VERSIONS = ["1.2", "1.3"]


# ---- handshake-time negotiation -----------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_a_valid_certificate_reaches_the_app(server: Callable[..., Any], mtls: MtlsPKI, version: str) -> None:
    run = start(server, mtls)
    env = as_json(fetch(run.port, "/req/", mtls.client_context(mtls.client, version)))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["httpsys.client_cert_error"] == 0
    assert env["SSL_CLIENT_S_DN"] == mtls.client.cert.subject.rfc4514_string()
    assert env["SSL_CLIENT_I_DN"] == mtls.intermediate.cert.subject.rfc4514_string()
    assert int(env["SSL_CLIENT_M_SERIAL"], 16) == mtls.client.serial
    assert env["SSL_CLIENT_CERT"].encode() == mtls.client.cert_pem
    assert env["SSL_CLIENT_V_END"].endswith(" GMT")
    assert env["SSL_PROTOCOL"] == f"TLSv{version}"


@pytest.mark.parametrize("version", VERSIONS)
def test_no_certificate(server: Callable[..., Any], mtls: MtlsPKI, version: str) -> None:
    run = start(server, mtls)
    ctx = mtls.client_context(None, version)
    resp = fetch(run.port, "/req/", ctx)
    assert (resp.status, resp.reason) == (403, "Forbidden")
    assert resp.body == BODY_403_7
    env = as_json(fetch(run.port, "/neg/", ctx))  # Negotiate alone: the app sees no certificate
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_CERT" not in env


CASES = [
    # (certificate, 403 substatus, CertFlags the app sees under SslNegotiateCert alone)
    ("expired", 17, CERT_E_EXPIRED),
    ("not_yet_valid", 17, CERT_E_EXPIRED),
    ("revoked", 13, CERT_E_REVOKED),
    ("wrong_eku", 16, CERT_E_WRONG_USAGE),
    ("foreign", 16, CERT_E_UNTRUSTEDROOT),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name, sub, flags", CASES)
def test_invalid_certificates_get_their_403(server: Callable[..., Any], mtls: MtlsPKI, version: str,
                                            name: str, sub: int, flags: int) -> None:
    run = start(server, mtls)
    cert: Issued = getattr(mtls, name)
    resp = fetch(run.port, "/req/", mtls.client_context(cert, version))
    assert (resp.status, resp.reason) == (403, "Forbidden")
    assert f"HTTP Error 403.{sub}. ".encode() in resp.body
    # SslNegotiateCert alone passes the request with whatever was presented, and says what failed.
    env = as_json(fetch(run.port, "/neg/", mtls.client_context(cert, version)))
    assert env["SSL_CLIENT_VERIFY"].startswith("FAILED:")
    assert env["httpsys.client_cert_error"] == flags
    assert env["SSL_CLIENT_CERT"].encode() == cert.cert_pem


def test_the_acceptable_ca_names_are_the_trust_list(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls)
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    conn = SSL.Connection(ctx, __import__("socket").create_connection(("127.0.0.1", run.port)))
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    conn.do_handshake()
    names = [n.der() for n in conn.get_client_ca_list()]
    conn.close()
    assert names == [mtls.root.cert.subject.public_bytes(), mtls.intermediate.cert.subject.public_bytes()]


def test_usagecheck_disabled_accepts_a_server_only_certificate(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, usagecheck=False)
    env = as_json(fetch(run.port, "/req/", mtls.client_context(mtls.wrong_eku)))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"


def test_revocation_check_disabled(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, verifyclientcertrevocation=False)
    assert as_json(fetch(run.port, "/req/", mtls.client_context(mtls.revoked)))["SSL_CLIENT_VERIFY"] == "SUCCESS"


def test_an_expired_crl_fails_closed(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, crls=[mtls.crl_expired.der])
    resp = fetch(run.port, "/req/", mtls.client_context(mtls.client))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body


def test_the_100k_crl(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, crls=[mtls.crl_100k.der])
    assert fetch(run.port, "/req/", mtls.client_context(mtls.client)).status == 200
    resp = fetch(run.port, "/req/", mtls.client_context(mtls.revoked))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body


def test_curl_with_a_client_certificate(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls)
    base = ["-sS", "--cacert", str(mtls.root.cert_file), f"https://localhost:{run.port}/req/",
            "--resolve", f"localhost:{run.port}:127.0.0.1"]
    ok = clients.curl([*base, "--cert", str(mtls.client.chain_file), "--key", str(mtls.client.key_file)])
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["SSL_CLIENT_VERIFY"] == "SUCCESS"
    bad = clients.curl([*base, "--cert", str(mtls.revoked.chain_file), "--key", str(mtls.revoked.key_file)])
    assert b"HTTP Error 403.13. " in bad.stdout


# ---- bad configuration --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, param", [
    ({"trusted_ca_pem": b"not a certificate"}, "trusted_ca_pem"),
    ({"crls": [b"garbage"]}, "crls"),
    ({"crls": [b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]}, "crls"),
])
def test_bad_trust_material_is_refused_naming_it(server: Callable[..., Any], mtls: MtlsPKI,
                                                 kwargs: dict[str, Any], param: str) -> None:
    from httpsys.errors import InvalidParameterError

    run = server(cert=None)
    opts: dict[str, Any] = {"trusted_ca_pem": mtls.trusted_ca_pem, **kwargs}
    with pytest.raises(InvalidParameterError) as exc:
        run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem, **opts)
    assert exc.value.param == param


def test_a_crl_from_an_issuer_outside_the_trust_list_is_refused(server: Callable[..., Any],
                                                                mtls: MtlsPKI) -> None:
    from httpsys.errors import InvalidParameterError

    run = server(cert=None)
    foreign_crl = mtls.make_crl("foreign_crl", mtls.foreign_root, [], mtls.now, mtls.now.replace(year=mtls.now.year + 1))
    with pytest.raises(InvalidParameterError, match="not in trusted_ca_pem"):
        run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                            trusted_ca_pem=mtls.trusted_ca_pem, crls=[foreign_crl.der])


# ---- certificates asked for after the handshake -------------------------------------------------

def test_tls13_post_handshake_auth(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, negotiate=False)
    ctx = mtls.client_context(mtls.client, "1.3", post_handshake_auth=True)
    env = as_json(fetch(run.port, "/req/", ctx))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    # The same prefix without a certificate, and a prefix without flags: nothing is asked.
    assert fetch(run.port, "/req/", mtls.client_context(None, "1.3", post_handshake_auth=True)).body == BODY_403_7
    assert as_json(fetch(run.port, "/", ctx))["SSL_CLIENT_VERIFY"] == "NONE"


def test_tls13_client_without_post_handshake_auth_gets_403_7(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, negotiate=False)
    resp = fetch(run.port, "/req/", mtls.client_context(mtls.client, "1.3", post_handshake_auth=False))
    assert resp.status == 403 and resp.body == BODY_403_7
    env = as_json(fetch(run.port, "/neg/", mtls.client_context(mtls.client, "1.3")))
    assert env["SSL_CLIENT_VERIFY"] == "NONE"


def test_tls12_renegotiation(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, negotiate=False)
    env = as_json(fetch(run.port, "/req/", mtls.client_context(mtls.client, "1.2")))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_PROTOCOL"] == "TLSv1.2"
    resp = fetch(run.port, "/req/", mtls.client_context(mtls.revoked, "1.2"))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body


def test_on_demand_keeps_the_connection_and_asks_once(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls, negotiate=False)
    ctx = mtls.client_context(mtls.client, "1.3", post_handshake_auth=True)
    with clients.tls_socket(run.port, context=ctx) as sock:
        buf = bytearray()
        for path in ("/", "/req/", "/neg/", "/req/"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            resp = clients.read_response(sock, buf)
            expected = "NONE" if path == "/" else "SUCCESS"
            assert json.loads(resp.body)["SSL_CLIENT_VERIFY"] == expected, path


# ---- live changes and resumed sessions ----------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_a_new_crl_is_live_for_resumed_sessions_too(server: Callable[..., Any], mtls: MtlsPKI,
                                                    version: str) -> None:
    run = start(server, mtls)
    ctx = mtls.client_context(mtls.client, version)
    resp, session, _ = get(run.port, "/req/", ctx)
    assert resp.status == 200 and session is not None
    # Resumption works before the change ...
    resp, session, reused = get(run.port, "/req/", ctx, session=session)
    assert reused and resp.status == 200
    # ... and after it: the new CRL lists the client, the resumed session is refused.
    crl = mtls.make_crl(f"crl_live_{version}", mtls.intermediate, [mtls.client.serial, mtls.revoked.serial],
                        mtls.now, mtls.now.replace(year=mtls.now.year + 1))
    bind(run, mtls, crls=[crl.der])
    resp, _, reused = get(run.port, "/req/", ctx, session=session)
    assert reused, "the binding change should keep the ticket keys"
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body
    # A full handshake is refused as well.
    assert b"HTTP Error 403.13. " in fetch(run.port, "/req/", ctx).body


# ---- Ssl and Ssl128 -----------------------------------------------------------------------------

def test_plain_http_to_an_ssl_prefix_gets_403_4(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    import socket

    from conftest import free_port

    run = start(server, mtls)
    plain = free_port()
    run.srv.add_app(f"http://+:{plain}/secure/", show_cert, ssl_flags="Ssl")
    run.srv.add_app(f"http://+:{plain}/open/", show_cert, ssl_flags="None")
    with socket.create_connection(("127.0.0.1", plain), timeout=10) as sock:
        buf = bytearray()
        sock.sendall(b"GET /secure/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = clients.read_response(sock, buf)  # type: ignore[arg-type]
        assert (resp.status, resp.reason) == (403, "Forbidden")
        assert resp.body == forbidden_body(4, "SSL required", "SSL is required to view this resource.")
        # A 403 without a body keeps the connection, as a 404 does.
        sock.sendall(b"GET /open/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert clients.read_response(sock, buf).status == 200  # type: ignore[arg-type]


def test_ssl128_passes_every_cipher_we_negotiate(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = start(server, mtls)
    run.srv.add_app(f"https://+:{run.port}/strong/", show_cert, ssl_flags="Ssl, Ssl128")
    for version in VERSIONS:
        assert as_json(fetch(run.port, "/strong/", mtls.client_context(None, version)))["HTTPS"] == "on"


@pytest.mark.parametrize("flags", ["Ssl,Bogus", "ssl;SslRequireCert", 42])
def test_unknown_ssl_flags_are_refused(server: Callable[..., Any], flags: Any) -> None:
    from httpsys.errors import InvalidParameterError

    run = server()
    with pytest.raises(InvalidParameterError) as exc:
        run.srv.add_app(f"https://+:{run.port}/x/", show_cert, ssl_flags=flags)
    assert exc.value.param == "ssl_flags"
    assert run.srv.prefixes == []


def test_the_demo_page_shows_the_client_certificate(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    from httpsys import demo

    run = server(cert=None)
    bind(run, mtls)
    run.srv.add_app(f"https://+:{run.port}/", demo.app)
    page = fetch(run.port, "/", mtls.client_context(mtls.client)).body.decode()
    assert mtls.client.cert.subject.rfc4514_string() in page
    assert "SUCCESS" in page
    assert "none presented" in fetch(run.port, "/", mtls.client_context(None)).body.decode()


def echo_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("SSL_CLIENT_VERIFY", "").encode() + b" " + body]


@pytest.mark.parametrize("version", VERSIONS)
def test_on_demand_with_a_request_body(server: Callable[..., Any], mtls: MtlsPKI, version: str) -> None:
    run = start(server, mtls, negotiate=False)
    run.srv.add_app(f"https://+:{run.port}/echo/", echo_body, ssl_flags=REQUIRE)
    ctx = mtls.client_context(mtls.client, version, post_handshake_auth=True)
    with clients.tls_socket(run.port, context=ctx) as sock:
        sock.sendall(b"POST /echo/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        resp = clients.read_response(sock, bytearray())
    assert (resp.status, resp.body) == (200, b"SUCCESS hello")


@pytest.mark.parametrize("version", VERSIONS)
def test_curl_on_demand(server: Callable[..., Any], mtls: MtlsPKI, version: str) -> None:
    """curl answers a TLS 1.2 renegotiation and offers TLS 1.3 post-handshake auth."""
    run = start(server, mtls, negotiate=False)
    r = clients.curl(["-sS", f"--tlsv{version}", "--tls-max", version, "--cacert", str(mtls.root.cert_file),
                      "--resolve", f"localhost:{run.port}:127.0.0.1", "--cert", str(mtls.client.chain_file),
                      "--key", str(mtls.client.key_file), f"https://localhost:{run.port}/req/"])
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert (env["SSL_CLIENT_VERIFY"], env["SSL_PROTOCOL"]) == ("SUCCESS", f"TLSv{version}")


def test_a_hostnameport_binding_negotiates_on_its_own(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    """SNI picks the host binding after the connection started on the ipport one: the host
    binding's clientcertnegotiation, trust list and CRLs are the ones used."""
    run = server(cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem)
    run.srv.set_sslcert_sni(f"localhost:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                            clientcertnegotiation=True, trusted_ca_pem=mtls.trusted_ca_pem,
                            crls=[mtls.crl_intermediate.der])
    run.srv.add_app(f"https://+:{run.port}/req/", show_cert, ssl_flags=REQUIRE)
    # With SNI "localhost": asked in the handshake (no post-handshake auth offered), verified.
    env = as_json(fetch(run.port, "/req/", mtls.client_context(mtls.client, "1.3")))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS" and env["SSL_TLS_SNI"] == "localhost"
    assert b"HTTP Error 403.13. " in fetch(run.port, "/req/", mtls.client_context(mtls.revoked, "1.3")).body


def test_a_client_that_does_not_answer_gets_403_7_after_the_wait(server: Callable[..., Any],
                                                                 mtls: MtlsPKI) -> None:
    """The certificate request is bounded (by headerwaittimeout, at most 10 s): a client that
    offered post-handshake auth but does not read gets its answer, never a hang."""
    import time

    run = start(server, mtls, negotiate=False)
    run.srv.set_timeout("headerwaittimeout", 1)
    ctx = mtls.client_context(mtls.client, "1.3", post_handshake_auth=True)
    with clients.tls_socket(run.port, context=ctx) as sock:
        sock.sendall(b"GET /req/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # Not reading: the CertificateRequest waits unprocessed in our socket buffer. The core
        # gives up after 1 s (plus a 50 ms wheel tick) and answers as if no certificate came.
        time.sleep(2.5)
        resp = clients.read_response(sock, bytearray())
    assert resp.status == 403 and resp.body == BODY_403_7
