"""`httpsys bench handshake`: the C handshake load generator against httpsys and nginx (issue 5).
Functional only: what it counts must match what happened; no timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clients
import pytest
from conftest import free_port
from mtls_pki import MtlsPKI

from httpsys.bench import percentiles, run_handshake
from httpsys.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parent.parent


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def no_errors(report: Any) -> None:
    assert sum(report.errors.values()) == 0, (report.errors, report.first_error)


@pytest.fixture
def target(server: Callable[..., Any], mtls: MtlsPKI) -> Any:
    run = server({"/": hello}, cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem)
    return run


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_full_handshakes_against_httpsys(target: Any, mtls: MtlsPKI, tls: str) -> None:
    r = run_handshake(f"https://localhost:{target.port}/", connections=4, duration=1.0, tls=tls,
                      cafile=str(mtls.root.cert_file))
    no_errors(r)
    assert r.handshakes > 10 and r.full == r.handshakes and r.resumed == 0
    assert r.responses >= r.handshakes - 4  # the last few may be cut by the end of the run
    assert set(r.latency_ms) == {"connect", "handshake", "first_byte"}
    lat = r.latency_ms
    assert 0 < lat["connect"]["p50"] <= lat["handshake"]["p50"] <= lat["first_byte"]["p50"]


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_resumption_share(target: Any, tls: str) -> None:
    r = run_handshake(f"https://127.0.0.1:{target.port}/", connections=2, duration=1.0, tls=tls, resume=1.0)
    no_errors(r)
    # All but the first connections (one per slot, before the server gave a session) resume.
    assert r.resumed > 0 and r.full <= 2 + r.handshakes // 50, (r.full, r.resumed)


def test_client_certificates(server: Callable[..., Any], mtls: MtlsPKI) -> None:
    run = server(cert=None)
    run.srv.set_sslcert(f"0.0.0.0:{run.port}", mtls.server.chain_pem, mtls.server.key_pem,
                        clientcertnegotiation=True, trusted_ca_pem=mtls.trusted_ca_pem)
    run.srv.add_app(f"https://+:{run.port}/", hello, ssl_flags="Ssl,SslNegotiateCert,SslRequireCert")
    r = run_handshake(f"https://127.0.0.1:{run.port}/", connections=2, duration=0.5,
                      cert=str(mtls.client.chain_file), key=str(mtls.client.key_file))
    no_errors(r)
    assert r.responses > 0


def test_a_closed_port_counts_connect_errors() -> None:
    r = run_handshake(f"https://127.0.0.1:{free_port()}/", connections=1, duration=0.2)
    assert r.handshakes == 0 and r.errors["connect"] > 0 and "connect" in r.first_error


@pytest.mark.parametrize("kwargs, param", [
    ({"url": "http://127.0.0.1:1/"}, "URL"),
    ({"url": "https://127.0.0.1:1/", "tls": "1.1"}, "tls"),
    ({"url": "https://127.0.0.1:1/", "resume": 1.5}, "resume"),
    ({"url": "https://127.0.0.1:1/", "cert": "c.pem"}, "cert"),
    ({"url": "https://127.0.0.1:1/", "cert": "/nonexistent.pem", "key": "/nonexistent.pem"}, "cert"),
    ({"url": "https://127.0.0.1:1/", "connections": 0}, "connections (1-100000), duration (> 0) or resume (0-1) out of range"),
])
def test_bad_arguments_name_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    url = kwargs.pop("url")
    with pytest.raises(InvalidParameterError) as exc:
        run_handshake(url, duration=0.1, **kwargs)
    assert exc.value.param == param


def test_percentiles_nearest_rank() -> None:
    assert percentiles(list(range(1000, 101000, 1000))) == {
        "p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 100.0, "max": 100.0}
    assert percentiles([]) == {}


def test_the_command(target: Any, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "httpsys", "bench", "handshake",
                        f"https://127.0.0.1:{target.port}/", "--connections", "2", "--duration", "0.5",
                        "--tls", "1.3", "--json", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "handshakes" in p.stdout and "TLS handshake" in p.stdout
    data = json.loads(out.read_text())
    assert data["handshakes"] > 0 and data["handshakes_per_s"] > 0 and "samples_ms" not in data
    bad = subprocess.run([sys.executable, "-m", "httpsys", "bench", "handshake", "ftp://x/"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60, check=False)
    assert bad.returncode == 2 and "URL must be https://" in bad.stderr


@pytest.fixture
def nginx(tmp_path: Path, mtls: MtlsPKI) -> Iterator[int]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        pytest.skip("nginx is not installed (.ci/run installs nginx-light)")
    port = free_port()
    key = tmp_path / "key.pem"
    key.write_bytes(mtls.server.key_pem)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(mtls.server.chain_pem)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""daemon off; master_process off; worker_processes 1;
pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off;
  client_body_temp_path {tmp_path}/cb; proxy_temp_path {tmp_path}/px; fastcgi_temp_path {tmp_path}/fc;
  uwsgi_temp_path {tmp_path}/uw; scgi_temp_path {tmp_path}/sc;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {chain}; ssl_certificate_key {key};
           ssl_protocols TLSv1.2 TLSv1.3; location / {{ return 200 "hello"; }} }} }}
""")
    proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE,
                            env=clients.tool_env())  # without the ASan preload of the ASan run
    try:
        deadline = time.monotonic() + 10
        import socket
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # also closes the stderr pipe


def test_against_nginx(nginx: int, mtls: MtlsPKI) -> None:
    r = run_handshake(f"https://localhost:{nginx}/", connections=4, duration=1.0, tls="1.3",
                      cafile=str(mtls.root.cert_file))
    no_errors(r)
    assert r.handshakes > 10 and r.responses > 0
    resumed = run_handshake(f"https://127.0.0.1:{nginx}/", connections=2, duration=0.5, resume=1.0)
    no_errors(resumed)
    assert resumed.resumed > 0
