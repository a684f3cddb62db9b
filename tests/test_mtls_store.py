"""Issue 4 through the store and the real commands: `httpsys cert import --store ROOT`,
`httpsys crl add`, `httpsys http add sslcert ... clientcertnegotiation=enable`, `httpsys serve
--ssl-flags`, and a CRL added while the server runs reaching the next handshake."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port
from mtls_pki import MtlsPKI
from test_client_certs import fetch
from test_serve_cli import ROOT, run  # noqa: F401 - run is a fixture

APPID = "{00112233-4455-6677-8899-aabbccddeeff}"


def cli(store: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "httpsys", "--store", str(store), *args],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert p.returncode == 0, p
    return p.stdout


def test_client_certificates_from_the_store(run, tmp_path: Path, mtls: MtlsPKI) -> None:  # noqa: F811
    store = tmp_path / "store.db"
    port = free_port()
    cli(store, "cert", "import", str(mtls.root.cert_file), "--store", "ROOT")
    cli(store, "cert", "import", str(mtls.intermediate.cert_file), "--store", "CA")
    cli(store, "crl", "add", str(mtls.crl_intermediate.pem_file))
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(mtls.server.chain_pem + mtls.server.key_pem)
    thumb = cli(store, "cert", "import", str(server_pem)).split()[0]
    cli(store, "http", "add", "sslcert", f"ipport=0.0.0.0:{port}", f"certhash={thumb}", f"appid={APPID}",
        "clientcertnegotiation=enable")
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app",
               "--app", f"https://+:{port}/api/=httpsys.demo:app",
               "--ssl-flags", "Ssl,SslNegotiateCert,SslRequireCert")
    proc.wait_listening(port)
    try:
        ok = fetch(port, "/api/", mtls.client_context(mtls.client))
        assert ok.status == 200, ok.body
        page = ok.body.decode()
        assert "SUCCESS" in page and mtls.client.cert.subject.rfc4514_string() in page
        assert b"HTTP Error 403.13. " in fetch(port, "/api/", mtls.client_context(mtls.revoked)).body
        assert b"HTTP Error 403.7. " in fetch(port, "/api/", mtls.client_context(None)).body
        assert b"HTTP Error 403.16. " in fetch(port, "/api/", mtls.client_context(mtls.foreign)).body
        # The demo page at / has no flags: a certificate is shown, none is required.
        assert b"httpsys is serving this page" in fetch(port, "/", mtls.client_context(None)).body

        # A newer CRL that lists the client too, added while serving: live for the next handshake.
        crl = mtls.make_crl("store_live", mtls.intermediate, [mtls.client.serial, mtls.revoked.serial],
                            mtls.now, mtls.now.replace(year=mtls.now.year + 1))
        cli(store, "crl", "add", str(crl.pem_file))
        deadline = time.monotonic() + 5
        while fetch(port, "/api/", mtls.client_context(mtls.client)).status == 200:
            assert time.monotonic() < deadline, "the new CRL did not reach the server"
            time.sleep(0.02)
        assert b"HTTP Error 403.13. " in fetch(port, "/api/", mtls.client_context(mtls.client)).body
    finally:
        assert proc.finish() == 0, proc.err
