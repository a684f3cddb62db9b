"""``httpsys serve --app PREFIX=module:app --ssl-flags FLAGS``: the flags' parsing (pure), how
they pair with the ``--app`` before them, and the usage errors of the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from clients import https_get
from conftest import free_port
from test_serve_cli import ROOT, _store_with_binding, run  # noqa: F401 - run is a fixture

from httpsys.__main__ import _parser, parse_ssl_flags
from httpsys.errors import InvalidParameterError


@pytest.mark.parametrize("text, canonical", [
    ("Ssl", "Ssl"),
    ("ssl,sslnegotiatecert,SSLREQUIRECERT", "Ssl,SslNegotiateCert,SslRequireCert"),
    ("Ssl, SslNegotiateCert", "Ssl,SslNegotiateCert"),
    ("Ssl128 ,SslMapCert", "Ssl128,SslMapCert"),
    ("Ssl,Ssl", "Ssl"),
    ("none", "None"),
])
def test_flags_are_read_in_any_case_with_commas(text: str, canonical: str) -> None:
    assert parse_ssl_flags(text) == canonical


@pytest.mark.parametrize("text, named", [
    ("Ssl,SslRequire", "'SslRequire'"),
    ("Ssl SslNegotiateCert", "'Ssl SslNegotiateCert'"),
    ("Ssl,,SslNegotiateCert", "empty flag"),
    ("", "empty flag"),
    ("None,Ssl", "None cannot be combined"),
])
def test_bad_flags_are_named(text: str, named: str) -> None:
    with pytest.raises(InvalidParameterError) as e:
        parse_ssl_flags(text)
    assert named in str(e.value) and str(e.value).startswith("--ssl-flags: ")
    assert e.value.param == "ssl_flags"


def _serve_args(*argv: str) -> Any:
    return _parser().parse_args(["serve", *argv])


def test_flags_apply_to_the_app_before_them() -> None:
    args = _serve_args("--app", "https://+:1/a/=m:a", "--ssl-flags", "Ssl,SslRequireCert",
                       "--app", "https://+:1/b/=m:b",
                       "--app", "https://+:1/c/=m:c", "--ssl-flags", "sslnegotiatecert")
    assert args.app == ["https://+:1/a/=m:a", "https://+:1/b/=m:b", "https://+:1/c/=m:c"]
    assert args.app_ssl_flags == ["Ssl,SslRequireCert", None, "SslNegotiateCert"]
    args = _serve_args("--app", "https://+:1/=m:a")
    assert args.app_ssl_flags == [None]


def _serve(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "httpsys", "serve", *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                          check=False)


@pytest.mark.parametrize("argv, message", [
    (["--ssl-flags", "Ssl", "--app", "https://+:1/=httpsys.demo:app"],
     "argument --ssl-flags: it applies to the --app before it"),
    (["--app", "https://+:1/=httpsys.demo:app", "--ssl-flags", "Ssl,SslRequire"],
     "argument --ssl-flags: 'SslRequire' is not an SSL flag"),
    (["--app", "https://+:1/=httpsys.demo:app", "--ssl-flags", "Ssl", "--ssl-flags", "Ssl"],
     "argument --ssl-flags: given twice for --app https://+:1/=httpsys.demo:app"),
    (["--app", "https://+:1/=httpsys.demo:app", "--ssl-flags"],
     "argument --ssl-flags: expected one argument"),
])
def test_usage_errors_of_the_real_command(argv: list[str], message: str) -> None:
    r = _serve(*argv)
    assert r.returncode == 2, r
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert "usage: httpsys [--store PATH] serve" in r.stderr
    assert message in r.stderr, r.stderr


def test_serve_with_ssl_flags(run, tmp_path, pki, ca_file):  # noqa: F811
    port = free_port()
    store, _ = _store_with_binding(tmp_path, pki, port)
    store.close()
    proc = run("serve", "--app", f"https://+:{port}/=httpsys.demo:app", "--ssl-flags", "Ssl",
               "--app", f"https://+:{port}/private/=httpsys.demo:app",
               "--ssl-flags", "Ssl,SslNegotiateCert,SslRequireCert", "--workers", "1")
    try:
        proc.wait_listening(port)
        status, _, body = https_get(port, "/", ca=ca_file)
        assert status == 200 and b"httpsys is serving this page" in body
        # The flags belong to the --app before them: no client certificate, 403.7 from the core.
        status, _, body = https_get(port, "/private/", ca=ca_file)
        assert status == 403 and b"HTTP Error 403.7. " in body
    finally:
        assert proc.finish() == 0, proc.err
