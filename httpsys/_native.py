"""The only module that imports httpsys._core.

It validates arguments before they reach C, turns every result code into an exception, and
keeps the lifetime of C handles explicit. The rest of the package sees typed wrappers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._core import ffi, lib
from .errors import (
    AccessDeniedError,
    AlreadyExistsError,
    HttpsysError,
    InvalidParameterError,
    NotFoundError,
    SystemError_,
)

__all__ = ["ffi", "lib", "NativeServer", "NativeQueue", "check", "VERSION"]

VERSION: str = ffi.string(lib.hs_version()).decode()

_ERRORS: dict[int, type[HttpsysError]] = {
    lib.HS_RESULT_ACCESS_DENIED: AccessDeniedError,
    lib.HS_RESULT_INVALID_PARAMETER: InvalidParameterError,
    lib.HS_RESULT_ALREADY_EXISTS: AlreadyExistsError,
    lib.HS_RESULT_NOT_FOUND: NotFoundError,
}


def check(rc: int, what: str, err: Any = None, param: str | None = None) -> None:
    """Raises the exception for a non-zero result code, with the C side's message if any."""
    if rc == lib.HS_RESULT_OK:
        return
    detail = ffi.string(err).decode("utf-8", "replace") if err is not None else ""
    message = f"{what}: {detail}" if detail else what
    raise _ERRORS.get(rc, SystemError_)(message, param=param)


def _errbuf() -> Any:
    return ffi.new("char[]", 512)


@dataclass(frozen=True)
class BindingOptions:
    """Everything about a binding beyond its certificate and key (hs_sslcert_options_t)."""

    flags: int = 0
    session_tickets: int = -1
    trusted_ca_pem: bytes = b""
    crls_der: bytes = b""  # DER CRLs laid end to end
    revocation_freshness_s: int = 0
    url_retrieval_timeout_ms: int = 0

    def as_c(self) -> tuple[Any, list[Any]]:
        """The C struct, and the buffers it points into (keep them alive across the call)."""
        o = ffi.new("hs_sslcert_options_t *")
        o.flags = self.flags
        o.session_tickets = self.session_tickets
        keep = [ffi.from_buffer(self.trusted_ca_pem), ffi.from_buffer(self.crls_der)]
        o.trusted_ca_pem = ffi.cast("const char *", keep[0]) if self.trusted_ca_pem else ffi.NULL
        o.trusted_ca_len = len(self.trusted_ca_pem)
        o.crls_der = ffi.cast("const unsigned char *", keep[1]) if self.crls_der else ffi.NULL
        o.crls_len = len(self.crls_der)
        o.revocation_freshness_s = self.revocation_freshness_s
        o.url_retrieval_timeout_ms = self.url_retrieval_timeout_ms
        return o, keep


def _binding_param(err: Any) -> str:
    """The option a binding error is about: the core starts its message with the name."""
    text = ffi.string(err).decode("utf-8", "replace")
    name = text.split(":", 1)[0]
    return name if name in ("trusted_ca_pem", "crls", "key_pem", "flags") else "cert_chain_pem"


class NativeQueue:
    """A C request queue. Owned by one URL registration of a Server."""

    def __init__(self, server: NativeServer, limit: int) -> None:
        handle = lib.hs_queue_new(server.handle, limit)
        if handle == ffi.NULL:
            raise MemoryError("hs_queue_new")
        self.handle: Any = handle

    def set_ssl_flags(self, flags: int) -> None:
        lib.hs_queue_set_ssl_flags(self.handle, flags)

    def set_name(self, name: str) -> None:
        """The HTTPERR log's s-queuename for this queue (at most 63 bytes): before add_url."""
        lib.hs_queue_set_name(self.handle, name.encode("ascii", "replace"))

    def shutdown(self) -> None:
        lib.hs_queue_shutdown(self.handle)

    def release(self) -> None:
        if self.handle is not None:
            lib.hs_queue_release(self.handle)
            self.handle = None

    def __len__(self) -> int:
        return int(lib.hs_queue_length(self.handle))


