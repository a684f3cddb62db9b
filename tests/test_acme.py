"""ACME (RFC 8555) against a real CA: pebble validates through the httpsys listener itself.

``httpsys serve`` runs as a process on a temporary store; ``httpsys cert acme`` runs as another
process on the same store, and the server answers its challenges (TLS-ALPN-01 in the core,
HTTP-01 on the plain-HTTP listener) by picking them up from the store. Clients verify the
served certificate against the root pebble made and compare it with the thumbprint the CLI
printed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acme_fixture import Pebble, start_pebble
from clients import peer_cert_der
from conftest import free_port
from cryptography import x509

from httpsys.acmestore import AcmeStore
from httpsys.certstore import CertStore
from httpsys.store import Store

ROOT = Path(__file__).resolve().parent.parent
APPID = "{00112233-4455-6677-8899-aabbccddeeff}"
NAME = "www.acme.test"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


class Serve:
    """``httpsys serve`` as a process, its log in a file (a pipe could fill and block it)."""

    def __init__(self, store: Path, port: int, log: Path, env: dict[str, str],
                 http_app_port: int | None = None) -> None:
        self.log = log
        apps = ["--app", f"https://+:{port}/=httpsys.demo:app"]
        with log.open("ab") as out:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "httpsys", "--store", str(store), "serve", *apps,
                 "--threads", "2"], stdout=out, stderr=out, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start: {self.text()}") from None
                time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.p.poll() is None, f"serve exited: {self.text()}"
            assert time.monotonic() < deadline, f"{needle!r} not logged: {self.text()[-3000:]}"
            time.sleep(0.05)
        return self.text()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def acme_env(tmp_path: Path) -> Iterator[Any]:
    """Starts pebble and serve processes for a test; stops all of them afterwards."""
    started: list[Any] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_STORE=str(tmp_path / "store.db"),
               HTTPSYS_ACME_RETRY="1")

    class Env:
        store = tmp_path / "store.db"
        tls_port = free_port()
        http_port = free_port()

        def pebble(self, validity: int | None = None,
                   eab: dict[str, str] | None = None) -> Pebble:
            peb = start_pebble(tmp_path / f"pebble{len(started)}", http_port=self.http_port,
                               tls_port=self.tls_port, validity=validity, eab=eab)
            started.append(peb)
            return peb

        def serve(self) -> Serve:
            srv = Serve(self.store, self.tls_port, tmp_path / "serve.log", env)
            started.append(srv)
            return srv

        def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            r = subprocess.run([sys.executable, "-m", "httpsys", "--store", str(self.store),
                                *args], check=False, capture_output=True, text=True, env=env,
                               cwd=ROOT, timeout=120)
            if check:
                assert r.returncode == 0, f"{args}: {r.returncode} {r.stdout} {r.stderr}"
            return r

        def acme(self, peb: Pebble, *extra: str, check: bool = True,
                 name: str = NAME) -> subprocess.CompletedProcess[str]:
            return self.cli("cert", "acme", "--dns", name, "--directory", peb.directory,
                            "--ca-bundle", peb.ca_bundle, "--email", "ops@acme.test",
                            "--bind", f"ipport=0.0.0.0:{self.tls_port}", f"appid={APPID}",
                            *extra, check=check)

    yield Env()
    for item in reversed(started):
        item.stop()


def served_thumbprint(port: int, name: str = NAME) -> str:
    return hashlib.sha1(peer_cert_der(port, sni=name)).hexdigest()


def verified_get(port: int, roots: bytes, name: str = NAME) -> tuple[int, str]:
    """GET / verifying the server's certificate for ``name`` against pebble's root; the
    status and the leaf's thumbprint."""
    ctx = ssl.create_default_context(cadata=roots.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(data.split(b" ", 2)[1]), hashlib.sha1(der).hexdigest()


def test_tls_alpn_01_issuance_with_a_running_server(acme_env):
    peb = acme_env.pebble()
    srv = acme_env.serve()
    r = acme_env.acme(peb, "--challenge", "tls-alpn-01")
    thumb = r.stdout.strip().splitlines()[-1]
    # The binding was added by cert acme; the running server picked it up live.
    srv.wait_log(f"certificate {thumb} is live")
    status, served = verified_get(acme_env.tls_port, peb.roots_pem())
    assert (status, served) == (200, thumb)
    assert f"TLS-ALPN-01 challenge for {NAME} is live" in srv.text()
    with Store.open(acme_env.store) as store:
        entry = CertStore(store).get(thumb)
        assert entry.source == "acme" and entry.renew_at is not None
        assert store.bindings_using(thumb) == [f"ipport=0.0.0.0:{acme_env.tls_port}"]
        assert AcmeStore(store).challenges() == []  # answered, then removed
    show = acme_env.cli("cert", "show", thumb).stdout
    assert "Source               : acme" in show
    assert f"Next Renewal         : {entry.renew_at}" in show
    leaf = x509.load_der_x509_certificate(entry.der)
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [NAME]
    # cert renew: a new order now, the binding swapped live, the old one no longer renewed.
    renewed = acme_env.cli("cert", "renew", thumb).stdout.strip().splitlines()[-1]
    assert renewed != thumb
    srv.wait_log(f"certificate {renewed} is live")
    assert verified_get(acme_env.tls_port, peb.roots_pem()) == (200, renewed)
    assert "Next Renewal         : -\n" in \
        acme_env.cli("cert", "show", thumb).stdout
    r = acme_env.cli("cert", "renew", thumb, check=False)
    assert r.returncode != 0 and "was not issued through ACME" in r.stderr


def test_no_listener_answering_means_validation_fails_and_nothing_is_stored(acme_env):
    """Validation is real: with no httpsys listener on the port pebble validates, the order
    fails with pebble's reason and the store gets no certificate and no binding."""
    peb = acme_env.pebble()
    r = acme_env.acme(peb, "--challenge", "tls-alpn-01", check=False)
    assert r.returncode != 0
    assert "validation failed (tls-alpn-01)" in r.stderr and NAME in r.stderr
    with Store.open(acme_env.store) as store:
        assert CertStore(store).list("MY") == []
        assert store.bindings_using("0" * 40) == []
        assert store.execute("SELECT count(*) FROM sslcert").fetchone()[0] == 0
        assert AcmeStore(store).challenges() == []


def test_http_01_issuance_replaces_a_live_binding(acme_env):
    """The binding exists (a self-signed certificate); cert acme --challenge http-01 makes the
    server answer on http://+:PORT/.well-known/acme-challenge/ and swaps the certificate: an
    open connection keeps the old one, the next connection gets the new one. The CA requires
    an external account binding: without one the account is refused."""
    peb = acme_env.pebble(eab={"kid-1": EAB_HMAC})
    old = acme_env.cli("cert", "new", "--dns", NAME).stdout.strip()
    acme_env.cli("http", "add", "sslcert", f"ipport=0.0.0.0:{acme_env.tls_port}",
                 f"certhash={old}", f"appid={APPID}")
    srv = acme_env.serve()
    assert served_thumbprint(acme_env.tls_port) == old
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", acme_env.tls_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=NAME) as held:
        refused = acme_env.acme(peb, "--challenge", "http-01", check=False)
        assert refused.returncode == 1 and "the CA refused the account" in refused.stderr
        r = acme_env.acme(peb, "--challenge", "http-01", "--http-port", str(acme_env.http_port),
                          "--eab-kid", "kid-1", "--eab-hmac", EAB_HMAC)
        new = r.stdout.strip().splitlines()[-1]
        srv.wait_log(f"certificate {new} is live")
        assert srv.text().count("answering HTTP-01 challenges at "
                                f"http://+:{acme_env.http_port}/.well-known/acme-challenge/") == 1
        # The connection opened before the swap still works, on the old certificate.
        held.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        assert hashlib.sha1(held.getpeercert(binary_form=True) or b"").hexdigest() == old
    assert new != old
    assert verified_get(acme_env.tls_port, peb.roots_pem()) == (200, new)
    # The challenge is gone from the store, and so is its answer.
    conn = http.client.HTTPConnection("127.0.0.1", acme_env.http_port, timeout=10)
    conn.request("GET", "/.well-known/acme-challenge/anything")
    assert conn.getresponse().status == 404
    conn.close()


def test_renewal_while_a_client_loops_requests(acme_env):
    """A certificate of 12 s is renewed by the running server after two thirds of it (8 s) and
    swapped live: a client verifying every new connection against pebble's root sees the new
    certificate and not one failed request."""
    peb = acme_env.pebble(validity=12)
    srv = acme_env.serve()
    first = acme_env.acme(peb, "--challenge", "tls-alpn-01").stdout.strip().splitlines()[-1]
    srv.wait_log(f"certificate {first} is live")
    roots = peb.roots_pem()
    seen: list[str] = []
    failures: list[str] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and len(set(seen)) < 2:
        try:
            status, thumb = verified_get(acme_env.tls_port, roots)
            if status != 200:
                failures.append(f"status {status}")
            seen.append(thumb)
        except (OSError, ssl.SSLError) as e:
            failures.append(repr(e))
    # A few more on the new certificate.
    for _ in range(20):
        try:
            status, thumb = verified_get(acme_env.tls_port, roots)
            seen.append(thumb) if status == 200 else failures.append(f"status {status}")
        except (OSError, ssl.SSLError) as e:
            failures.append(repr(e))
    assert failures == []
    assert seen[0] == first and len(set(seen)) >= 2, srv.text()[-2000:]
    renewed = seen[-1]
    assert f"acme: certificate {first} ({NAME}) renewed: now {renewed}" in srv.text()
    with Store.open(acme_env.store) as store:
        assert store.bindings_using(renewed) == [f"ipport=0.0.0.0:{acme_env.tls_port}"]
        assert CertStore(store).get(first).renew_at is None  # the old one is done with
        entry = AcmeStore(store).get(renewed)
        assert entry is not None and entry.failures == 0 and entry.renew_at


def test_ca_down_during_renewal_keeps_the_certificate_and_logs_why(acme_env):
    """pebble stopped before a 6 s certificate is due (4 s): the renewal fails, the server
    keeps serving the certificate, logs why and retries with a doubling backoff."""
    peb = acme_env.pebble(validity=6)
    srv = acme_env.serve()
    thumb = acme_env.acme(peb, "--challenge", "tls-alpn-01").stdout.strip().splitlines()[-1]
    srv.wait_log(f"certificate {thumb} is live")
    peb.stop()
    text = srv.wait_log("(failure 2 in a row)")
    assert f"acme: renewal of certificate {thumb} ({NAME}) failed: --directory: cannot read " \
           f"the ACME directory {peb.directory}" in text
    assert "still serving it, next try in 1 s (failure 1 in a row)" in text
    assert "next try in 2 s (failure 2 in a row)" in text  # backing off
    assert served_thumbprint(acme_env.tls_port) == thumb
    show = acme_env.cli("cert", "show", thumb).stdout
    assert "(retrying: " in show and "cannot read the ACME directory" in show
    # cert renew says why too, with a non-zero exit, and changes nothing.
    r = acme_env.cli("cert", "renew", thumb, check=False)
    assert r.returncode != 0 and "cannot read the ACME directory" in r.stderr
    assert served_thumbprint(acme_env.tls_port) == thumb


@pytest.mark.parametrize(("args", "rc", "message"), [
    (["--bind", "ipport=nonsense", f"appid={APPID}"], 2,
     "--bind: ipport=nonsense: expected IP:PORT"),
    (["--bind", "ipport=0.0.0.0:443", "hostnameport=a.test:443"], 2,
     "--bind: give one ipport=IP:PORT or hostnameport=NAME:PORT"),
    (["--bind", "ipport=0.0.0.0:443", "appid=xyz"], 2, "--bind: appid=xyz"),
    (["--bind", "certhash=00"], 2, "--bind: 'certhash=00' is not ipport=IP:PORT"),
    (["--eab-kid", "kid-1"], 2, "--eab-kid and --eab-hmac go together"),
    (["--http-port", "0"], 2, "--http-port: 0 is not a port (1-65535)"),
    ([], 1, "--directory: cannot read the ACME directory https://127.0.0.1:"),
])
def test_bad_cert_acme_arguments_are_refused_and_change_nothing(tmp_path, capsys, args, rc,
                                                                 message):
    from httpsys import cli

    store = tmp_path / "store.db"
    Store.open(store).close()
    with Store.open(store) as s:
        before = s.generation()
    argv = ["--store", str(store), "cert", "acme", "--dns", NAME, "--directory",
            f"https://127.0.0.1:{free_port()}/dir", *args]
    assert cli.main(argv) == rc
    err = capsys.readouterr().err
    assert f"httpsys cert: error: {message}" in err
    with Store.open(store) as s:
        assert s.generation() == before
        assert s.execute("SELECT count(*) FROM acme_account").fetchone()[0] == 0
