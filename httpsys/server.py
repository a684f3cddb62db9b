"""Server: URL registrations (HTTP.sys URL groups and request queues), bindings, lifecycle."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import asgi, certmapping, urlprefix, wsgi
from .crlfetch import CrlFetcher
from ._native import BindingOptions, NativeQueue, NativeServer, lib
from .errors import InvalidParameterError, NotFoundError

log = logging.getLogger("httpsys")

#: HTTP.sys's default request queue length (HttpServerQueueLengthProperty).
DEFAULT_QUEUE_LIMIT = 1000

#: HTTP.sys's ErrorLogFileTruncateSize default: an httperr<N>.log file rolls over at 1 MB.
DEFAULT_HTTPERR_MAX_BYTES = 1 << 20

#: Numbers the servers of this process, for their request queue names.
_server_numbers = itertools.count(1)

#: netsh timeouttype names → the core's timeouts (HTTP_TIMEOUT_LIMIT_INFO, reference 1.5).
TIMEOUTS = {
    "idleconnectiontimeout": lib.HS_TIMEOUT_IDLE_CONNECTION,
    "headerwaittimeout": lib.HS_TIMEOUT_HEADER_WAIT,
    "entitybodytimeout": lib.HS_TIMEOUT_ENTITY_BODY,
    "drainentitybodytimeout": lib.HS_TIMEOUT_DRAIN_ENTITY_BODY,
    "requestqueuetimeout": lib.HS_TIMEOUT_REQUEST_QUEUE,
    "minsendrate": lib.HS_TIMEOUT_MIN_SEND_RATE,
}
#: HTTP.sys's value for a timeout never set (seconds).
DEFAULT_TIMEOUT = 120
#: Every timeout's default: 120 seconds, and minsendrate 150 bytes a second.
TIMEOUT_DEFAULTS = {name: DEFAULT_TIMEOUT for name in TIMEOUTS} | {"minsendrate": 150}
#: The largest value of each: seconds are USHORT, minsendrate a ULONG whose largest value
#: (MAXULONG) turns the check off.
TIMEOUT_MAXIMUM = {name: 65535 for name in TIMEOUTS} | {"minsendrate": lib.HS_MIN_SEND_RATE_OFF}


def check_timeout(timeouttype: str, value: object) -> int:
    """``value`` if it is a valid setting of ``timeouttype``; InvalidParameterError names the
    timeouttype or the value otherwise."""
    if timeouttype not in TIMEOUTS:
        raise InvalidParameterError(
            f"timeouttype must be one of {', '.join(TIMEOUTS)}, not {timeouttype!r}", param="timeouttype")
    high = TIMEOUT_MAXIMUM[timeouttype]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        unit = "bytes a second" if timeouttype == "minsendrate" else "seconds"
        raise InvalidParameterError(f"{timeouttype} must be 1-{high} {unit}, not {value!r}", param="value")
    return value

# Options that set a core flag when true, and the ones that set it when false.
_FLAG_NAMES = {
    "disabletls12": lib.HS_BINDING_DISABLE_TLS12,
    "disabletls13": lib.HS_BINDING_DISABLE_TLS13,
    "reject": lib.HS_BINDING_REJECT,
    "clientcertnegotiation": lib.HS_BINDING_NEGOTIATE_CLIENT_CERT,
    "verifyrevocationwithcachedclientcertonly": lib.HS_BINDING_REVOCATION_CACHED_ONLY,
}
_NEGATED_FLAG_NAMES = {
    "enablesessionticket": lib.HS_BINDING_NO_SESSION_TICKETS,
    "verifyclientcertrevocation": lib.HS_BINDING_NO_REVOCATION_CHECK,
    "usagecheck": lib.HS_BINDING_NO_USAGE_CHECK,
}

#: IIS sslFlags names (system.webServer/security/access@sslFlags) → the core's bits.
SSL_FLAGS = {
    "none": 0,
    "ssl": lib.HS_SSL_FLAG_SSL,
    "sslnegotiatecert": lib.HS_SSL_FLAG_NEGOTIATE_CERT,
    "sslrequirecert": lib.HS_SSL_FLAG_REQUIRE_CERT,
    "sslmapcert": lib.HS_SSL_FLAG_MAP_CERT,
    "ssl128": lib.HS_SSL_FLAG_SSL128,
}


def parse_ssl_flags(text: str | None) -> int:
    """``"Ssl,SslNegotiateCert,SslRequireCert"`` (IIS spelling; comma or comma-space separated,
    any case) → the core's bits. InvalidParameterError names an unknown flag."""
    if text is None:
        return 0
    if not isinstance(text, str):
        raise InvalidParameterError(f"ssl_flags must be a string such as 'Ssl,SslRequireCert', not {text!r}",
                                    param="ssl_flags")
    bits = 0
    for name in (part.strip() for part in text.split(",")):
        if name.lower() not in SSL_FLAGS:
            raise InvalidParameterError(
                f"ssl_flags: unknown flag {name!r} (known: None, Ssl, SslNegotiateCert, SslRequireCert, "
                f"SslMapCert, Ssl128)", param="ssl_flags")
        bits |= SSL_FLAGS[name.lower()]
    if bits & (lib.HS_SSL_FLAG_REQUIRE_CERT | lib.HS_SSL_FLAG_MAP_CERT):
        bits |= lib.HS_SSL_FLAG_NEGOTIATE_CERT  # IIS: both are used with Negotiate
    return bits


