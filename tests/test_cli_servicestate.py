"""``httpsys http show servicestate``: real servers in this process, the real console command in
a child process, both using one runtime directory (HTTPSYS_RUNTIME_DIR) under tmp_path."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from httpsys import control

ROOT = Path(__file__).resolve().parent.parent

HEADER = ("Snapshot of HTTP service state (Server Session View):\n"
          "-----------------------------------------------------\n\n")


@pytest.fixture
def rundir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setenv("HTTPSYS_RUNTIME_DIR", str(d))
    monkeypatch.setenv("HTTPSYS_STORE", str(tmp_path / "store.db"))
    return d


def show(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "httpsys", "http", "show", "servicestate", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                          check=False)


def ok(*args: str) -> str:
    p = show(*args)
    assert p.returncode == 0 and p.stderr == "", p
    return p.stdout


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_no_server(rundir: Path) -> None:
    assert ok() == HEADER + "No active server sessions\n"
    assert ok("view=requestq", "verbose=no").startswith(
        "Snapshot of HTTP service state (Request Queue View):\n")


def test_bad_parameter(rundir: Path) -> None:
    p = show("view=client")
    assert p.returncode == 2 and "view" in p.stderr, p


def test_lists_prefix_limit_and_socket_modes(rundir: Path, server: Any) -> None:
    run = server({"/api/": hello}, queue_limit=77)
    socks = list(rundir.glob("server-*.sock"))
    assert [s.name for s in socks] == [f"server-{os.getpid()}-{run.srv._control.id}.sock"]
    assert stat.S_IMODE(os.stat(socks[0]).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(socks[0]).st_mode)
    assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o700

    out = ok()
    assert out.startswith(HEADER + "Server session ID: FF"), out
    assert f"HTTPS://+:{run.port}/api/" in out
    assert "    Max requests: 77\n" in out
    assert "    Number of requests: 0\n" in out
    assert f"    Process ID: {os.getpid()}\n" in out
    assert "Number of registered URLs: 1" in out
    queue = run.srv.servicestate()["queues"][0]["name"]
    assert out.count(f"Request queue name: {queue}\n") == 2  # URL group and queue
    assert "Properties:" not in ok("verbose=no")
    rq = ok("view=requestq")
    assert rq.index(f"Request queue name: {queue}") < rq.index(f"HTTPS://+:{run.port}/api/")


def _get(port: int, ca_file: str, path: str, results: list[Any]) -> None:
    ctx = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            results.append(data)
    except Exception as exc:  # noqa: BLE001 (reported by the test's asserts)
        results.append(exc)


def test_held_request_shows_queue_length_and_connections(rundir: Path, server: Any,
                                                         ca_file: str) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        entered.set()
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow"]

    run = server({"/": slow}, workers=1)
    results: list[Any] = []
    clients = [threading.Thread(target=_get, args=(run.port, ca_file, "/", results))
               for _ in range(2)]
    try:
        clients[0].start()
        assert entered.wait(10)
        clients[1].start()  # queued behind the held one: the only worker is busy
        deadline = time.monotonic() + 10
        while len(run.srv._apps[next(iter(run.srv._apps))].queue) < 1:
            assert time.monotonic() < deadline, "the second request never got queued"
            time.sleep(0.01)
        out = ok()
        assert "    Number of requests: 1\n" in out, out
        assert "    Number of open connections: 2\n" in out, out
    finally:
        release.set()
        for t in clients:
            t.join(30)
    assert len(results) == 2 and all(isinstance(r, bytes) and r.startswith(b"HTTP/1.1 200")
                                     for r in results), results
    assert "    Number of requests: 0\n" in ok()


def test_several_servers(rundir: Path, server: Any) -> None:
    a = server({"/a/": hello})
    b = server({"/b/": hello, "/c/": hello})
    out = ok()
    assert out.count("Server session ID:") == 2
    for url in (f"HTTPS://+:{a.port}/a/", f"HTTPS://+:{b.port}/b/", f"HTTPS://+:{b.port}/c/"):
        assert url in out
    assert out.count("    Max requests: 1000\n") == 3


_REFUSED_CHILD = r"""
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
assert os.getuid() == 65534 and os.geteuid() == 65534
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"query": "servicestate"}\n')
except BrokenPipeError:  # the server closed first: refused before our request arrived
    pass
