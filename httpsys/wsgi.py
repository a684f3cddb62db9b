"""WSGI (PEP 3333) on worker threads.

A worker pulls a request from its C queue with a blocking call (cffi releases the GIL), builds
the environ from the one block C laid out, runs the application and hands the response back to
C in as few calls as possible: one for the common ``[body]`` response.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ._native import ffi, lib
from .errors import ConnectionGoneError

log = logging.getLogger("httpsys")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_FINAL = lib.HS_SEND_FINAL
_OK = lib.HS_RESULT_OK
_GONE = lib.HS_RESULT_CONNECTION_GONE
_TIMEOUT = lib.HS_RESULT_TIMEOUT
_SHUTDOWN = lib.HS_RESULT_SHUTDOWN
_INTERNAL = lib.HS_REJECT_INTERNAL
#: EntityBody timeout (reference 2.1): how long a read of wsgi.input waits for the client.
BODY_TIMEOUT_MS = 120_000


class _NoBody:
    """wsgi.input of a request without a body."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self) -> _NoBody:
        return self

    def __next__(self) -> bytes:
        raise StopIteration


_NO_BODY = _NoBody()


class Input:
    """wsgi.input: streams the request body from the C core as the application reads it."""

    __slots__ = ("_req", "_buf", "_cbuf", "_eof")

    def __init__(self, req: Any, cbuf: Any) -> None:
        self._req = req
        self._cbuf = cbuf
        self._buf = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        n = lib.hs_request_read_body(self._req, self._cbuf, len(self._cbuf), BODY_TIMEOUT_MS)
        if n > 0:
            self._buf += ffi.buffer(self._cbuf, n)
            return True
        if n == 0:
            self._eof = True
            return False
        if -n == _TIMEOUT:
            raise TimeoutError("the client sent no body data for 120 s (EntityBody timeout)")
        raise ConnectionGoneError("the client closed the connection before sending the whole body")

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            size = len(self._buf)
        while len(self._buf) < size and self._fill():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = sys.maxsize if size is None or size < 0 else size
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl >= 0 or len(self._buf) >= limit or not self._fill():
                break
            start = max(0, len(self._buf) - 1)
        end = nl + 1 if nl >= 0 else len(self._buf)
        end = min(end, limit)
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def build_environ(block: bytes, base: dict[str, Any]) -> dict[str, Any]:
    """Builds a WSGI environ from the C environ block: NUL-separated key/value pairs (the
    HS_ENV_FIXED fixed ones first, see csrc/httpsys.h), split in one pass."""
    environ = base.copy()
    parts = iter(block.decode("latin-1").split("\0"))
    environ.update(zip(parts, parts))
    flags = environ.get("httpsys.client_cert_error")
    if flags is not None:  # TLS connections: HTTP.sys's CertFlags status, 0 when verified or none
        environ["httpsys.client_cert_error"] = int(flags)
    return environ


_BASE_ENVIRON: dict[str, Any] = {
    "wsgi.version": (1, 0),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
}


class _Response:
    """What start_response recorded, and how far the response got."""

    __slots__ = ("req", "status", "headers", "head", "length", "started", "finished")

    def __init__(self, req: Any) -> None:
        self.req = req
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head = b""
        self.length = -1
        self.started = False  # the head went to C
        self.finished = False  # C has the final bytes; the request handle is released

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.write

    def _make_head(self) -> None:
        if self.status is None:
            raise AssertionError("the application did not call start_response")
        lines = [f"{name}: {value}\r\n" for name, value in self.headers]
        for name, value in self.headers:
            if len(name) == 14 and name.lower() == "content-length":
                self.length = int(value)
        self.head = (self.status + "\r\n" + "".join(lines)).encode("latin-1")

    def send(self, data: bytes, final: bool) -> None:
        flags = _FINAL if final else 0
        self.finished = final
        if not self.started:
            self._make_head()
            self.started = True
            rc = lib.hs_request_respond(self.req, self.head, len(self.head), self.length, data, len(data), flags)
        else:
            rc = lib.hs_request_write(self.req, data, len(data), flags)
        if rc == _GONE and not final:
            raise ConnectionGoneError("the client closed the connection")

    def write(self, data: bytes) -> None:
        if data:
            self.send(data, False)


def handle(app: WSGIApp, info: Any, cbuf: Any) -> None:
    """Runs one request through the application; always ends the request handle exactly once."""
    req = info.req
    environ = build_environ(ffi.unpack(info.environ, info.environ_len), _BASE_ENVIRON)
    environ["wsgi.input"] = Input(req, cbuf) if info.has_body else _NO_BODY
    resp = _Response(req)
    try:
        result = app(environ, resp.start_response)
        try:
            if type(result) is list and len(result) == 1 and not resp.started:
                resp.send(result[0], True)  # the common case: one call hands it all over
            else:
                _send_result(resp, result)
        finally:
            if hasattr(result, "close"):
                result.close()
    except ConnectionGoneError:
        log.info("client %s:%s went away during %s %s", environ["REMOTE_ADDR"], environ["REMOTE_PORT"],
                 environ["REQUEST_METHOD"], environ["RAW_URI"])
    except BaseException:
        log.exception("application error on %s %s", environ["REQUEST_METHOD"], environ["RAW_URI"])
    finally:
        if not resp.finished:
            if resp.started:
                lib.hs_request_abort(req)  # the head is out: the client sees a cut connection
            else:
                lib.hs_request_fail(req, _INTERNAL)  # nothing sent yet: 500 from the core
            resp.finished = True


def _send_result(resp: _Response, result: Iterable[bytes]) -> None:
    if isinstance(result, (list, tuple)) and len(result) == 1 and not resp.started:
        resp.send(result[0], True)
        return
    # Each block goes out as soon as the application yields it (PEP 3333: no delaying).
    for chunk in result:
        if chunk:
            resp.send(chunk, False)
    resp.send(b"", True)


def worker(queue: Any, app: WSGIApp) -> None:
    """A worker thread's loop: receive, handle, until the queue shuts down."""
    info = ffi.new("hs_request_info_t *")
    cbuf = ffi.new("char[]", 65536)
    receive = lib.hs_queue_receive
    while True:
        rc = receive(queue, -1, info)
        if rc == _OK:
            handle(app, info, cbuf)
        elif rc != _TIMEOUT:
            return
