"""CRLs fetched from a client certificate's distribution point: a real local HTTP server, the
binding's urlretrievaltimeout, verifyrevocationwithcachedclientcertonly, failures (issue 4)."""

from __future__ import annotations

import datetime
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import free_port
from mtls_pki import MtlsPKI
from test_client_certs import REQUIRE, fetch, show_cert


@dataclass
class CrlServer:
    """Serves ``files[path]`` after ``delay`` seconds; 404 for other paths. ``hits`` counts GETs."""

    port: int
    files: dict[str, bytes] = field(default_factory=dict)
    delay: float = 0.0
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def crl_server() -> Iterator[CrlServer]:
    state = CrlServer(free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            time.sleep(state.delay)
            body = state.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            try:
                self.wfile.write(body or b"")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the fetcher gave up first (the timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


_counter = iter(range(10_000))


def client_with_cdp(mtls: MtlsPKI, url: str) -> Any:
    return mtls.make_client(f"cdp_{next(_counter)}", cdp_url=url)


def crl_listing(mtls: MtlsPKI, serials: list[int]) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    return mtls.make_crl(f"served_{next(_counter)}", mtls.intermediate, serials,
                         now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)).der


def start(server: Callable[..., Any], mtls: MtlsPKI, **opts: Any) -> Any:
    """A server whose binding has the trust list but no CRL: revocation comes from the CDP."""
    run = server(cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                        clientcertnegotiation=True, trusted_ca_pem=mtls.trusted_ca_pem, **opts)
    run.srv.add_app(f"https://+:{run.port}/req/", show_cert, ssl_flags=REQUIRE)
    return run


def test_the_crl_is_fetched_once_and_cached(server: Callable[..., Any], mtls: MtlsPKI,
                                            crl_server: CrlServer) -> None:
    good = client_with_cdp(mtls, crl_server.url("/int.crl"))
    revoked = client_with_cdp(mtls, crl_server.url("/int.crl"))
    crl_server.files["/int.crl"] = crl_listing(mtls, [revoked.serial])
    run = start(server, mtls)
    assert fetch(run.port, "/req/", mtls.client_context(good)).status == 200
    assert crl_server.hits == ["/int.crl"]
    resp = fetch(run.port, "/req/", mtls.client_context(revoked))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body
    assert fetch(run.port, "/req/", mtls.client_context(good)).status == 200
    assert crl_server.hits == ["/int.crl"], "a fresh fetched CRL is used again, not fetched again"


def test_a_pem_answer_works_too(server: Callable[..., Any], mtls: MtlsPKI, crl_server: CrlServer) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    revoked = client_with_cdp(mtls, crl_server.url("/int.pem"))
    der = crl_listing(mtls, [revoked.serial])
    crl_server.files["/int.pem"] = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
    run = start(server, mtls)
    assert b"HTTP Error 403.13. " in fetch(run.port, "/req/", mtls.client_context(revoked)).body


def test_a_slow_distribution_point_is_bounded_by_urlretrievaltimeout(
        server: Callable[..., Any], mtls: MtlsPKI, crl_server: CrlServer) -> None:
    good = client_with_cdp(mtls, crl_server.url("/slow.crl"))
    crl_server.files["/slow.crl"] = crl_listing(mtls, [])
    crl_server.delay = 4.0
    run = start(server, mtls, urlretrievaltimeout=300)
    t0 = time.monotonic()
    resp = fetch(run.port, "/req/", mtls.client_context(good))
    waited = time.monotonic() - t0
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body  # unknown: fail closed
    # The fetch gave up after 0.3 s (the answer may wait for the 1 s margin or a wheel tick), long
    # before the distribution point would have answered.
    assert waited < 3.5, waited


def test_cached_only_never_fetches(server: Callable[..., Any], mtls: MtlsPKI, crl_server: CrlServer) -> None:
    good = client_with_cdp(mtls, crl_server.url("/int.crl"))
    crl_server.files["/int.crl"] = crl_listing(mtls, [])
    run = start(server, mtls, verifyrevocationwithcachedclientcertonly=True)
    resp = fetch(run.port, "/req/", mtls.client_context(good))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body
    assert crl_server.hits == []
    # With the CRL given to the binding (the cache), the same client passes without a fetch.
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                        clientcertnegotiation=True, trusted_ca_pem=mtls.trusted_ca_pem,
                        verifyrevocationwithcachedclientcertonly=True, crls=[crl_server.files["/int.crl"]])
    assert fetch(run.port, "/req/", mtls.client_context(good)).status == 200
    assert crl_server.hits == []


@pytest.mark.parametrize("served", ["missing", "garbage", "foreign"])
def test_a_distribution_point_without_a_good_crl_means_revocation_unknown(
        server: Callable[..., Any], mtls: MtlsPKI, crl_server: CrlServer, served: str) -> None:
    good = client_with_cdp(mtls, crl_server.url("/bad.crl"))
    if served == "garbage":
        crl_server.files["/bad.crl"] = b"this is not a CRL"
    elif served == "foreign":  # a well-formed CRL, but from another CA
        now = datetime.datetime.now(datetime.timezone.utc)
        crl_server.files["/bad.crl"] = mtls.make_crl(f"foreign_{next(_counter)}", mtls.foreign_root, [],
                                                     now, now + datetime.timedelta(days=1)).der
    run = start(server, mtls)
    resp = fetch(run.port, "/req/", mtls.client_context(good))
    assert resp.status == 403 and b"HTTP Error 403.13. " in resp.body
    assert crl_server.hits == ["/bad.crl"]
    # A failed URL is not hammered: the next handshake within the retry interval does not fetch.
    fetch(run.port, "/req/", mtls.client_context(good))
    assert crl_server.hits == ["/bad.crl"]


def test_revocation_check_disabled_does_not_fetch(server: Callable[..., Any], mtls: MtlsPKI,
                                                  crl_server: CrlServer) -> None:
    good = client_with_cdp(mtls, crl_server.url("/int.crl"))
    run = start(server, mtls, verifyclientcertrevocation=False)
    assert fetch(run.port, "/req/", mtls.client_context(good)).status == 200
    assert crl_server.hits == []
