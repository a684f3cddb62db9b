"""TLS session resumption: tickets on by default, off when the binding says so."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

import clients
import httpsys
import pytest


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def fetch(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """One request on a new connection; returns its session and whether it was resumed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = clients.recv_all(sock)  # reading to the end also receives the TLS 1.3 tickets
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"hello")
    facts = (sock.session, sock.session_reused)
    sock.close()
    return facts


@pytest.mark.parametrize("tls_version", ["TLSv1.2", "TLSv1.3"])
def test_second_connection_resumes(server: Any, ca_file: str, tls_version: str) -> None:
    run = server({"/": hello})
    ctx = clients.client_context(ca_file, tls_version)
    session, reused = fetch(run.port, ctx, None)
    assert not reused
    assert session is not None and session.has_ticket
    _, reused = fetch(run.port, ctx, session)
    assert reused


def test_enablesessionticket_false_turns_resumption_off(server: Any, pki: Any, ca_file: str) -> None:
    run = server({"/": hello}, cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", pki.leaf.chain_pem, pki.leaf.key_pem,
                        enablesessionticket=False)
    ctx = clients.client_context(ca_file, "TLSv1.3")
    session, _ = fetch(run.port, ctx, None)
    _, reused = fetch(run.port, ctx, session)
    assert not reused


@pytest.mark.parametrize("value", [-1, 17, "2", None])
def test_sessiontickets_out_of_range_is_refused(pki: Any, value: Any) -> None:
    with httpsys.Server(workers=1) as srv:
        with pytest.raises(httpsys.InvalidParameterError) as e:
            srv.set_sslcert("0.0.0.0:8443", pki.leaf.chain_pem, pki.leaf.key_pem, sessiontickets=value)
        assert e.value.param == "sessiontickets"


def test_unknown_sslcert_option_names_it(pki: Any) -> None:
    with httpsys.Server(workers=1) as srv:
        with pytest.raises(httpsys.InvalidParameterError) as e:
            srv.set_sslcert("0.0.0.0:8443", pki.leaf.chain_pem, pki.leaf.key_pem, clientcert=True)
        assert e.value.param == "clientcert"
