"""hostnameport (SNI) bindings: chosen by the ClientHello's server name, live like ipport ones."""

from __future__ import annotations

import ssl
from typing import Any, Callable

import clients
import httpsys
import pytest


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["SSL_PROTOCOL"].encode()]


def get_over_sni(port: int, sni: str | None, tls_version: str | None = None) -> bytes:
    with clients.tls_socket(port, None, server_hostname=sni, tls_version=tls_version) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return clients.recv_all(sock)


@pytest.mark.parametrize("tls_version", ["TLSv1.2", "TLSv1.3"])
def test_sni_binding_wins_and_others_fall_back_to_ipport(server: Any, pki: Any, tls_version: str) -> None:
    run = server({"/": hello})  # ipport 0.0.0.0:PORT -> leaf
    run.srv.set_sslcert_sni(f"a.test:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
    assert clients.peer_cert_der(run.port, sni="a.test", tls_version=tls_version) == pki.leaf2.der
    assert clients.peer_cert_der(run.port, sni="A.Test", tls_version=tls_version) == pki.leaf2.der
    assert clients.peer_cert_der(run.port, sni="other.test", tls_version=tls_version) == pki.leaf.der
    assert clients.peer_cert_der(run.port, sni=None, tls_version=tls_version) == pki.leaf.der
    assert get_over_sni(run.port, "a.test", tls_version).endswith(tls_version.encode())


def test_only_sni_bindings_refuse_unknown_and_missing_names(server: Any, pki: Any) -> None:
    run = server({"/": hello}, cert=None)
    run.srv.set_sslcert_sni(f"a.test:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
    run.srv.set_sslcert_sni(f"b.test:{run.port}", pki.leaf.chain_pem, pki.leaf.key_pem)
    assert clients.peer_cert_der(run.port, sni="a.test") == pki.leaf2.der
    assert clients.peer_cert_der(run.port, sni="b.test") == pki.leaf.der
    assert get_over_sni(run.port, "b.test").startswith(b"HTTP/1.1 200 OK")
    for sni in ("c.test", None):
        with pytest.raises(ssl.SSLError) as e:
            clients.peer_cert_der(run.port, sni=sni)
        assert "UNRECOGNIZED_NAME" in str(e.value).upper() or "ALERT" in str(e.value).upper()


def test_delete_sni_binding_is_live(server: Any, pki: Any) -> None:
    run = server({"/": hello})
    run.srv.set_sslcert_sni(f"a.test:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
    assert clients.peer_cert_der(run.port, sni="a.test") == pki.leaf2.der
    run.srv.delete_sslcert_sni(f"a.test:{run.port}")
    assert clients.peer_cert_der(run.port, sni="a.test") == pki.leaf.der
    with pytest.raises(httpsys.NotFoundError):
        run.srv.delete_sslcert_sni(f"a.test:{run.port}")


@pytest.mark.parametrize("bad", ["a.test", "a test:443", ":443", "a.test:0", "a.test:70000", "a_b:443"])
def test_malformed_hostnameport_names_the_parameter(pki: Any, bad: str) -> None:
    with httpsys.Server(workers=1) as srv:
        with pytest.raises(httpsys.InvalidParameterError) as e:
            srv.set_sslcert_sni(bad, pki.leaf.chain_pem, pki.leaf.key_pem)
        assert e.value.param == "hostnameport"


def sni_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("SSL_TLS_SNI", "<none>").encode()]


def test_environ_carries_the_sni_name(server: Any) -> None:
    run = server({"/": sni_echo})
    assert get_over_sni(run.port, "a.test").endswith(b"\r\n\r\na.test")
    assert get_over_sni(run.port, None).endswith(b"\r\n\r\n<none>")