#: add_app's interface names.
INTERFACES = ("wsgi", "asgi")


@dataclass
class _Registration:
    prefix: urlprefix.UrlPrefix
    app: Any
    queue: NativeQueue
    queue_name: str
    threads: list[threading.Thread] = field(default_factory=list)
    interface: str = "wsgi"
    asgi: asgi.AsgiQueue | None = None  # served by the Server's asyncio loop


class Server:
    """An HTTPS listener: a C core serving the WSGI and ASGI apps registered at URL prefixes.

    >>> srv = Server()
    >>> srv.set_sslcert("0.0.0.0:8443", chain_pem, key_pem)
    >>> srv.add_app("https://+:8443/api/", app)
    >>> srv.start(); srv.serve_forever()
    """

    def __init__(self, io_threads: int = 1, workers: int | None = None, *,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT, limits: Mapping[str, int] | None = None,
                 timeouts: Mapping[str, int] | None = None,
                 iplisten: Iterable[str] = ("0.0.0.0",), asgi_loop: str = "auto",
                 httperr_dir: str | os.PathLike[str] | None = None,
                 httperr_max_bytes: int = DEFAULT_HTTPERR_MAX_BYTES) -> None:
        """``httperr_dir`` turns on the HTTPERR log (reference 3.4): ``httperr<N>.log`` files in
        that directory (created 0700 if missing; files 0600), one line for every answer the core
        gives itself, every timer expiry and every dropped connection, rolled over at
        ``httperr_max_bytes`` (at least 4096). None (the default) leaves it off."""
        if workers is None:
            workers = os.cpu_count() or 1
        if not isinstance(workers, int) or workers < 1:
            raise InvalidParameterError(f"workers must be a positive int, not {workers!r}", param="workers")
        if not isinstance(queue_limit, int) or not 1 <= queue_limit <= 65535:
            raise InvalidParameterError(f"queue_limit must be 1-65535, not {queue_limit!r}", param="queue_limit")
        asgi.new_event_loop(asgi_loop).close()  # validates the name before anything is made
        self._asgi_kind = asgi_loop
        self._asgi_loop: asgi.AsgiLoop | None = None  # started with the first ASGI app
        self._server_certs: dict[str, str] = {}  # thumbprint → leaf PEM (the TLS extension)
        self._native = NativeServer(io_threads)
        self._number = next(_server_numbers)
        self._httperr = httperr_dir is not None
        if httperr_dir is not None:
            self._open_httperr(os.fspath(httperr_dir), httperr_max_bytes)
        self._workers = workers
        self._queue_limit = queue_limit
        self._iplisten = [urlprefix.parse_ipport(f"{ip}:1")[0] for ip in iplisten]
        self._apps: dict[str, _Registration] = {}
        self._lock = threading.RLock()
        self._started = False
        self._closed = threading.Event()
        self._control: Any = None  # httpsys.control.ControlServer, from start() to close()
        self._fetcher: Any = None  # httpsys.crlfetch.CrlFetcher, from start() to close()
        try:
            for name, value in (limits or {}).items():
                self._native.set_limit(name, value)
            if timeouts is not None and not isinstance(timeouts, Mapping):
                raise InvalidParameterError("timeouts must be a mapping such as "
                                            f"{{'headerwaittimeout': 5}}, not {timeouts!r}",
                                            param="timeouts")
            for name, value in (timeouts or {}).items():
                self.set_timeout(name, value)
        except InvalidParameterError:
            self._native.free()  # nothing started yet; no close() will come for it
            raise

    # ---- HTTPERR log ------------------------------------------------------------------------

    def _open_httperr(self, directory: str, max_bytes: int) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 4096:
            self._native.free()
            raise InvalidParameterError(f"httperr_max_bytes must be an int of at least 4096, not {max_bytes!r}",
                                        param="httperr_max_bytes")
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
            self._native.set_httperr(directory, max_bytes)
        except OSError as exc:
            self._native.free()
            raise InvalidParameterError(f"httperr_dir: cannot create {directory}: {exc.strerror}",
                                        param="httperr_dir") from None
        except BaseException:
            self._native.free()
            raise

    def flush_httperr(self, timeout: float = 5.0) -> bool:
        """Waits until every HTTPERR line logged so far is in its file; False if that took longer
        than ``timeout`` seconds. NotFoundError (param ``httperr_dir``) when the log is off."""
        return self._native.httperr_flush(int(timeout * 1000))

    def httperr_stats(self) -> dict[str, int]:
        """``{"written", "dropped", "failed"}``: HTTPERR lines written, records dropped because
        the I/O threads found the ring full, lines the disk refused."""
        return self._native.httperr_stats()

    # ---- timeouts ---------------------------------------------------------------------------

    def set_timeout(self, timeouttype: str, seconds: int) -> None:
        """Sets one of HTTP.sys's timeouts, as ``netsh http add timeout``, 1-65535 seconds:
        ``idleconnectiontimeout`` (keep-alive wait), ``headerwaittimeout`` (wait for a whole
        request head), ``entitybodytimeout`` (gap between body bytes), ``drainentitybodytimeout``
        (the same while a body the app did not read is dropped), ``requestqueuetimeout`` (wait in
        the queue for a worker; then 503); or ``minsendrate`` in bytes a second (a client that
        takes the response more slowly is dropped; 4294967295 turns it off). Live: every wait
        that starts afterwards uses it. InvalidParameterError names a bad type or value.
        """
        value = check_timeout(timeouttype, seconds)
        self._native.set_timeout(TIMEOUTS[timeouttype], value)

    # ---- certificates ----------------------------------------------------------------------

    def set_sslcert(self, ipport: str, cert_chain_pem: bytes, key_pem: bytes, **options: Any) -> None:
        """Binds a certificate chain (leaf first) and its key to ``ip:port``; replaces a binding
        that exists. Live: new connections use it, open ones keep the certificate they have.

        Options (netsh names): ``disabletls12``, ``disabletls13``, ``reject`` (bools),
        ``enablesessionticket`` (default True), ``sessiontickets`` (TLS 1.3 tickets sent per
        handshake, 0-16, default 1), and for client certificates:

        - ``clientcertnegotiation`` (False): ask for a certificate in the handshake;
        - ``trusted_ca_pem`` (None): concatenated PEM certificates that client certificates
          must chain to (roots and intermediates); their subjects are the CA names sent;
        - ``crls`` (()): PEM or DER CRLs of those CAs, checked on every handshake;
        - ``verifyclientcertrevocation`` (True), ``verifyrevocationwithcachedclientcertonly``
          (False), ``usagecheck`` (True: clientAuth EKU required), ``revocationfreshnesstime``
          (seconds, 0), ``urlretrievaltimeout`` (ms, 0).

        A certificate that fails verification does not fail the handshake: the URL prefix's
        ``ssl_flags`` decide (403.13/16/17). Raises InvalidParameterError naming the bad
        parameter (ipport, certificate, key, trusted_ca_pem, crls, an option).
        """
        ip, port = urlprefix.parse_ipport(ipport)
        chain = _as_bytes(cert_chain_pem, "cert_chain_pem")
        self._native.set_sslcert(ip, port, chain, _as_bytes(key_pem, "key_pem"),
                                 _binding_options(options))
        self._note_server_cert(chain)

    def delete_sslcert(self, ipport: str) -> None:
        """Removes the binding of ``ip:port``; new handshakes there fail. NotFoundError if none."""
        ip, port = urlprefix.parse_ipport(ipport)
        self._native.delete_sslcert(ip, port)

    def set_sslcert_sni(self, hostnameport: str, cert_chain_pem: bytes, key_pem: bytes,
                        **options: Any) -> None:
        """Binds a certificate to ``hostname:port`` (netsh ``hostnameport=``): a ClientHello whose
        server name matches gets it. A name with no such binding falls back to the ``ipport``
        binding of the local address; with neither, the handshake fails (unrecognized_name).
        Same options as set_sslcert(); live like it.
        """
        host, port = urlprefix.parse_hostnameport(hostnameport)
        chain = _as_bytes(cert_chain_pem, "cert_chain_pem")
        self._native.set_sslcert_sni(host, port, chain, _as_bytes(key_pem, "key_pem"),
                                     _binding_options(options))
        self._note_server_cert(chain)

    def _note_server_cert(self, chain_pem: bytes) -> None:
        """Remembers the leaf's PEM by its thumbprint: ASGI's TLS extension gives apps the
        certificate a connection presented (server_cert), which the core names by thumbprint."""
        from cryptography.hazmat.primitives import hashes

        try:
            leaf = x509.load_pem_x509_certificate(chain_pem)
        except ValueError:
            return
        thumbprint = leaf.fingerprint(hashes.SHA1()).hex().upper()
        self._server_certs[thumbprint] = leaf.public_bytes(Encoding.PEM).decode("ascii")

    def delete_sslcert_sni(self, hostnameport: str) -> None:
        """Removes a ``hostname:port`` binding. NotFoundError if none."""
        host, port = urlprefix.parse_hostnameport(hostnameport)
        self._native.delete_sslcert_sni(host, port)

    # ---- ACME challenges ---------------------------------------------------------------------

    def set_acme_challenge(self, host: str, cert_pem: bytes, key_pem: bytes) -> None:
        """Answers TLS-ALPN-01 (RFC 8737) for ``host`` on every TLS port: a ClientHello for
        that name offering ALPN ``acme-tls/1`` alone gets ``cert_pem`` (the challenge
        certificate, httpsys.acme.tls_alpn_certificate) instead of the binding's, even when the
        name has no binding yet. Other clients are unaffected. Replaces a pending one."""
        if not isinstance(host, str) or not host.isascii():
            raise InvalidParameterError(f"host: {host!r} is not a host name", param="host")
        self._native.set_acme_challenge(host, _as_bytes(cert_pem, "cert_pem"),
                                        _as_bytes(key_pem, "key_pem"))

    def delete_acme_challenge(self, host: str) -> None:
        """Stops answering TLS-ALPN-01 for ``host``. NotFoundError if none is pending."""
        self._native.delete_acme_challenge(host)

    # ---- client-certificate mapping --------------------------------------------------------

    def set_certmappings(self, mappings: Iterable[certmapping.Mapping]) -> None:
        """Replaces the client-certificate mappings (httpsys.certmapping: OneToOne, ManyToOne)
        used by prefixes with the ``SslMapCert`` flag. Live: each connection maps again on its
        next request. InvalidParameterError names a bad field."""
        self._native.set_certmappings(certmapping.encode(mappings))

    # ---- applications ----------------------------------------------------------------------

    def add_app(self, url_prefix: str, app: Any, ssl_flags: str | None = None,
                interface: str | None = None) -> None:
        """Registers a WSGI or ASGI application at a UrlPrefix such as ``https://+:8443/api/``.

        ``interface`` is ``"wsgi"`` or ``"asgi"``; None tells them apart (httpsys.asgi.
        detect_interface): a coroutine function (or an object with an async ``__call__``) taking
        three arguments is ASGI 3, other callables WSGI. ASGI apps run on the server's asyncio
        loop thread (uvloop when installed); their lifespan startup runs before the prefix is
        served (at start(), or here once started) and a failed one raises
        httpsys.asgi.LifespanError.

        ``ssl_flags`` is IIS's sslFlags for the prefix, e.g. ``"Ssl,SslNegotiateCert,SslRequireCert"``:
        the core answers 403.4 (plain HTTP to ``Ssl``), 403.5 (``Ssl128``, weak cipher), 403.7
        (``SslRequireCert``, no certificate), 403.13/16/17 (revoked, untrusted, expired). When the
        binding did not ask for a certificate in the handshake, ``SslNegotiateCert`` asks for one
        when a request arrives (TLS 1.3 post-handshake auth, TLS 1.2 renegotiation).

        Opens the prefix's port on the iplisten addresses if it is not open yet. Raises
        InvalidParameterError for a malformed prefix and AlreadyExistsError (183) when it is
        already registered.
        """
        prefix = urlprefix.parse(url_prefix)
        flags = parse_ssl_flags(ssl_flags)
        if interface is None:
            interface = asgi.detect_interface(app)
        elif interface not in INTERFACES:
            raise InvalidParameterError(f"interface must be 'wsgi' or 'asgi', not {interface!r}",
                                        param="interface")
        elif not callable(app):
            raise InvalidParameterError(f"app must be callable, not {type(app).__name__}", param="app")
        with self._lock:
            queue = NativeQueue(self._native, self._queue_limit)
            queue.set_ssl_flags(flags)
            name = self._queue_name(_key(prefix))
            queue.set_name(name)
            try:
                served = None
                if interface == "asgi":  # an ASGI queue before it is routable
                    served = asgi.AsgiQueue(app, queue.handle, str(prefix), self._loop().loop,
                                            self._server_certs)
                self._native.add_url(str(prefix), queue)
            except BaseException:
                queue.release()
                raise
            try:
                self._listen(prefix)
            except BaseException:
                self._native.remove_url(str(prefix))
                queue.shutdown()
                queue.release()
                raise
            reg = _Registration(prefix, app, queue, name, interface=interface, asgi=served)
            self._apps[_key(prefix)] = reg
            if self._started:
                try:
                    self._start_workers(reg)
                except BaseException:
                    del self._apps[_key(prefix)]
                    self._unregister(reg)
                    raise

    def remove_app(self, url_prefix: str) -> None:
        """Unregisters a prefix. Requests still queued for it get 503 from the core."""
        prefix = urlprefix.parse(url_prefix)
        with self._lock:
            reg = self._apps.pop(_key(prefix), None)
            if reg is None:
                raise NotFoundError(f"the url prefix {url_prefix} is not registered", param="url")
        self._unregister(reg)

    def _listen(self, prefix: urlprefix.UrlPrefix) -> None:
        done: list[str] = []
        try:
            for ip in self._iplisten:
                self._native.listen(ip, prefix.port, prefix.tls)
                done.append(ip)
        except BaseException:
            for ip in done:
                self._native.unlisten(ip, prefix.port)
            raise

    def set_iplisten(self, addresses: Iterable[str]) -> None:
        """Replaces the addresses the registered ports listen on (netsh ``iplisten``), live.

        An empty ``addresses`` means every address (``0.0.0.0``). New addresses are opened on
        every registered prefix's port first; if one cannot be opened, the ones opened by this
        call are closed again, the old set stays in force, and the error (InvalidParameterError
        for a malformed address, else the core's error naming the address) is raised. Only then
        are the addresses no longer listed closed: connections open on them stay open.
        """
        wanted: list[str] = []
        for address in addresses:
            ip = urlprefix.parse_ipport(f"{address}:1")[0]
            if ip not in wanted:
                wanted.append(ip)
        if not wanted:
            wanted = ["0.0.0.0"]
        with self._lock:
            old = list(self._iplisten)
            added = [ip for ip in wanted if ip not in old]
            removed = [ip for ip in old if ip not in wanted]
            # One listen per registration and address: listeners are refcounted per ip:port,
            # and _unregister() unlistens once per address of self._iplisten.
            done: list[tuple[str, int]] = []
            try:
                for reg in self._apps.values():
                    for ip in added:
                        self._native.listen(ip, reg.prefix.port, reg.prefix.tls)
                        done.append((ip, reg.prefix.port))
            except BaseException:
                for ip, port in done:
                    self._native.unlisten(ip, port)
                raise
            for reg in self._apps.values():
                for ip in removed:
                    self._native.unlisten(ip, reg.prefix.port)
            self._iplisten = wanted

    def _unregister(self, reg: _Registration) -> None:
        self._native.remove_url(str(reg.prefix))
        reg.queue.shutdown()
        if reg.asgi is not None and self._asgi_loop is not None and self._asgi_loop.running:
            self._asgi_loop.run(reg.asgi.close())
        for t in reg.threads:
            if t.ident is not None:  # started (see _start_workers)
                t.join()
        reg.queue.release()
        for ip in self._iplisten:
            self._native.unlisten(ip, reg.prefix.port)

    def _loop(self) -> asgi.AsgiLoop:
        """The asyncio loop (and, once started, its thread) of the ASGI apps."""
        if self._asgi_loop is None:
            self._asgi_loop = asgi.AsgiLoop(self._asgi_kind)
        return self._asgi_loop

    def _start_workers(self, reg: _Registration) -> None:
        if reg.asgi is not None:
            loop = self._loop()
            loop.start()
            loop.run(reg.asgi.open())  # lifespan startup; LifespanError if it fails
            return
        for i in range(self._workers):
            t = threading.Thread(target=wsgi.worker, args=(reg.queue.handle, reg.app),
                                 name=f"httpsys-worker-{reg.prefix}-{i}", daemon=True)
            # Listed before it starts: a KeyboardInterrupt (SIGTERM in serve) between the two
            # must not leave a running worker that _unregister() does not wait for before it
            # frees the queue the worker is blocked on.
            reg.threads.append(t)
            t.start()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the I/O threads and workers; returns once the registered ports listen."""
        with self._lock:
            if self._started:
                return
            if self._closed.is_set():
                raise InvalidParameterError("the server is closed", param="server")
            self._native.start()
            self._started = True
            self._fetcher = CrlFetcher(self._native)
            self._fetcher.start()
            for reg in self._apps.values():
                self._start_workers(reg)
            self._start_control()

    def _start_control(self) -> None:
        from .control import ControlServer

        control = ControlServer(self.servicestate)
        try:
            control.start()
        except OSError as exc:  # serving matters more than being listed by servicestate
            log.warning("no control socket (httpsys http show servicestate will not list this "
                        "server): %s", exc)
            return
        self._control = control

    def serve_forever(self) -> None:
        """Starts if needed and blocks until close() (or Ctrl-C, which closes)."""
        self.start()
        try:
            while not self._closed.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.close()

    def close(self) -> None:
        """Stops serving: unregisters every prefix, joins the workers, stops the I/O threads."""
        with self._lock:
            if self._closed.is_set():
                return
            control, self._control = self._control, None
        if control is not None:
            control.stop()  # waits for an answer in progress, which reads the queues
        with self._lock:
            regs = list(self._apps.values())
            self._apps.clear()
        for reg in regs:
            self._unregister(reg)
        if self._asgi_loop is not None:
            self._asgi_loop.stop()
        if self._fetcher is not None:
            self._fetcher.stop()  # before the core it asks is freed
        self._native.free()
        self._closed.set()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def connections(self) -> int:
        """Client connections open right now, over all I/O threads."""
        return self._native.connections()

    def servicestate(self) -> dict[str, Any]:
        """This server's state as ``httpsys http show servicestate`` shows it: one server session
        (this process), one URL group and request queue per registered prefix.

        ``{"pid", "session_id", "state", "connections", "url_groups": [{"id", "state", "queue",
        "urls"}], "queues": [{"name", "state", "length", "limit", "verbosity", "pids"}]}``
        """
        pid = os.getpid()
        with self._lock:
            if self._closed.is_set():
                raise InvalidParameterError("the server is closed", param="server")
            session = f"FF{pid & 0xFFFFFFFF:08X}{(self._control.id if self._control else 0) & 0xFFFFFF:06X}"
            groups, queues = [], []
            for key, reg in self._apps.items():
                n = zlib.crc32(key.encode()) & 0xFFFFFF
                name = reg.queue_name
                groups.append({"id": f"FE{session[2:10]}{n:06X}",
                               "state": "Active" if self._started else "Inactive",
                               "queue": name, "urls": [str(reg.prefix)]})
                queues.append({"name": name, "state": "Active", "length": len(reg.queue),
                               "limit": self._queue_limit, "verbosity": "Limited",
                               "pids": [pid]})
            return {"pid": pid, "session_id": session,
                    "state": "Active" if self._started else "Inactive",
                    "connections": self.connections, "url_groups": groups, "queues": queues}

    def _queue_name(self, key: str) -> str:
        """The request queue's name (servicestate, HTTPERR s-queuename): fixed at add_app."""
        n = zlib.crc32(key.encode()) & 0xFFFFFF
        return f"httpsys-{os.getpid()}-{self._number:06x}-{n:06x}"

    @property
    def prefixes(self) -> list[str]:
        with self._lock:
            return [str(r.prefix) for r in self._apps.values()]


