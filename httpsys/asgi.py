"""ASGI 3.0 (HTTP and lifespan, with the TLS extension) on one asyncio loop thread per Server.

The C core treats an ASGI request queue like a WSGI one, except that nobody blocks on it: the
loop watches the queue's eventfd (``loop.add_reader``), which the I/O thread writes only when
the queue goes from "nothing for Python" to "something". One ``hs_queue_drain`` then takes every
new request and every request that changed since Python last asked about it (body bytes came,
the output fell below the low watermark, the client went away), so under load the loop wakes
once per batch, not once per request or per event.

Nothing here blocks the loop: body reads return what has arrived (``-IO_PENDING`` when nothing
has), response data is handed over at once, and a send above the high watermark (a slow client)
returns ``IO_PENDING`` after taking the data: the coroutine then waits until the core reports the
request writable again, so memory stays bounded by the watermark plus one message.

``build_scope`` is pure: it turns the environ block the core laid out (csrc/environ.c) into an
HTTP scope. App errors follow uvicorn's rule: before ``http.response.start`` went out the core
answers 500, after it the connection is reset; both are logged and the server goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import http
import inspect
import logging
import re
import sys
import threading
import types
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any

from ._native import ffi, lib
from .errors import ConnectionGoneError, HttpsysError, InvalidParameterError

log = logging.getLogger("httpsys")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Requests taken from a queue per drain (and changed requests reported per drain).
BATCH = 64
#: Most body bytes one ``http.request`` message carries.
BODY_CHUNK = 65536
#: Seconds requests in progress get to finish when their prefix is removed (then cancelled).
SHUTDOWN_GRACE = 5.0
#: Seconds the lifespan shutdown may take.
LIFESPAN_SHUTDOWN_TIMEOUT = 10.0

_FINAL = lib.HS_SEND_FINAL
_NOWAIT = lib.HS_SEND_NOWAIT
_OK = lib.HS_RESULT_OK
_PENDING = lib.HS_RESULT_IO_PENDING
_GONE = lib.HS_RESULT_CONNECTION_GONE
_INTERNAL = lib.HS_REJECT_INTERNAL
_WRITABLE = lib.HS_POLL_WRITABLE
_DISCONNECT = lib.HS_POLL_DISCONNECT


class LifespanError(HttpsysError):
    """An ASGI application's lifespan startup failed: it sent ``lifespan.startup.failed``, or
    raised after it received ``lifespan.startup``."""


# ---- interface detection ------------------------------------------------------------------------


def _positional_count(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments fn takes; None for *args or an unreadable signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def detect_interface(app: Any) -> str:
    """``"asgi"`` for a coroutine function (or an object whose ``__call__`` is one) taking three
    arguments, ``"wsgi"`` for any other callable. Raises InvalidParameterError when that cannot
    be told: a coroutine function that does not take three arguments, or not a callable."""
    if not callable(app):
        raise InvalidParameterError(f"app must be a WSGI or ASGI callable, not {type(app).__name__}",
                                    param="app")
    fn: Any = app
    while isinstance(fn, functools.partial):
        fn = fn.func
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn)):
        fn = type(fn).__call__  # an instance: its class's __call__ decides
    if not inspect.iscoroutinefunction(fn):
        return "wsgi"
    if _positional_count(app) == 3:
        return "asgi"
    raise InvalidParameterError(
        f"cannot tell the interface of {app!r}: a coroutine function, but it does not take the "
        f"three arguments of ASGI 3 (scope, receive, send); give interface='asgi' or 'wsgi'",
        param="interface")


# ---- the scope ----------------------------------------------------------------------------------

_TLS_VERSIONS = {b"TLSv1.2": 0x0303, b"TLSv1.3": 0x0304}
_HEADER_NAMES: dict[bytes, bytes] = {b"CONTENT_TYPE": b"content-type",
                                     b"CONTENT_LENGTH": b"content-length"}
_HEADER_NAMES_MAX = 2048  # the cache of CGI → header names stays bounded whatever clients send


def _header_name(key: bytes) -> bytes | None:
    """``b"HTTP_USER_AGENT"`` → ``b"user-agent"``; None for a key that is not a header."""
    name = _HEADER_NAMES.get(key)
    if name is None and key.startswith(b"HTTP_"):
        name = key[5:].replace(b"_", b"-").lower()
        if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
            _HEADER_NAMES[key] = name
    return name


def _raw_path(target: bytes) -> bytes:
    """The request target without its query; the path of an absolute-form target."""
    path = target.partition(b"?")[0] if b"?" in target else target
    if path[:1] != b"/":
        scheme_end = path.find(b"://")
        slash = path.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
        path = path[slash:] if slash >= 0 else b"/"
    return path


def tls_extension(meta: Mapping[bytes, bytes], server_certs: Mapping[str, str]) -> dict[str, Any]:
    """The ASGI TLS extension (reference 5.3) from the environ's TLS pairs: the certificate the
    client sent and the ones after it (``SSL_CLIENT_CERT``, ``SSL_CLIENT_CERT_CHAIN_n``), its
    subject (RFC 4514, as OpenSSL's RFC 2253 printer writes it), the verification failure if the
    prefix let an invalid one through, the version and cipher as wire numbers, and the server's
    certificate (looked up by the thumbprint the core reports)."""
    leaf = meta.get(b"SSL_CLIENT_CERT")
    chain: list[str] = []
    if leaf is not None:
        chain.append(leaf.decode("ascii"))
        n = 0
        while (more := meta.get(b"SSL_CLIENT_CERT_CHAIN_%d" % n)) is not None:
            chain.append(more.decode("ascii"))
            n += 1
    # A tuple: the extension is shared by the requests of a connection (build_scope's cache).
    verify = meta.get(b"SSL_CLIENT_VERIFY", b"NONE")
    error = None
    if verify.startswith(b"FAILED:"):
        error = verify[7:].decode("latin-1") or "verification failed"
    name = meta.get(b"SSL_CLIENT_S_DN")
    cipher = int(meta.get(b"httpsys.cipher_suite", b"-1"))
    thumbprint = meta.get(b"httpsys.server_cert")
    return {
        "server_cert": server_certs.get(thumbprint.decode("ascii")) if thumbprint else None,
        "client_cert_chain": tuple(chain),
        "client_cert_name": name.decode("utf-8", "replace") if name is not None and leaf else None,
        "client_cert_error": error if leaf is not None else None,
        "tls_version": _TLS_VERSIONS.get(meta.get(b"SSL_PROTOCOL", b"")),
        "cipher_suite": cipher if cipher >= 0 else None,
    }


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}

#: Most entries of a connection-facts cache (build_scope's ``cache``).
CONNECTION_CACHE_MAX = 1024


def _connection_facts(pairs: list[bytes], server_certs: Mapping[str, str]
                      ) -> tuple[str | None, dict[str, Any] | None]:
    """The local address and the TLS extension from the pairs after the headers."""
    meta = dict(zip(pairs[::2], pairs[1::2]))
    addr = meta.get(b"SERVER_ADDR")
    tls = tls_extension(meta, server_certs) if meta.get(b"HTTPS") == b"on" else None
    return addr.decode("latin-1") if addr is not None else None, tls


def build_scope(block: bytes, server_certs: Mapping[str, str] | None = None,
                state: dict[str, Any] | None = None,
                cache: dict[bytes, tuple[str | None, dict[str, Any] | None]] | None = None
                ) -> Scope:
    """The ASGI HTTP scope of a request from its environ block (``HS_ENV_FIXED`` pairs in the
    order of csrc/httpsys.h, then the headers as CGI names, then the TLS and ASGI pairs).

    ``root_path`` is the matched prefix (SCRIPT_NAME), ``path`` the whole canonical path
    (root_path included, as Starlette expects), ``raw_path`` the target as sent, ``headers``
    lower-case names in the order received (repeated headers come joined with ``", "``, and
    names with ``_`` are dropped by the core, as for WSGI). ``state`` is copied from the
    application's lifespan state.

    The pairs after the headers (local address, TLS facts) are the same for every request of
    a connection: with a ``cache`` dict they are worked out once and looked up by their bytes
    afterwards (each scope gets its own copy of the TLS extension)."""
    # The pairs after the headers start at HTTPS (TLS) or, on plain HTTP, at SERVER_ADDR, the
    # last pair (C lays it out for every ASGI queue): only what comes before them is split, and
    # the rest keys the cache as it is. A client cannot fake either place: "HTTPS" would have
    # to be a key (keys there are fixed names, HTTP_* or CONTENT_*), and SERVER_ADDR must be
    # the last key.
    at = block.find(b"\0HTTPS\0on\0")
    if at < 0:
        at = block.rfind(b"\0SERVER_ADDR\0")
        if at >= 0 and block.find(b"\0", at + 13) != len(block) - 1:
            at = -1  # not the last key: a header's value
    p = block[:at].split(b"\0") if at >= 0 else block.split(b"\0")
    end = len(p) if at >= 0 else len(p) - 1
    headers = []
    i = 22
    names = _HEADER_NAMES
    while i < end:
        name = names.get(p[i]) or _header_name(p[i])
        if name is None:
            break
        headers.append((name, p[i + 1]))
        i += 2
    if at >= 0 and i >= end:
        key = block[at + 1:]
    else:  # no such place, or pairs in front of it that are not headers: split it all
        p = block.split(b"\0")
        key = b"\0".join(p[i:])  # p[-1] is b"": key ends with NUL as above
    if cache is None or (facts := cache.get(key)) is None:
        facts = _connection_facts(key.split(b"\0")[:-1], server_certs or {})
        if cache is not None:
            if len(cache) >= CONNECTION_CACHE_MAX:
                cache.clear()
            cache[key] = facts
    addr, tls = facts
    script, path_info, target = p[3], p[5], p[19]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.0" if p[9] == b"HTTP/1.0" else "1.1",
        "method": _METHODS.get(p[1]) or p[1].decode("latin-1"),
        "scheme": p[21].decode("latin-1"),
        "path": (script + path_info).decode("utf-8", "replace"),
        "raw_path": target if b"?" not in target and target[:1] == b"/" else _raw_path(target),
        "query_string": p[7],
        "root_path": script.decode("utf-8", "replace"),
        "headers": headers,
        "client": (p[11].decode("latin-1"), int(p[13])),
        "server": (addr or p[15].decode("latin-1"), int(p[17])),
    }
    if state is not None:
        scope["state"] = state.copy()
    if tls is not None:
        scope["extensions"] = {"tls": tls.copy()}
    return scope


# ---- the response head --------------------------------------------------------------------------

_REASONS = {s.value: s.phrase.encode("latin-1") for s in http.HTTPStatus}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_GOOD_NAMES: set[bytes] = set()


_HEADS: dict[Any, tuple[bytes, int]] = {}  # (status, *headers) → head, for repeated responses


def response_head(status: Any, headers: Iterable[Any]) -> tuple[bytes, int]:
    """``http.response.start``'s status and headers → the head the core frames (status line
    without the version, header lines) and the Content-Length the app gave (-1: none). Raises
    TypeError or ValueError for a bad status or header (a CR or LF would split the response)."""
    items = headers if type(headers) is tuple else tuple(headers)
    if type(status) is not int:
        return _make_head(status, items)  # raises
    try:
        key: Any = (status, items)  # hashable when the headers are tuples of bytes
        hit = _HEADS.get(key)
    except TypeError:  # lists
        key = hit = None
    if hit is not None:
        return hit
    head = _make_head(status, items)
    if key is not None and len(_HEADS) < 512:
        _HEADS[key] = head
    return head


def _make_head(status: Any, headers: Iterable[Any]) -> tuple[bytes, int]:
    if type(status) is not int or not 100 <= status <= 999:
        raise ValueError(f"http.response.start: status must be an int 100-999, not {status!r}")
    parts = [b"%d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    length = -1
    for name, value in headers:
        if type(name) is not bytes or type(value) is not bytes:
            name, value = _as_bytes(name), _as_bytes(value)
        if name not in _GOOD_NAMES:
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"http.response.start: invalid header name {name!r}")
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.add(name)
        if b"\n" in value or b"\r" in value or b"\0" in value:
            raise ValueError(f"http.response.start: invalid value for header {name!r}")
        parts += (name, b": ", value, b"\r\n")
        if len(name) == 14 and name.lower() == b"content-length":
            length = int(value)
    return b"".join(parts), length


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"ASGI header names and values are bytes, not {type(value).__name__}")


# ---- one request --------------------------------------------------------------------------------

_DISCONNECT_MESSAGE = {"type": "http.disconnect"}


class _Request:
    """The receive and send of one request, and how far the response got."""

    __slots__ = (
        "body_open",
        "disconnected",
        "finished",
        "has_body",
        "head",
        "length",
        "owner",
        "req",
        "scope",
        "started",
        "waiters",
    )

    def __init__(self, req: Any, owner: AsgiQueue, scope: Scope, has_body: bool) -> None:
        self.req = req
        self.owner = owner
        self.scope = scope
        self.has_body = has_body
        self.body_open = True  # the last http.request (more_body False) is not out yet
        self.head: bytes | None = None  # from http.response.start, sent with the first body
        self.length = -1
        self.started = False  # the head went to the core
        self.finished = False  # the core has the final bytes; req is no longer ours
        self.disconnected = False
        self.waiters: list[asyncio.Future[None]] = []

    @property
    def what(self) -> str:
        """``GET /path`` for the log."""
        return f"{self.scope['method']} {self.scope['raw_path'].decode('latin-1')}"

    # -- waiting for the core --

    def wake(self) -> None:
        """The core reported a change (or the response finished): every waiter looks again."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _changed(self) -> None:
        fut: asyncio.Future[None] = self.owner.loop.create_future()
        self.waiters.append(fut)
        await fut

    # -- receive --

    async def receive(self) -> Message:
        if self.finished:  # the response is complete: nothing more to hear (as uvicorn)
            return _DISCONNECT_MESSAGE.copy()
        if not self.has_body and self.body_open:
            self.body_open = False
            return {"type": "http.request", "body": b"", "more_body": False}
        while self.body_open and not self.finished:
            message = self._read_body()
            if message is not None:
                return message
            await self._changed()
        return await self._wait_disconnect()

    def _read_body(self) -> Message | None:
        """The body bytes that have arrived, as one message; None when none have yet."""
        cbuf = self.owner.cbuf
        chunks = []
        total = 0
        n = 0
        while total < BODY_CHUNK:
            n = lib.hs_request_read_body_nowait(self.req, cbuf, BODY_CHUNK - total)
            if n <= 0:
                break
            chunks.append(ffi.buffer(cbuf, n)[:])
            total += n
        if n == -_GONE:
            self.disconnected = True
            if not chunks:
                self.body_open = False
                return _DISCONNECT_MESSAGE.copy()
        elif n == -_PENDING and not chunks:
            return None
        more = n != 0
        self.body_open = more
        return {"type": "http.request", "body": b"".join(chunks) if len(chunks) != 1 else chunks[0],
                "more_body": more}

    async def _wait_disconnect(self) -> Message:
        """After the body: waits until the client goes away, or the response is complete."""
        while not (self.finished or self.disconnected):
            if lib.hs_request_poll(self.req, _DISCONNECT):
                self.disconnected = True
                break
            await self._changed()
        return _DISCONNECT_MESSAGE.copy()

    # -- send --

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.head is None:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            if self.finished:
                if self.disconnected:
                    raise ConnectionGoneError("the client closed the connection")
                raise RuntimeError("ASGI: http.response.body after the response was complete")
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _as_bytes(body)
            if message.get("more_body", False):
                await self._send_more(body)
            else:
                self._send_final(body)
        elif kind == "http.response.start":
            if self.head is not None:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self.head, self.length = response_head(message["status"], message.get("headers", ()))
        else:
            raise RuntimeError(f"ASGI: unexpected message {kind!r} in an http scope")

    def _send_final(self, body: bytes) -> None:
        self.finished = True
        if self.started:
            lib.hs_request_write(self.req, body, len(body), _FINAL)
        else:
            self.started = True
            head = self.head or b""
            lib.hs_request_respond(self.req, head, len(head), self.length, body, len(body), _FINAL)
        self.owner.done(self)

    async def _send_more(self, body: bytes) -> None:
        if self.started:
            if not body:
                return
            rc = lib.hs_request_write(self.req, body, len(body), _NOWAIT)
        else:
            self.started = True
            head = self.head or b""
            rc = lib.hs_request_respond(self.req, head, len(head), self.length, body, len(body),
                                        _NOWAIT)
        if rc == _PENDING:
            # Above the high watermark: a slow client. The bytes are taken; wait until the core
            # has sent down to the low watermark before the app may produce more.
            while not self.finished and not lib.hs_request_poll(self.req, _WRITABLE):
                await self._changed()
        elif rc == _GONE:
            self.disconnected = True
            raise ConnectionGoneError("the client closed the connection")
        elif rc != _OK:
            raise ConnectionGoneError(f"the response could not be sent (error {rc})")

    def end(self, error: bool) -> None:
        """After the app returned or raised: a response it did not complete becomes a 500 from
        the core (nothing sent yet) or a reset connection (the head is out)."""
        if self.finished:
            return
        self.finished = True
        if self.started:
            lib.hs_request_abort(self.req)
        else:
            lib.hs_request_fail(self.req, _INTERNAL)
        if not error:
            log.error("ASGI application returned without completing the response to %s", self.what)
        self.owner.done(self)


