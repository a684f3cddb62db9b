"""ip:port certificate bindings over real TLS (reference section 1.3).

Each test asserts on what a real client saw: the protocol version it negotiated, the certificate
it was presented, the status and body it received, or the handshake failure it got.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import threading
import warnings
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients import (
    client_context,
    curl,
    handshake_error,
    https_connection,
    https_get,
    openssl_s_client,
    peer_cert_der,
    tls_socket,
)
from conftest import free_port

TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"]


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def assert_handshake_fails(port: int, ip: str = "127.0.0.1", **kwargs: Any) -> None:
    exc = handshake_error(port, ip, **kwargs)
    assert exc is not None, f"the TLS handshake with {ip}:{port} completed; it should have failed"


# ----------------------------------------------------------------------------------------------
# Protocol versions


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_handshake_and_200(server, ca_file, tls_version):
    run = server({"/": hello_app})
    info: dict[str, Any] = {}
    status, headers, body = https_get(
        run.port, "/", ca=ca_file, tls_version=tls_version, info=info
    )
    assert info["version"] == tls_version
    assert status == 200
    assert body == b"hello"
    assert headers["Content-Length"] == "5"


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_rsa_certificate(server, ca_file, pki, tls_version):
    run = server({"/": hello_app}, cert=pki.rsa_leaf)
    info: dict[str, Any] = {}
    status, _, body = https_get(run.port, "/", ca=ca_file, tls_version=tls_version, info=info)
    assert (status, body) == (200, b"hello")
    assert info["peer_cert"] == pki.rsa_leaf.der


def _old_protocol_context(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that really offers TLS 1.0/1.1: the protocol floor lowered and security level 0,
    without which OpenSSL 3 refuses to use the SHA-1 based suites these versions need."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Python deprecates these versions; offering them is the point of the test.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    return ctx


def _control_server_accepts(maximum: ssl.TLSVersion, leaf_files: tuple[str, str]) -> str | None:
    """Runs one handshake between the old-protocol client and a Python ``ssl`` server that
    allows TLS 1.0+, and returns the version negotiated, or None if the local OpenSSL cannot
    negotiate it at all (then a refusal by httpsys would prove nothing)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.load_cert_chain(*leaf_files)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with sctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                pass

    t = threading.Thread(target=serve)
    t.start()
    try:
        with tls_socket(port, context=_old_protocol_context(maximum)) as sock:
            return sock.version()
    except OSError:
        return None
    finally:
        t.join()
        listener.close()