try:
    data = s.recv(65536)
except ConnectionResetError:  # closed with our request unread
    data = b""
print("EOF" if data == b"" else "ANSWER " + data.decode())
"""


@pytest.fixture
def shared_rundir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A runtime directory another uid can reach (pytest's tmp_path is inside a 0700 one)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="httpsys-test-run-"))
    os.chmod(d, 0o755)
    monkeypatch.setenv("HTTPSYS_RUNTIME_DIR", str(d / "run"))
    monkeypatch.setenv("HTTPSYS_STORE", str(tmp_path / "store.db"))
    yield d / "run"
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another uid")
def test_other_uid_is_refused(shared_rundir: Path, server: Any,
                              caplog: pytest.LogCaptureFixture) -> None:
    rundir = shared_rundir
    server({"/": hello})
    sock = next(rundir.glob("server-*.sock"))
    # The 0700 directory and 0600 socket alone would stop uid 65534 before SO_PEERCRED is asked:
    # open them up for this test so that the uid check is what refuses.
    os.chmod(rundir, 0o755)
    os.chmod(sock, 0o666)
    try:
        p = subprocess.run([sys.executable, "-c", _REFUSED_CHILD, str(sock)], capture_output=True,
                           text=True, timeout=60, check=False)
    finally:
        os.chmod(sock, 0o600)
        os.chmod(rundir, 0o700)
    assert p.returncode == 0, p
    assert p.stdout.strip() == "EOF", p
    assert "refused a peer with uid 65534" in caplog.text  # SO_PEERCRED saw the other uid
    # ... while our own uid (root) still gets an answer on the same socket.
    answer = control.query(sock, {"query": "servicestate"})
    assert answer is not None and answer["servicestate"]["pid"] == os.getpid()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another uid")
def test_closed_modes_stop_another_uid_first(shared_rundir: Path, server: Any) -> None:
    server({"/": hello})
    sock = next(shared_rundir.glob("server-*.sock"))
    p = subprocess.run([sys.executable, "-c", _REFUSED_CHILD, str(sock)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode != 0 and "PermissionError" in p.stderr, p


def test_close_removes_socket_and_stale_ones_are_cleaned(rundir: Path, server: Any) -> None:
    run = server({"/": hello})
    path = run.srv._control.path
    assert path.exists()
    # A socket left by a process that died: nobody listens on it.
    stale = rundir / "server-999999-1.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    out = ok()
    assert out.count("Server session ID:") == 1
    assert not stale.exists()
    run.srv.close()
    assert not path.exists()
    assert list(rundir.glob("server-*.sock")) == []
    assert ok() == HEADER + "No active server sessions\n"


def test_protocol_answers_bad_requests(rundir: Path, server: Any) -> None:
    server({"/": hello})
    sock = next(rundir.glob("server-*.sock"))
    answer = control.query(sock, {"query": "nothing"})
    assert answer is not None and "error" in answer
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(b"not json\n")
        assert "error" in json.loads(s.recv(65536))


def test_no_store_is_opened_or_created(rundir: Path, tmp_path: Path, server: Any) -> None:
    # servicestate only asks the control sockets: a --store (or HTTPSYS_STORE) that does not
    # exist stays absent, folder included, and the running server is still listed.
    run = server({"/s/": hello})
    missing = tmp_path / "nowhere" / "store.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_STORE=str(tmp_path / "env" / "s.db"))
    for args in (["--store", str(missing)], []):
        p = subprocess.run([sys.executable, "-m", "httpsys", *args, "http", "show",
                            "servicestate"], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=60, check=False)
        assert p.returncode == 0 and p.stderr == "", p
        assert p.stdout.startswith(HEADER) and f"HTTPS://+:{run.port}/s/" in p.stdout
    bad = subprocess.run([sys.executable, "-m", "httpsys", "--store", str(missing), "http",
                          "show", "servicestate", "view=nope"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60, check=False)
    assert bad.returncode == 2 and "view" in bad.stderr
    assert not missing.parent.exists()
    assert not (tmp_path / "env").exists()
