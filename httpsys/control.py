"""Each running Server's control socket: how ``httpsys http show servicestate`` asks it its state.

A started Server listens on a Unix socket ``server-<pid>-<n>.sock`` in the runtime directory
(``runtime_dir()``): ``HTTPSYS_RUNTIME_DIR`` if set, else ``/run/httpsys`` for root, else
``$XDG_RUNTIME_DIR/httpsys`` or ``/tmp/httpsys-<uid>``. The directory is 0700 and the socket
0600, and the server checks each peer's uid with SO_PEERCRED: anyone but its own uid or root is
refused (the connection is closed without an answer).

The protocol is one JSON object per connection each way, each ending in a newline:
``{"query": "servicestate"}`` gets ``{"servicestate": {...}}`` (``Server.servicestate()``);
anything else gets ``{"error": "..."}``.

``query_all()`` is the client side: it asks every socket in the directory, skips (and removes)
stale ones whose server is gone, and skips those that refuse to answer.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("httpsys")

#: The largest request or answer read (a state with thousands of prefixes fits well within).
MAX_MESSAGE = 16 * 1024 * 1024
#: How long one peer may take to send its request, and the client to wait for an answer.
IO_TIMEOUT = 2.0

_ids = itertools.count(1)


class ControlError(OSError):
    """The runtime directory is unusable (owned by someone else, not a directory, ...)."""


def runtime_dir() -> Path:
    """The directory of the control sockets (not created here)."""
    env = os.environ.get("HTTPSYS_RUNTIME_DIR")
    if env:
        return Path(env)
    uid = os.getuid()
    if uid == 0:
        return Path("/run/httpsys")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "httpsys"
    return Path(f"/tmp/httpsys-{uid}")


def _ensure_dir(path: Path) -> None:
    """Creates ``path`` 0700 if missing; refuses one that is not a directory of ours."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"the runtime directory {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ControlError(f"the runtime directory {path} belongs to uid {st.st_uid}, not to "
                           f"uid {os.getuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))
    return int(uid)


def _read_line(conn: socket.socket) -> bytes:
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError("message too long")
    return bytes(data).split(b"\n", 1)[0]


class ControlServer:
    """The listening side, owned by one Server: ``state()`` answers ``servicestate``."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self.id = next(_ids)
        self.path: Path | None = None
        self._sock: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ino: tuple[int, int] | None = None

    def start(self) -> None:
        directory = runtime_dir()
        _ensure_dir(directory)
        path = directory / f"server-{os.getpid()}-{self.id}.sock"
        try:
            path.unlink()  # a leftover of an earlier process with this pid
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # 0600 whatever the umask: create it 0600 (umask 0177) and chmod before listen().
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            st = os.stat(path)
            sock.listen(16)
        except BaseException:
            sock.close()
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            raise
        self._sock, self.path, self._ino = sock, path, (st.st_dev, st.st_ino)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"httpsys-control-{self.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops answering and removes the socket file; waits for an answer in progress."""
        if self._sock is None:
            return
        self._stopping.set()
        assert self._wake_w is not None and self._wake_r is not None
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        path = self.path
        try:
            # Only our own file: never one another server made under the same name since.
            if path is not None:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == self._ino:
                    path.unlink()
        except FileNotFoundError:
            pass
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sock = None

    def _run(self) -> None:
        assert self._sock is not None and self._wake_r is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._sock, self._wake_r], [], [])
            except OSError:
                return
            if self._stopping.is_set():
                return
            if self._sock not in ready:
                continue
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    self._serve(conn)
                except Exception as exc:  # noqa: BLE001 (one bad peer never stops the socket)
                    log.debug("control socket %s: %s", self.path, exc)

    def _serve(self, conn: socket.socket) -> None:
        uid = peer_uid(conn)
        if uid not in (os.getuid(), 0):
            log.warning("control socket %s: refused a peer with uid %d", self.path, uid)
            return  # closed without an answer
        conn.settimeout(IO_TIMEOUT)
        try:
            request = json.loads(_read_line(conn) or b"null")
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("query") == "servicestate":
            answer: dict[str, Any] = {"servicestate": self._state()}
        else:
            answer = {"error": 'expected {"query": "servicestate"}'}
        conn.sendall(json.dumps(answer).encode() + b"\n")


# ---- client ------------------------------------------------------------------------------------


def query(path: str | os.PathLike[str], request: dict[str, Any],
          timeout: float = IO_TIMEOUT) -> dict[str, Any] | None:
    """Sends ``request`` to one control socket; its answer, or None if it closed without one
    (it refused us). Raises OSError (ConnectionRefusedError for a stale socket) otherwise."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = _read_line(sock)
    if not line:
        return None
    answer = json.loads(line)
    return answer if isinstance(answer, dict) else None


def query_all(request: dict[str, Any], directory: Path | None = None,
              on_skip: Callable[[Path, str], None] | None = None) -> list[dict[str, Any]]:
    """Asks every control socket in the runtime directory; the answers, in the sockets' order.

    A socket nobody listens on any more is removed; one that refuses us or does not answer in
    time is skipped, reported through ``on_skip(path, why)``.
    """
    directory = runtime_dir() if directory is None else directory
    try:
        paths = sorted(directory.glob("server-*.sock"),
                       key=lambda p: [int(x) if x.isdigit() else 0
                                      for x in p.stem.split("-")[1:]])
    except OSError:
        return []
    answers = []
    for path in paths:
        try:
            answer = query(path, request)
        except (ConnectionRefusedError, FileNotFoundError):
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    path.unlink()  # stale: its server is gone
            except OSError:
                pass
            continue
        except (OSError, ValueError) as exc:
            if on_skip:
                on_skip(path, str(exc) or type(exc).__name__)
            continue
        if answer is None:
            if on_skip:
                on_skip(path, "closed without answering (refused)")
            continue
        answers.append(answer)
    return answers