# Keyed by HTTP.sys's registry value names (reference 3.1) folded to lower case without
# underscores, so "MaxFieldLength", "maxfieldlength" and "max_field_length" name the same limit.
# MaxBodyBuffer is ours: how much request body the core buffers ahead of the application.
_LIMITS = {
    "maxfieldlength": lib.HS_LIMIT_MAX_FIELD_LENGTH,
    "maxrequestbytes": lib.HS_LIMIT_MAX_REQUEST_BYTES,
    "urlsegmentmaxlength": lib.HS_LIMIT_URL_SEGMENT_MAX_LENGTH,
    "urlsegmentmaxcount": lib.HS_LIMIT_URL_SEGMENT_MAX_COUNT,
    "maxbodybuffer": lib.HS_LIMIT_MAX_BODY_BUFFER,
}
_LIMIT_NAMES = "MaxFieldLength, MaxRequestBytes, UrlSegmentMaxLength, UrlSegmentMaxCount, MaxBodyBuffer"


def limit_key(name: str) -> str:
    """The _LIMITS key of a limit name in any of its accepted spellings."""
    return name.lower().replace("_", "")


class NativeServer:
    """A C server: I/O threads, bindings, URL table, listening sockets."""

    def __init__(self, io_threads: int) -> None:
        if not isinstance(io_threads, int) or not 1 <= io_threads <= 256:
            raise InvalidParameterError(f"io_threads must be an int from 1 to 256, not {io_threads!r}",
                                        param="io_threads")
        err = _errbuf()
        handle = lib.hs_server_new(io_threads, err, 512)
        if handle == ffi.NULL:
            check(lib.HS_RESULT_SYSTEM, "cannot create the server", err)
        self.handle: Any = handle

    def set_limit(self, name: str, value: int) -> None:
        key = limit_key(name) if isinstance(name, str) else ""
        if key not in _LIMITS:
            raise InvalidParameterError(f"unknown limit {name!r} (known: {_LIMIT_NAMES})", param=str(name))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidParameterError(f"limit {name} must be a non-negative int, not {value!r}", param=name)
        check(lib.hs_server_set_limit(self.handle, _LIMITS[key], value), f"limit {name}={value} is out of range",
              param=name)

    def set_timeout(self, which: int, seconds: int) -> None:
        check(lib.hs_server_set_timeout(self.handle, which, seconds), "timeout out of range")

    def set_httperr(self, directory: str, max_bytes: int, ring_bytes: int = 0) -> None:
        """Turns on the HTTPERR log in an existing directory (before start)."""
        err = _errbuf()
        rc = lib.hs_server_set_httperr(self.handle, directory.encode(), max_bytes, ring_bytes, err, 512)
        detail = ffi.string(err).decode("utf-8", "replace")
        check(rc, "cannot open the HTTPERR log", err,
              param="httperr_max_bytes" if detail.startswith("httperr_max_bytes") else "httperr_dir")

    def httperr_flush(self, timeout_ms: int) -> bool:
        """Waits until the lines logged so far are written; False if that took too long."""
        rc = lib.hs_server_httperr_flush(self.handle, timeout_ms)
        if rc == lib.HS_RESULT_NOT_FOUND:
            raise NotFoundError("the HTTPERR log is off", param="httperr_dir")
        return bool(rc == lib.HS_RESULT_OK)

    def httperr_stats(self) -> dict[str, int]:
        written, dropped, failed = (ffi.new("uint64_t *") for _ in range(3))
        check(lib.hs_server_httperr_stats(self.handle, written, dropped, failed), "the HTTPERR log is off",
              param="httperr_dir")
        return {"written": int(written[0]), "dropped": int(dropped[0]), "failed": int(failed[0])}

    def start(self) -> None:
        err = _errbuf()
        check(lib.hs_server_start(self.handle, err, 512), "cannot start the server", err)

    def free(self) -> None:
        if self.handle is not None:
            lib.hs_server_free(self.handle)
            self.handle = None

    def set_sslcert(self, ip: str, port: int, cert: bytes, key: bytes, opts: BindingOptions) -> None:
        err = _errbuf()
        c_opts, keep = opts.as_c()
        rc = lib.hs_server_set_sslcert(self.handle, ip.encode(), port, cert, len(cert), key, len(key), c_opts,
                                       err, 512)
        del keep
        check(rc, f"cannot bind a certificate to {ip}:{port}", err, param=_binding_param(err))

    def set_sslcert_sni(self, host: str, port: int, cert: bytes, key: bytes, opts: BindingOptions) -> None:
        err = _errbuf()
        c_opts, keep = opts.as_c()
        rc = lib.hs_server_set_sslcert_sni(self.handle, host.encode("ascii"), port, cert, len(cert), key,
                                           len(key), c_opts, err, 512)
        del keep
        check(rc, f"cannot bind a certificate to {host}:{port}", err, param=_binding_param(err))

    def delete_sslcert_sni(self, host: str, port: int) -> None:
        check(lib.hs_server_delete_sslcert_sni(self.handle, host.encode("ascii"), port),
              f"no certificate is bound to {host}:{port}", param="hostnameport")

    def set_acme_challenge(self, host: str, cert: bytes, key: bytes) -> None:
        err = _errbuf()
        rc = lib.hs_server_set_acme_challenge(self.handle, host.encode("ascii"), cert, len(cert),
                                              key, len(key), err, 512)
        check(rc, f"cannot set the TLS-ALPN-01 challenge of {host}", err,
              param=_binding_param(err) if rc != lib.HS_RESULT_INVALID_PARAMETER
              or not ffi.string(err).startswith(b"host:") else "host")

    def delete_acme_challenge(self, host: str) -> None:
        check(lib.hs_server_delete_acme_challenge(self.handle, host.encode("ascii")),
              f"no TLS-ALPN-01 challenge is pending for {host}", param="host")

    def delete_sslcert(self, ip: str, port: int) -> None:
        check(lib.hs_server_delete_sslcert(self.handle, ip.encode(), port),
              f"no certificate is bound to {ip}:{port}", param="ipport")

    def crl_next_fetch(self, wait_ms: int) -> tuple[str, int] | None:
        """The next CRL distribution point to fetch and its timeout in ms, or None after wait_ms."""
        url, timeout = ffi.new("char[]", 2048), ffi.new("uint32_t *")
        if lib.hs_server_crl_next_fetch(self.handle, wait_ms, url, 2048, timeout) != 1:
            return None
        return ffi.string(url).decode("ascii", "replace"), int(timeout[0])

    def set_certmappings(self, spec: bytes) -> None:
        err = _errbuf()
        check(lib.hs_server_set_certmappings(self.handle, spec, len(spec), err, 512),
              "the certificate mappings were refused", err, param="mappings")

    def crl_fetch_shutdown(self) -> None:
        lib.hs_server_crl_fetch_shutdown(self.handle)

    def crl_fetched(self, url: str, der: bytes | None) -> None:
        """Hands a fetched CRL (DER) back, or None for a failed fetch."""
        err = _errbuf()
        raw = url.encode("ascii", "replace")
        rc = lib.hs_server_crl_fetched(self.handle, raw, der if der is not None else ffi.NULL,
                                       len(der or b""), err, 512)
        check(rc, f"the CRL from {url} was refused", err, param="crl")

    def connections(self) -> int:
        return int(lib.hs_server_connections(self.handle)) if self.handle is not None else 0

    def listen(self, ip: str, port: int, tls: bool) -> None:
        err = _errbuf()
        check(lib.hs_server_listen(self.handle, ip.encode(), port, int(tls), err, 512),
              f"cannot listen on {ip}:{port}", err, param="url")

    def unlisten(self, ip: str, port: int) -> None:
        lib.hs_server_unlisten(self.handle, ip.encode(), port)

    def add_url(self, prefix: str, queue: NativeQueue) -> None:
        raw = prefix.encode("ascii")
        rc = lib.hs_server_add_url(self.handle, raw, len(raw), queue.handle)
        if rc == lib.HS_RESULT_ALREADY_EXISTS:
            raise AlreadyExistsError(f"the url prefix {prefix} is already registered (error 183)", param="url")
        check(rc, f"cannot register the url prefix {prefix}", param="url")

    def remove_url(self, prefix: str) -> None:
        raw = prefix.encode("ascii")
        check(lib.hs_server_remove_url(self.handle, raw, len(raw)),
              f"the url prefix {prefix} is not registered", param="url")