@pytest.mark.parametrize(
    "maximum", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_old_tls_versions_refused(server, leaf_files, maximum):
    negotiated = _control_server_accepts(maximum, leaf_files)
    if negotiated is None:
        pytest.skip(f"this OpenSSL cannot negotiate {maximum.name} even with a permissive server")
    run = server({"/": hello_app})
    exc = handshake_error(run.port, context=_old_protocol_context(maximum))
    assert exc is not None, f"httpsys completed a {maximum.name} handshake"
    # The same listener still serves a modern client.
    assert https_get(run.port, "/")[0] == 200


# ----------------------------------------------------------------------------------------------
# Binding selection


def test_no_binding_for_local_address_fails_handshake(server, pki, ca_file):
    # Only 127.0.0.2 has a certificate; the port listens on all addresses.
    run = server({"/": hello_app}, cert={"127.0.0.2:{port}": pki.leaf})
    assert_handshake_fails(run.port, "127.0.0.1")
    # The bound address works on the same listener.
    assert https_get(run.port, "/", ca=ca_file, ip="127.0.0.2")[0] == 200


def test_no_binding_at_all_fails_handshake(server):
    run = server({"/": hello_app}, cert=None)
    assert_handshake_fails(run.port, "127.0.0.1")
    assert_handshake_fails(run.port, "127.0.0.2")


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_specific_ip_beats_wildcard(server, pki, ca_file, tls_version):
    run = server(
        {"/": hello_app},
        cert={"0.0.0.0:{port}": pki.leaf, "127.0.0.2:{port}": pki.leaf2},
    )
    assert peer_cert_der(run.port, "127.0.0.2", tls_version=tls_version) == pki.leaf2.der
    assert peer_cert_der(run.port, "127.0.0.1", tls_version=tls_version) == pki.leaf.der
    for ip in ("127.0.0.1", "127.0.0.2"):
        status, _, body = https_get(run.port, "/", ca=ca_file, ip=ip, tls_version=tls_version)
        assert (status, body) == (200, b"hello")


def test_specific_ip_binding_added_live(server, pki):
    run = server({"/": hello_app})
    assert peer_cert_der(run.port, "127.0.0.2") == pki.leaf.der
    run.srv.set_sslcert(f"127.0.0.2:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
    assert peer_cert_der(run.port, "127.0.0.2") == pki.leaf2.der
    assert peer_cert_der(run.port, "127.0.0.1") == pki.leaf.der
    run.srv.delete_sslcert(f"127.0.0.2:{run.port}")
    # Without its own binding 127.0.0.2 falls back to the wildcard again.
    assert peer_cert_der(run.port, "127.0.0.2") == pki.leaf.der


def test_binding_on_other_port_does_not_apply(server, pki):
    other = free_port()
    run = server({"/": hello_app}, cert={f"0.0.0.0:{other}": pki.leaf})
    assert_handshake_fails(run.port, "127.0.0.1")


# ----------------------------------------------------------------------------------------------
# Live replacement and deletion


def test_replace_certificate_while_client_loops(server, pki, ca_file):
    run = server({"/": hello_app}, workers=2)
    # phase 0: before set_sslcert starts; 1: while it runs; 2: after it returned.
    phase = [0]
    results: list[tuple[int, int, int | None, Any, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()
    enough_before = threading.Event()
    enough_after = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = phase[0]
            info: dict[str, Any] = {}
            try:
                status, _, body = https_get(run.port, "/", ca=ca_file, info=info, timeout=10)
                error = None if body == b"hello" else f"body {body!r}"
            except Exception as exc:  # every failure is counted and reported
                status, error = None, repr(exc)
            ended = phase[0]
            with lock:
                results.append((started, ended, status, info.get("peer_cert"), error))
                if sum(1 for r in results if r[1] == 0) >= 20:
                    enough_before.set()
                if sum(1 for r in results if r[0] == 2) >= 20:
                    enough_after.set()

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    # An open keep-alive connection made before the swap keeps working after it.
    kept = https_connection(run.port, ca_file)
    try:
        kept.request("GET", "/", headers={"Host": f"localhost:{run.port}"})
        first = kept.getresponse()
        assert (first.status, first.read()) == (200, b"hello")
        assert enough_before.wait(60), "the client loop did not complete 20 requests"
        phase[0] = 1
        run.srv.set_sslcert(f"0.0.0.0:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
        phase[0] = 2
        assert enough_after.wait(60), "the client loop did not complete 20 requests after the swap"
        kept.request("GET", "/", headers={"Host": f"localhost:{run.port}"})
        second = kept.getresponse()
        assert (second.status, second.read()) == (200, b"hello")
        assert kept.connects == 1, "the keep-alive connection was dropped by the swap"
    finally:
        kept.close()
        stop.set()
        for t in threads:
            t.join()

    failures = [r for r in results if r[4] is not None or r[2] != 200]
    assert failures == [], f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    before = [r for r in results if r[1] == 0]
    after = [r for r in results if r[0] == 2]
    assert all(r[3] == pki.leaf.der for r in before), "a connection before the swap saw leaf two"
    wrong = [r for r in after if r[3] != pki.leaf2.der]
    assert wrong == [], f"{len(wrong)} connections opened after the swap got the old certificate"
    # Nothing else was presented while the swap ran.
    assert {r[3] for r in results} <= {pki.leaf.der, pki.leaf2.der}


def test_delete_sslcert_makes_new_handshakes_fail(server, ca_file):
    run = server({"/": hello_app})
    assert https_get(run.port, "/", ca=ca_file)[0] == 200
    run.srv.delete_sslcert(f"0.0.0.0:{run.port}")
    assert_handshake_fails(run.port, "127.0.0.1")
    assert_handshake_fails(run.port, "127.0.0.2")


def test_set_sslcert_after_delete_restores_service(server, pki, ca_file):
    run = server({"/": hello_app})
    run.srv.delete_sslcert(f"0.0.0.0:{run.port}")
    assert_handshake_fails(run.port)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", pki.leaf2.chain_pem, pki.leaf2.key_pem)
    info: dict[str, Any] = {}
    assert https_get(run.port, "/", ca=ca_file, info=info)[0] == 200
    assert info["peer_cert"] == pki.leaf2.der


# ----------------------------------------------------------------------------------------------
# Independent clients: openssl s_client and curl

_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_openssl_s_client(server, pki, ca_file, tls_version):
    run = server({"/": hello_app})
    flag = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[tls_version]
    request = f"GET / HTTP/1.1\r\nHost: localhost:{run.port}\r\nConnection: close\r\n\r\n"
    proc = openssl_s_client(
        [
            "-connect", f"127.0.0.1:{run.port}",
            "-servername", "localhost",
            "-CAfile", ca_file,
            "-verify_return_error",
            "-showcerts",
            "-ign_eof",
            flag,
        ],
        input=request.encode(),
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert re.search(rb"Protocol\s*:\s*" + tls_version.encode(), out), out.decode(errors="replace")
    assert b"Verify return code: 0 (ok)" in out
    pems = _PEM_RE.findall(out)
    assert pems, "s_client printed no certificate"
    presented = x509.load_pem_x509_certificate(pems[0]).public_bytes(serialization.Encoding.DER)
    assert presented == pki.leaf.der
    assert b"HTTP/1.1 200" in out
    assert b"\r\n\r\nhello" in out


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_curl_cacert(server, ca_file, tls_version):
    run = server({"/": hello_app})
    version_args = {
        "TLSv1.2": ["--tlsv1.2", "--tls-max", "1.2"],
        "TLSv1.3": ["--tlsv1.3", "--tls-max", "1.3"],
    }[tls_version]
    proc = curl(
        [
            "-sS",
            "--http1.1",
            "--max-time", "30",
            "--cacert", ca_file,
            "--resolve", f"localhost:{run.port}:127.0.0.1",
            "-w", "\n%{http_code} %{ssl_verify_result}",
            *version_args,
            f"https://localhost:{run.port}/",
        ]
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    body, _, trailer = proc.stdout.rpartition(b"\n")
    assert trailer == b"200 0"
    assert body == b"hello"


def test_curl_rejects_untrusted_server(server, tmp_path):
    # The oracle really verifies: with another CA's bundle the same request fails.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unrelated CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    other_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    bundle = tmp_path / "other-ca.pem"
    bundle.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    run = server({"/": hello_app})
    proc = curl(
        [
            "-sS", "--max-time", "30",
            "--cacert", str(bundle),
            "--resolve", f"localhost:{run.port}:127.0.0.1",
            f"https://localhost:{run.port}/",
        ]
    )
    assert proc.returncode == 60, (proc.returncode, proc.stderr)  # CURLE_PEER_FAILED_VERIFICATION


def test_client_context_verifies_hostname(server, ca_file):
    # Sanity of the http.client oracle: a name the certificate does not cover is refused.
    run = server({"/": hello_app})
    with pytest.raises(ssl.SSLCertVerificationError):
        with tls_socket(run.port, ca_file, server_hostname="not-localhost.example"):
            pass
    ctx = client_context(ca_file)
    with tls_socket(run.port, context=ctx, server_hostname="localhost") as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
