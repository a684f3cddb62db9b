"""Renewal of ACME certificates inside a running server (``httpsys serve``).

A daemon thread wakes every ``interval`` seconds and renews each ACME certificate whose
``renew_at`` has come (two thirds of its lifetime, or inside the window the CA suggested
through ACME Renewal Information). A renewal is ``acmeclient.renew``: a new order answered by
this server's own listener (the challenge goes through the store like any other), the new
chain stored in MY and the binding pointed at it in one transaction, which the watcher then
swaps in live: connections already open keep the old certificate, the next one gets the new.

On failure (the CA is down, refuses, validation fails) the binding is left alone, so the
current certificate keeps serving; the reason is logged as a warning and stored
(``acme_certificate.last_error``), and the next try waits ``backoff(failures)``: doubling from
``RETRY_MIN`` seconds up to ``RETRY_MAX``. ``HTTPSYS_ACME_RETRY`` (seconds) overrides
``RETRY_MIN``, for tests with short-lived certificates. Before it starts, a renewal claims the
certificate in the store, so several server processes (``--workers N``) never renew the same
one twice.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading

from .acmestore import AcmeStore
from .store import Store

log = logging.getLogger("httpsys.acme")

RETRY_MIN = 60.0
RETRY_MAX = 24 * 3600.0
#: How long a renewal's claim on a certificate holds off the other server processes.
CLAIM_SECONDS = 300.0


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` renewals in a row failed (1, 2, ...)."""
    base = float(os.environ.get("HTTPSYS_ACME_RETRY", RETRY_MIN))
    return float(min(base * 2 ** max(failures - 1, 0), RETRY_MAX))


class Renewer:
    """The renewal thread of a server: ``Renewer(store_path).start()``; ``stop()``."""

    def __init__(self, store_path: str | os.PathLike[str] | None, interval: float = 0.5) -> None:
        self.store_path = store_path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="httpsys-acme-renewal",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with Store.open(self.store_path) as store:
                    self.renew_due(store)
            except Exception:  # a bug or an unreadable store: keep serving, say so
                log.exception("acme: renewal check failed (retrying)")

    def renew_due(self, store: Store) -> None:
        acme = AcmeStore(store)
        now = datetime.datetime.now(datetime.timezone.utc)
        for entry in acme.due(now):
            if self._stop.is_set():
                return
            claim = now + datetime.timedelta(seconds=CLAIM_SECONDS)
            if not acme.claim(entry.thumbprint, claim, now):
                continue
            self._renew(store, acme, entry.thumbprint, ", ".join(entry.names))

    def _renew(self, store: Store, acme: AcmeStore, thumbprint: str, names: str) -> None:
        from . import acmeclient  # the acme package: only needed once something is due

        try:
            issued = acmeclient.renew(store, thumbprint)
        except Exception as e:  # noqa: BLE001 - any failure: keep the current certificate
            reason = str(e) or repr(e)
            entry = acme.get(thumbprint)
            wait = backoff((entry.failures if entry else 0) + 1)
            failures = acme.record_failure(thumbprint, reason, datetime.datetime.now(
                datetime.timezone.utc) + datetime.timedelta(seconds=wait))
            log.warning("acme: renewal of certificate %s (%s) failed: %s; still serving it, "
                        "next try in %.0f s (failure %d in a row)", thumbprint, names, reason,
                        wait, failures)
            return
        log.info("acme: certificate %s (%s) renewed: now %s, valid until %s, next renewal %s",
                 thumbprint, names, issued.thumbprint, issued.not_after.isoformat(),
                 issued.renew_at.isoformat())
