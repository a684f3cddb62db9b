"""ACME state in the config store (migration 6): accounts, renewed certificates, challenges.

- ``acme_account``: the account key of each directory URL (PKCS#8 PEM) and its account URL.
- ``acme_certificate``: for each certificate ACME keeps renewed, how it was ordered (directory,
  names, challenge type, HTTP-01 port, CA bundle, contact) and the binding it is swapped into;
  the renewal state: failures in a row, ``next_attempt`` (backoff, and a claim while a renewal
  runs, so several server processes never renew the same certificate at once), ``last_error``.
  When it is due is the certificate's ``renew_at`` (certificates table).
- ``acme_challenge``: challenges waiting for validation, read by every running server's watcher:
  TLS-ALPN-01 ones become challenge certificates in the core, HTTP-01 ones are served at
  ``http://+:PORT/.well-known/acme-challenge/``.

Every change is one store transaction, so it bumps the generation the watchers poll.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .store import Store


def iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class Challenge:
    """One pending challenge (``acme_challenge`` row)."""

    token: str
    host: str
    type: str  # tls-alpn-01 | http-01
    key_authorization: str
    cert_pem: bytes | None
    key_pem: bytes | None
    http_port: int | None


@dataclass(frozen=True)
class AcmeCertificate:
    """How a certificate was ordered, and its renewal state (``acme_certificate`` row)."""

    thumbprint: str
    directory: str
    names: tuple[str, ...]
    challenge: str
    http_port: int
    email: str | None
    ca_bundle: str | None
    bind_ipport: str | None
    bind_appid: str | None
    failures: int = 0
    next_attempt: str | None = None
    last_error: str | None = None
    renew_at: str | None = None  # from the certificates table


_CERT_COLUMNS = ("thumbprint, directory, names, challenge, http_port, email, ca_bundle, "
                 "bind_ipport, bind_appid, failures, next_attempt, last_error")


class AcmeStore:
    """ACME operations on an open ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- accounts --------------------------------------------------------------------------

    def account_key(self, directory: str) -> bytes | None:
        row = self.store.execute("SELECT key_pem FROM acme_account WHERE directory = ?",
                                 (directory,)).fetchone()
        return bytes(row[0]) if row else None

    def account_uri(self, directory: str) -> str | None:
        row = self.store.execute("SELECT uri FROM acme_account WHERE directory = ?",
                                 (directory,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def set_account(self, directory: str, key_pem: bytes | None, uri: str | None,
                    email: str | None) -> None:
        """Creates the account row (with ``key_pem``: a new key) or updates its URL and
        contact."""
        with self.store.transaction() as c:
            if key_pem is not None:
                c.execute("INSERT INTO acme_account (directory, key_pem, uri, email) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (directory) DO NOTHING",
                          (directory, key_pem, uri, email))
            else:
                c.execute("UPDATE acme_account SET uri = ?, email = coalesce(?, email) "
                          "WHERE directory = ?", (uri, email, directory))

    # ---- challenges ------------------------------------------------------------------------

    def add_challenge(self, token: str, host: str, type_: str, key_authorization: str,
                      cert_pem: bytes | None, key_pem: bytes | None,
                      http_port: int | None) -> None:
        with self.store.transaction() as c:
            c.execute("INSERT OR REPLACE INTO acme_challenge (token, host, type, "
                      "key_authorization, cert_pem, key_pem, http_port) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (token, host, type_, key_authorization, cert_pem, key_pem, http_port))

    def delete_challenges(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        if not tokens:
            return
        with self.store.transaction() as c:
            c.executemany("DELETE FROM acme_challenge WHERE token = ?", [(t,) for t in tokens])

    def challenges(self) -> list[Challenge]:
        rows = self.store.execute(
            "SELECT token, host, type, key_authorization, cert_pem, key_pem, http_port "
            "FROM acme_challenge ORDER BY token")
        return [Challenge(t, h, ty, ka, bytes(c) if c is not None else None,
                          bytes(k) if k is not None else None, p)
                for t, h, ty, ka, c, k, p in rows]

    # ---- renewed certificates --------------------------------------------------------------

    def _row(self, row: Sequence[Any], renew_at: str | None) -> AcmeCertificate:
        (thumb, directory, names, challenge, http_port, email, ca_bundle, ipport, appid,
         failures, next_attempt, last_error) = row
        return AcmeCertificate(thumb, directory, tuple(json.loads(names)), challenge,
                               int(http_port), email, ca_bundle, ipport, appid, int(failures),
                               next_attempt, last_error, renew_at)

    def get(self, thumbprint: str) -> AcmeCertificate | None:
        row = self.store.execute(
            f"SELECT {', '.join('a.' + n.strip() for n in _CERT_COLUMNS.split(','))}, "
            "c.renew_at FROM acme_certificate a JOIN certificates c USING (thumbprint) "
            "WHERE a.thumbprint = ?", (thumbprint.lower(),)).fetchone()
        return self._row(row[:-1], row[-1]) if row else None

    def put(self, c: Any, entry: AcmeCertificate, previous: str | None) -> None:
        """Inside the caller's transaction: records ``entry`` (a fresh renewal state) and drops
        the row of the certificate it replaces."""
        if previous is not None and previous != entry.thumbprint:
            c.execute("DELETE FROM acme_certificate WHERE thumbprint = ?", (previous,))
            c.execute("UPDATE certificates SET renew_at = NULL WHERE thumbprint = ?", (previous,))
        c.execute(
            f"INSERT OR REPLACE INTO acme_certificate ({_CERT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
            (entry.thumbprint, entry.directory, json.dumps(list(entry.names)), entry.challenge,
             entry.http_port, entry.email, entry.ca_bundle, entry.bind_ipport, entry.bind_appid))

    def due(self, now: datetime.datetime) -> list[AcmeCertificate]:
        """Certificates whose renew_at has come and that are not backing off or claimed."""
        t = iso(now)
        rows = self.store.execute(
            f"SELECT {', '.join('a.' + n.strip() for n in _CERT_COLUMNS.split(','))}, "
            "c.renew_at FROM acme_certificate a JOIN certificates c USING (thumbprint) "
            "WHERE c.renew_at IS NOT NULL AND c.renew_at <= ? "
            "AND (a.next_attempt IS NULL OR a.next_attempt <= ?) ORDER BY c.renew_at", (t, t))
        return [self._row(r[:-1], r[-1]) for r in rows]

    def claim(self, thumbprint: str, until: datetime.datetime, now: datetime.datetime) -> bool:
        """Marks a due certificate as being renewed until ``until``; False when another process
        claimed it (or it backs off) already."""
        t = iso(now)
        with self.store.transaction() as c:
            cur = c.execute("UPDATE acme_certificate SET next_attempt = ? WHERE thumbprint = ? "
                            "AND (next_attempt IS NULL OR next_attempt <= ?)",
                            (iso(until), thumbprint, t))
            return cur.rowcount == 1

    def record_failure(self, thumbprint: str, error: str, next_attempt: datetime.datetime) -> int:
        """Counts a failed renewal; returns the number of failures in a row."""
        with self.store.transaction() as c:
            c.execute("UPDATE acme_certificate SET failures = failures + 1, next_attempt = ?, "
                      "last_error = ? WHERE thumbprint = ?",
                      (iso(next_attempt), error, thumbprint))
            row = c.execute("SELECT failures FROM acme_certificate WHERE thumbprint = ?",
                            (thumbprint,)).fetchone()
        return int(row[0]) if row else 0