def _uint(name: str, value: Any, top: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise InvalidParameterError(f"{name} must be an int 0-{top}, not {value!r}", param=name)
    return value


def _binding_options(options: Mapping[str, Any]) -> BindingOptions:
    """The core's binding options from set_sslcert's keyword options."""
    flags, tickets, trusted, crls, fresh, fetch = 0, -1, b"", b"", 0, 0
    for name, value in options.items():
        if name == "sessiontickets":
            tickets = _uint(name, value, 16)
        elif name in _NEGATED_FLAG_NAMES:
            flags |= 0 if value else _NEGATED_FLAG_NAMES[name]
        elif name in _FLAG_NAMES:
            flags |= _FLAG_NAMES[name] if value else 0
        elif name == "trusted_ca_pem":
            trusted = b"" if value is None else _as_bytes(value, name)
        elif name == "crls":
            crls = b"".join(_crl_der(c, i) for i, c in enumerate(value or (), 1))
        elif name == "revocationfreshnesstime":
            fresh = _uint(name, value, 0xFFFFFFFF)
        elif name == "urlretrievaltimeout":
            fetch = _uint(name, value, 0xFFFFFFFF)
        else:
            raise InvalidParameterError(f"unknown sslcert option {name!r}", param=name)
    return BindingOptions(flags, tickets, trusted, crls, fresh, fetch)


def _crl_der(crl: Any, nth: int) -> bytes:
    """One CRL given as PEM or DER → DER (the core takes DER CRLs laid end to end)."""
    data = _as_bytes(crl, "crls")
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(data).public_bytes(Encoding.DER)
        except ValueError as exc:
            raise InvalidParameterError(f"crls: CRL {nth} is not a PEM CRL: {exc}", param="crls") from None
    return data


def _key(prefix: urlprefix.UrlPrefix) -> str:
    return str(prefix).lower()


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidParameterError(f"{name} must be PEM bytes, not {type(value).__name__}", param=name)
    return bytes(value)
