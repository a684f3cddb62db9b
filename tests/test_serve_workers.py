"""``httpsys serve --workers N``: N real server processes sharing one port through SO_REUSEPORT,
seen the way a user sees them: ``httpsys http show servicestate`` lists one server session per
worker, TLS clients are answered by both, SIGTERM to the parent leaves no process behind, a
killed worker comes back, and workers that cannot start make the parent give up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clients import https_get
from conftest import PKI, free_port

from httpsys.certstore import CertStore
from httpsys.store import Store

ROOT = Path(__file__).resolve().parent.parent
APPID = "{00112233-4455-6677-8899-aabbccddeeff}"

# A WSGI app that says which process answered.
PID_APP = '''
import os

def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


class Serve:
    """``python -m httpsys --store STORE serve ...`` in its own runtime directory."""

    def __init__(self, tmp_path: Path, pki: PKI) -> None:
        self.tmp = tmp_path
        self.port = free_port()
        self.store = tmp_path / "store.db"
        self.rundir = tmp_path / "run"
        (tmp_path / "pidapp.py").write_text(PID_APP)
        self.env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}",
                        HTTPSYS_RUNTIME_DIR=str(self.rundir), HTTPSYS_STORE=str(self.store))
        with Store.open(self.store) as store:
            f = tmp_path / "leaf.pem"
            f.write_bytes(pki.leaf.chain_pem + pki.leaf.key_pem)
            (thumb,) = CertStore(store).import_file(f)
            store.add_sslcert("ipport", f"0.0.0.0:{self.port}", thumb, APPID)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, app: str = "pidapp:app",
              new_session: bool = False) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-m", "httpsys", "--store", str(self.store), "serve", "--app",
             f"https://+:{self.port}/={app}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT,
            start_new_session=new_session)
        self.procs.append(p)
        return p

    def servicestate_pids(self) -> list[int]:
        out = subprocess.run([sys.executable, "-m", "httpsys", "http", "show", "servicestate",
                              "verbose=no"], capture_output=True, text=True, env=self.env,
                             cwd=ROOT, timeout=60, check=True).stdout
        sessions = out.count("Server session ID:")
        pids = [int(m) for m in re.findall(r"^    Process ID: (\d+)$", out, re.MULTILINE)]
        assert len(pids) == sessions, out
        return pids

    def wait_sessions(self, count: int, p: subprocess.Popen[str], exclude: frozenset[int] = frozenset(),
                      timeout: float = 30) -> list[int]:
        """Waits until servicestate lists ``count`` sessions (none of them ``exclude``)."""
        deadline = time.monotonic() + timeout
        while True:
            assert p.poll() is None, p.communicate()
            pids = self.servicestate_pids()
            if len(pids) == count and not set(pids) & exclude:
                return pids
            assert time.monotonic() < deadline, f"servicestate lists {pids}"
            time.sleep(0.05)

    def get(self, ca_file: str) -> int:
        status, _, body = https_get(self.port, "/", ca=ca_file)
        assert status == 200, body
        return int(body)


@pytest.fixture
def serve(tmp_path: Path, pki: PKI) -> Iterator[Serve]:
    s = Serve(tmp_path, pki)
    yield s
    for p in s.procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def gone(pids: list[int], timeout: float = 10) -> bool:
    """True once none of ``pids`` exists (zombies included: a reaped process is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def stop(p: subprocess.Popen[str]) -> tuple[int, str, str]:
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_two_workers_share_the_port(serve: Serve, ca_file: str) -> None:
    p = serve.start("--workers", "2", "--threads", "2")
    pids = serve.wait_sessions(2, p)
    assert len(set(pids)) == 2 and p.pid not in pids
    assert all(ppid(pid) == p.pid for pid in pids)  # the parent's children, not strangers
    # Every connection is new, so the kernel spreads them over both listening sockets.
    answered = [serve.get(ca_file) for _ in range(120)]
    assert set(answered) == set(pids)
    rc, out, err = stop(p)
    assert rc == 0, err
    assert gone(pids), "a worker outlived the parent"
    for pid in pids:
        assert f"serving https://+:{serve.port}/ " in out
        assert f"pid {pid}]" in out
    assert serve.servicestate_pids() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", serve.port), timeout=5).close()


def test_concurrent_requests(serve: Serve, ca_file: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = serve.start("--workers", "2")
    pids = serve.wait_sessions(2, p)
    with ThreadPoolExecutor(16) as pool:
        answered = list(pool.map(lambda _: serve.get(ca_file), range(400)))
    assert len(answered) == 400 and set(answered) == set(pids)
    rc, _, err = stop(p)
    assert rc == 0, err
    assert gone(pids)


def test_ctrl_c_to_the_process_group(serve: Serve, ca_file: str) -> None:
    # A terminal's Ctrl-C reaches the parent and every worker at once; the parent forwards a
    # SIGTERM on top. Everyone stops once, quietly.
    p = serve.start("--workers", "2", new_session=True)
    pids = serve.wait_sessions(2, p)
    assert serve.get(ca_file) in pids
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "restarting" not in err, err
    assert gone(pids)


def test_a_killed_worker_is_restarted(serve: Serve, ca_file: str) -> None:
    p = serve.start("--workers", "2")
    pids = serve.wait_sessions(2, p)
    os.kill(pids[0], signal.SIGKILL)
    assert gone([pids[0]])
    new = serve.wait_sessions(2, p, exclude=frozenset({pids[0]}))
    assert pids[1] in new and ppid(next(x for x in new if x != pids[1])) == p.pid
    assert {serve.get(ca_file) for _ in range(60)} == set(new)
    rc, _, err = stop(p)
    assert rc == 0, err
    assert re.search(rf"worker \d \(pid {pids[0]}\) was killed by SIGKILL after [0-9.]+s; "
                     r"restarting it in [0-9.]+s", err), err
    assert gone(new)


def test_workers_that_cannot_start_make_the_parent_give_up(serve: Serve) -> None:
    p = serve.start("--workers", "2", app="no_such_module_here:app")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    assert "keep dying at start" in err and "giving up" in err
    assert "No module named 'no_such_module_here'" in err
    started = [int(x) for x in re.findall(r"started \(pid (\d+)\)", err)]
    assert len(started) >= 5
    assert gone(started)


def test_a_killed_parent_leaves_no_worker(serve: Serve) -> None:
    p = serve.start("--workers", "2")
    pids = serve.wait_sessions(2, p)
    p.kill()  # no chance to stop them: the kernel tells them (PR_SET_PDEATHSIG)
    p.communicate(timeout=30)
    assert gone(pids)


def test_one_worker_has_no_parent_process(serve: Serve, ca_file: str) -> None:
    p = serve.start("--threads", "1")  # --workers 1 by default: the server itself
    pids = serve.wait_sessions(1, p)
    assert pids == [p.pid]
    assert serve.get(ca_file) == p.pid
    rc, _, err = stop(p)
    assert rc == 0, err


@pytest.mark.parametrize("args", [["--workers", "0"], ["--threads", "0"], ["--workers", "x"]])
def test_bad_counts_are_refused(serve: Serve, args: list[str]) -> None:
    p = serve.start(*args)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "positive integer" in err, err


def test_demo_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    rundir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_RUNTIME_DIR=str(rundir))
    p = subprocess.Popen([sys.executable, "-m", "httpsys", "--store", str(tmp_path / "store.db"),
                          "demo", "--port", str(port), "--workers", "2", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run([sys.executable, "-m", "httpsys", "http", "show",
                                  "servicestate"], capture_output=True, text=True, env=env,
                                 cwd=ROOT, timeout=60, check=True).stdout
            if out.count("Server session ID:") == 2:
                break
            assert p.poll() is None and time.monotonic() < deadline, out
            time.sleep(0.05)
        for _ in range(10):
            status, _, body = https_get(port, "/", ca=str(tmp_path / "demo-localhost.crt"))
            assert status == 200 and b"httpsys is serving this page" in body
    finally:
        rc, out, err = stop(p)
    assert rc == 0, err
    assert out.count(f"httpsys demo: https://localhost:{port}/") == 1, out  # one banner
    assert out.count("made a self-signed certificate") == 1, out
