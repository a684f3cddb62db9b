"""Answering ACME challenges from a running server (the watcher feeds it the store's rows).

- TLS-ALPN-01 (RFC 8737): each pending challenge's certificate goes to the core with
  ``Server.set_acme_challenge(host, ...)``; the core picks it in the ClientHello for that name
  when ALPN offers ``acme-tls/1`` alone, on every TLS port, whether the name has a binding yet or
  not. A challenge removed from the store is deleted from the core.
- HTTP-01 (RFC 8555 8.3): a small WSGI app at ``http://+:PORT/.well-known/acme-challenge/``,
  registered the first time the store has an HTTP-01 challenge for PORT and kept afterwards,
  answers ``GET /.well-known/acme-challenge/TOKEN`` with the key authorization, 404 otherwise.
  It is Python rather than C because a validation is a handful of requests per certificate
  and the routing, plain-HTTP listener and WSGI path exist already: the core gets no second
  copy of the challenge table and no special case in its request path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .acmestore import Challenge
from .errors import HttpsysError

log = logging.getLogger("httpsys.acme")

PREFIX_PATH = "/.well-known/acme-challenge/"


class ChallengeResponder:
    """Keeps a server's answers in step with the store's pending challenges."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._tls: dict[str, tuple[bytes, bytes]] = {}  # host -> (cert, key) live in the core
        self._http: dict[str, str] = {}  # token -> key authorization
        self._ports: set[int] = set()  # HTTP-01 prefixes registered
        self._lock = threading.Lock()

    def apply(self, challenges: Iterable[Challenge]) -> None:
        tls: dict[str, tuple[bytes, bytes]] = {}
        http: dict[str, str] = {}
        ports: set[int] = set()
        for ch in challenges:
            if ch.type == "tls-alpn-01" and ch.cert_pem and ch.key_pem:
                tls[ch.host.lower()] = (ch.cert_pem, ch.key_pem)
            elif ch.type == "http-01" and ch.http_port:
                http[ch.token] = ch.key_authorization
                ports.add(ch.http_port)
        self._apply_tls(tls)
        with self._lock:
            self._http = http
        for port in sorted(ports - self._ports):
            self._register(port)

    def _apply_tls(self, wanted: dict[str, tuple[bytes, bytes]]) -> None:
        setter = getattr(self.server, "set_acme_challenge", None)
        if setter is None:
            return
        for host, (cert, key) in wanted.items():
            if self._tls.get(host) == (cert, key):
                continue
            try:
                setter(host, cert, key)
            except HttpsysError as e:
                log.warning("acme: TLS-ALPN-01 challenge for %s not applied: %s", host, e)
                continue
            self._tls[host] = (cert, key)
            log.info("acme: TLS-ALPN-01 challenge for %s is live", host)
        for host in [h for h in self._tls if h not in wanted]:
            del self._tls[host]
            try:
                self.server.delete_acme_challenge(host)
            except HttpsysError:
                pass

    def _register(self, port: int) -> None:
        prefix = f"http://+:{port}{PREFIX_PATH}"
        try:
            self.server.add_app(prefix, self.wsgi_app)
        except HttpsysError as e:
            log.warning("acme: cannot answer HTTP-01 at %s: %s", prefix, e)
            return
        self._ports.add(port)
        log.info("acme: answering HTTP-01 challenges at %s", prefix)

    def wsgi_app(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> list[bytes]:
        token = environ.get("PATH_INFO", "").lstrip("/")
        with self._lock:
            answer = self._http.get(token) if environ.get("REQUEST_METHOD") == "GET" else None
        if answer is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such challenge\n"]
        body = answer.encode()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
