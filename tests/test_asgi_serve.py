"""``httpsys serve --app PREFIX=module:app --interface asgi`` as a real process: an ASGI and a
WSGI app side by side, auto-detection, and a failed lifespan startup that stops ``serve`` with
a clear message and a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from clients import handshake_error, https_get
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

APPS = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = f"asgi {scope['root_path']} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def failing(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi " + environ["PATH_INFO"].encode()]
''')


def serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "asgi_mod.py").write_text(APPS)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}",
               HTTPSYS_STORE=str(tmp_path / "store.db"))
    return subprocess.Popen([sys.executable, "-m", "httpsys", "--store", str(tmp_path / "store.db"),
                             "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT, text=True)


def wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if handshake_error(port, timeout=2) is None:
                return
        except (ConnectionRefusedError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_serve_an_asgi_and_a_wsgi_app(tmp_path: Path, leaf_files: Any) -> None:
    port = free_port()
    cert, key = leaf_files
    proc = serve(tmp_path, "--app", f"https://+:{port}/a/=asgi_mod:app", "--interface", "asgi",
                 "--app", f"https://+:{port}/auto/=asgi_mod:app",
                 "--app", f"https://+:{port}/w/=asgi_mod:wsgi_app", "--interface", "wsgi",
                 "--cert", cert, "--key", key)
    try:
        wait_listening(proc, port)
        assert https_get(port, "/a/x")[::2] == (200, b"asgi /a /a/x")
        assert https_get(port, "/auto/y")[::2] == (200, b"asgi /auto /auto/y")
        assert https_get(port, "/w/z")[::2] == (200, b"wsgi /z")
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert f"serving https://+:{port}/a/" in out


def test_a_failed_lifespan_startup_stops_serve(tmp_path: Path, leaf_files: Any) -> None:
    port = free_port()
    cert, key = leaf_files
    proc = serve(tmp_path, "--app", f"https://+:{port}/bad/=asgi_mod:failing", "--interface",
                 "asgi", "--cert", cert, "--key", key)
    _, err = proc.communicate(timeout=30)  # it exits by itself
    code = proc.returncode
    assert code == 1
    assert (f"httpsys serve: error: the ASGI application at https://+:{port}/bad/ failed its "
            "lifespan startup: no database") in err


def test_interface_goes_after_its_app(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--interface", "asgi", "--app", "https://+:1/x/=asgi_mod:app")
    code, _, err = proc.wait(timeout=30), *proc.communicate()
    assert code == 2 and "--interface: it applies to the --app before it" in err
    proc = serve(tmp_path, "--app", "https://+:1/x/=asgi_mod:app", "--interface", "rsgi")
    code, _, err = proc.wait(timeout=30), *proc.communicate()
    assert code == 2 and "invalid choice: 'rsgi'" in err
