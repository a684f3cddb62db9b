"""Fetching CRLs from certificates' distribution points (reference 4.6).

The C core decides when a CRL is needed (a client certificate names an http:// distribution
point and no usable CRL of its issuer is loaded), queues the URL, and holds the request that
needs the verdict. This thread takes the URLs, fetches them with a bounded wait (the binding's
``urlretrievaltimeout``, CryptoAPI's 15 s when it is 0) and hands the bytes back; the core checks
the signature and builds the index. The network client lives here, off the I/O threads, and the
core never calls into Python.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import HttpsysError

log = logging.getLogger("httpsys.crl")

#: A CRL larger than this is refused (a 100,000-entry CRL is about 4 MB).
MAX_CRL_BYTES = 64 * 1024 * 1024


class FetchError(Exception):
    """The distribution point did not give a CRL."""


def fetch(url: str, timeout_ms: int) -> bytes:
    """GETs ``url`` within ``timeout_ms`` (the whole exchange, not each read) and returns the CRL
    as DER (a PEM answer is converted). Raises FetchError saying what went wrong."""
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        with urllib.request.urlopen(url, timeout=timeout_ms / 1000) as resp:
            body = bytearray()
            while chunk := resp.read(65536):
                body += chunk
                if len(body) > MAX_CRL_BYTES:
                    raise FetchError(f"{url}: larger than {MAX_CRL_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: not complete within {timeout_ms} ms")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{url}: {exc}") from None
    data = bytes(body)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(data).public_bytes(Encoding.DER)
        except ValueError as exc:
            raise FetchError(f"{url}: not a PEM CRL: {exc}") from None
    return data


class CrlFetcher:
    """The fetcher thread of one Server (started with it, stopped before its core is freed)."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="httpsys-crl-fetcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._native.crl_fetch_shutdown()  # ends a wait in progress at once
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._native.crl_next_fetch(1000)  # the GIL is released while it waits
            if job is None:
                continue
            url, timeout_ms = job
            der: bytes | None
            try:
                der = fetch(url, timeout_ms)
            except FetchError as exc:
                log.warning("CRL fetch failed (revocation unknown until a retry succeeds): %s", exc)
                der = None
            try:
                self._native.crl_fetched(url, der)
            except HttpsysError as exc:  # a refused CRL must not stop the fetcher
                log.warning("%s", exc)
            else:
                if der is not None:
                    log.info("CRL fetched from %s (%d bytes)", url, len(der))