# ---- lifespan -----------------------------------------------------------------------------------


class _Lifespan:
    """The lifespan protocol of one application (ASGI lifespan spec 2.0)."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.app = app
        self.loop = loop
        self.name = name
        self.state: dict[str, Any] = {}
        self.supported = True
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.received = 0
        self.answer: asyncio.Future[Message] | None = None
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Sends ``lifespan.startup`` and waits for the answer. Raises LifespanError."""
        self.task = self.loop.create_task(self._main())
        answer = await self._ask("lifespan.startup")
        if answer is None:
            return  # the app does not do lifespan
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanError(f"the ASGI application at {self.name} failed its lifespan startup: "
                                f"{answer.get('message') or '(no message)'}", param="app")
        if answer["type"] != "lifespan.startup.complete":
            raise LifespanError(f"the ASGI application at {self.name} failed its lifespan startup: "
                                f"{answer.get('message', answer['type'])}", param="app")

    async def shutdown(self) -> None:
        """Sends ``lifespan.shutdown`` and waits (LIFESPAN_SHUTDOWN_TIMEOUT) for the answer;
        failures are logged."""
        if not self.supported or self.task is None or self.task.done():
            return
        try:
            answer = await asyncio.wait_for(self._ask("lifespan.shutdown"), LIFESPAN_SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("the ASGI application at %s did not finish its lifespan shutdown in %.0f s",
                      self.name, LIFESPAN_SHUTDOWN_TIMEOUT)
            self.task.cancel()
            return
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            log.error("the ASGI application at %s failed its lifespan shutdown: %s", self.name,
                      answer.get("message") or "(no message)")

    async def _ask(self, kind: str) -> Message | None:
        """Sends one event; returns the app's answer, or None when the lifespan task ended
        without answering (after a failure, a LifespanError message)."""
        assert self.task is not None
        self.answer = self.loop.create_future()
        self.inbox.put_nowait({"type": kind})
        either: set[asyncio.Future[Any]] = {self.answer, self.task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if self.answer.done():
            return self.answer.result()
        exc = self.task.exception() if not self.task.cancelled() else None
        if exc is None or not self.received:
            return None
        return {"type": f"{kind}.failed", "message": f"{type(exc).__name__}: {exc}"}

    async def receive(self) -> Message:
        self.received += 1
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"ASGI: unexpected message {kind!r} in a lifespan scope")
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:
            if not self.received:
                # Raised before it asked for an event: an app without lifespan (uvicorn's
                # "auto"): serve it all the same.
                self.supported = False
                log.info("the ASGI application at %s does not support lifespan (%s: %s)",
                         self.name, type(exc).__name__, exc)
                return
            log.error("the ASGI application at %s raised in its lifespan", self.name,
                      exc_info=(type(exc), exc, exc.__traceback__))
            raise
        finally:
            if not self.received:
                self.supported = False


# ---- running a request: its first step at once ----------------------------------------------
#
# A Task costs several times what a hello-world app does (Python 3.11 registers every Task in a
# WeakSet, schedules its first step through the loop, ...). So the app's first step runs at once,
# in the drain callback, as asyncio 3.12's eager tasks do: most requests finish there and never
# need a scheduled Task. The step runs under a Task object made without scheduling anything
# (asyncio.current_task() returns it, so sniffio and anyio work), in a context of its own; an app
# that waits turns that same object into a real Task that goes on from where the step stopped,
# so whatever noted the current task in the first step (anyio cancel scopes) still finds it.


class _RequestTask(asyncio.Task):  # type: ignore[type-arg]
    """A Task that exists before it is scheduled (see above)."""

    def __init__(self, coro: Any) -> None:  # not Task.__init__: _continue() calls it if needed
        self._first_coro = coro

    def get_coro(self) -> Any:
        # Task's own get_coro would read a coroutine it does not have yet (and crash before
        # Task.__init__); anyio asks it whether the task has started.
        return self._first_coro


@types.coroutine
def _drive(coro: Any, first: Any) -> Generator[Any, Any, Any]:
    """The rest of a request after its first step yielded ``first`` (a future, or None): hands
    it to the Task to wait on, then drives coro as ``yield from`` would (``await coro`` is
    refused for a coroutine suspended in an await of its own)."""
    value = first
    while True:
        try:
            arg = yield value
            method = coro.send
        except BaseException as exc:  # noqa: BLE001  (cancellation, a future's error: coro's)
            method, arg = coro.throw, exc
        try:
            value = method(arg)
        except StopIteration as stop:
            return stop.value


def run_eagerly(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[None] | None:
    """Runs coro's first step now; returns None when that finished it, else the Task that
    goes on with it. coro must not raise (AsgiQueue._run catches everything)."""
    task = _RequestTask(coro)
    ctx = contextvars.copy_context()
    _enter_task(loop, task)
    try:
        first = ctx.run(coro.send, None)
    except StopIteration:
        return None
    finally:
        _leave_task(loop, task)
    if sys.version_info >= (3, 11):
        asyncio.Task.__init__(task, _drive(coro, first), loop=loop, context=ctx)
    else:  # no context= yet: the Task takes a copy of the current one, here ctx
        ctx.run(asyncio.Task.__init__, task, _drive(coro, first), loop=loop)
    return task


# ---- one request queue --------------------------------------------------------------------------


class AsgiQueue:
    """An ASGI application behind one URL prefix: its C queue, watched from the loop."""

    def __init__(self, app: ASGIApp, queue: Any, name: str, loop: asyncio.AbstractEventLoop,
                 server_certs: Mapping[str, str]) -> None:
        self.app = app
        self.queue = queue
        self.name = name
        self.loop = loop
        self.server_certs = server_certs
        self.efd = lib.hs_queue_eventfd(queue)
        if self.efd < 0:
            raise OSError(f"cannot make an eventfd for the request queue of {name}")
        self.infos = ffi.new("hs_request_info_t[]", BATCH)
        self.ready = ffi.new("hs_request_t *[]", BATCH)
        self.n_ready = ffi.new("int *")
        self.cbuf = ffi.new("char[]", BODY_CHUNK)
        self.requests: dict[Any, _Request] = {}
        self.connections: dict[bytes, tuple[str | None, dict[str, Any] | None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.lifespan = _Lifespan(app, loop, name)
        self.watching = False

    async def open(self) -> None:
        """Lifespan startup (LifespanError if it fails), then serve the queue."""
        await self.lifespan.startup()
        self.loop.add_reader(self.efd, self._on_ready)
        self.watching = True
        self._on_ready()  # requests queued before the loop watched

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """After the queue was shut down (no new requests): lets the requests in progress
        finish for ``grace`` seconds, cancels the rest, then the lifespan shutdown."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self.watching:
            self.loop.remove_reader(self.efd)
            self.watching = False
        await self.lifespan.shutdown()

    def _on_ready(self) -> None:
        infos, requests = self.infos, self.requests
        n = lib.hs_queue_drain(self.queue, infos, BATCH, self.ready, BATCH, self.n_ready)
        for i in range(n):
            info = infos[i]
            self._start(info.req, ffi.unpack(info.environ, info.environ_len), info.has_body)
        for i in range(self.n_ready[0]):
            r = requests.get(self.ready[i])
            if r is not None:
                r.wake()

    def _start(self, req: Any, block: bytes, has_body: int) -> None:
        try:
            scope = build_scope(block, self.server_certs,
                                self.lifespan.state if self.lifespan.supported else None,
                                self.connections)
        except Exception:  # a bug here must not stop the loop; the client gets a 500
            log.exception("cannot build the ASGI scope of a request to %s", self.name)
            lib.hs_request_fail(req, _INTERNAL)
            return
        r = _Request(req, self, scope, bool(has_body))
        self.requests[req] = r
        task = run_eagerly(self.loop, self._run(r, scope))
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def done(self, r: _Request) -> None:
        """r's response is complete (or abandoned): the core has its request back."""
        self.requests.pop(r.req, None)
        if r.waiters:
            r.wake()

    async def _run(self, r: _Request, scope: Scope) -> None:
        error = True
        try:
            await self.app(scope, r.receive, r.send)
            error = False
        except ConnectionGoneError:
            log.info("client %s:%s went away during %s", scope["client"][0], scope["client"][1],
                     r.what)
        except asyncio.CancelledError:
            log.warning("%s cancelled: the server is stopping", r.what)
        except BaseException:
            log.exception("ASGI application error on %s", r.what)
        finally:
            r.end(error)


# ---- the loop thread ----------------------------------------------------------------------------


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (``kind="auto"`` or ``"uvloop"``), else asyncio's."""
    if kind not in ("auto", "uvloop", "asyncio"):
        raise InvalidParameterError(f"asgi_loop must be 'auto', 'uvloop' or 'asyncio', not {kind!r}",
                                    param="asgi_loop")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise InvalidParameterError("asgi_loop='uvloop' but uvloop is not installed",
                                            param="asgi_loop") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class AsgiLoop:
    """The thread that runs a Server's asyncio loop; other threads hand it coroutines."""

    def __init__(self, kind: str = "auto") -> None:
        self.loop = new_event_loop(kind)
        self._thread = threading.Thread(target=self._main, name="httpsys-asgi", daemon=True)
        self._running = threading.Event()

    @property
    def running(self) -> bool:
        return self._running.is_set() and self._thread.is_alive()

    def start(self) -> None:
        """Starts the thread (once); returns when the loop runs."""
        if not self._running.is_set():
            self._thread.start()
            self._running.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._running.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        """Runs coro on the loop and waits for its result (or exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        elif not self.loop.is_closed():
            self.loop.close()  # never started
