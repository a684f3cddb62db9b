"""Certificate revocation lists kept in the config store (``httpsys crl add|show|delete``).

One CRL per issuer, keyed by its thumbprint: the SHA-1 of its DER, 40 upper-case hex digits.
A CRL is accepted only if its issuer is a certificate of the ROOT or CA store (same subject
name) whose key verifies the CRL's signature. A newer CRL of an issuer (a later thisUpdate)
replaces the stored one; an older one is refused, and the same one again changes nothing.

Errors: InvalidParameterError naming ``file`` (unreadable, not a CRL, issuer not trusted, bad
signature), CrlNotNewerError (older than the stored CRL of its issuer), CrlNotFoundError naming
``crl`` (show/delete of an unknown CRL), StoreError from the store itself. A refused file
changes nothing in the store, whatever else it holds.
"""

from __future__ import annotations

import builtins
import datetime
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certstore import CertStore
from .errors import HttpsysError, InvalidParameterError, NotFoundError
from .store import Store

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


class CrlNotFoundError(NotFoundError):
    """No CRL with this thumbprint or issuer in the store; the message names the argument."""

    exit_code = 2


class CrlNotNewerError(HttpsysError):
    """The CRL is older than (or as old as) the stored CRL of its issuer (ERROR_ALREADY_EXISTS)."""

    winerror = 183
    exit_code = 1


class _NothingChanged(Exception):
    pass


def crl_thumbprint(der: bytes) -> str:
    """A CRL's thumbprint: the SHA-1 of its DER, 40 upper-case hex digits."""
    return hashlib.sha1(der).hexdigest().upper()


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _update_times(crl: x509.CertificateRevocationList) -> tuple[str, str | None]:
    # cryptography >= 42 has the aware *_utc properties; older ones only the naive ones.
    if hasattr(crl, "last_update_utc"):
        this, following = crl.last_update_utc, crl.next_update_utc
    else:
        this, following = crl.last_update, crl.next_update
    this = this.replace(tzinfo=this.tzinfo or datetime.timezone.utc)
    if following is not None:
        following = following.replace(tzinfo=following.tzinfo or datetime.timezone.utc)
    return _iso(this), _iso(following) if following is not None else None


@dataclass(frozen=True)
class CrlEntry:
    """One CRL of the store."""

    thumbprint: str
    issuer: str  # RFC 4514
    der: bytes
    this_update: str  # ISO 8601 UTC
    next_update: str | None
    entries: int  # revoked certificates
    source: str  # the file it was added from
    added: str

    def status(self, now: datetime.datetime | None = None) -> str:
        """``Expired`` once nextUpdate has passed, else ``Valid``."""
        if self.next_update is None:
            return "Valid"
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return "Expired" if _iso(now) >= self.next_update else "Valid"

    @property
    def pem(self) -> bytes:
        crl = x509.load_der_x509_crl(self.der)
        return crl.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Added:
    """What ``add_file`` did with one CRL of the file: ``added``, ``replaced`` (``old`` is the
    thumbprint it replaced) or ``already`` (the store held this very CRL)."""

    thumbprint: str
    issuer: str
    outcome: str
    old: str | None = None


def _invalid(path: Any, reason: str) -> InvalidParameterError:
    return InvalidParameterError(f"file: {os.fspath(path)!r}: {reason}", param="file")


def read_crls(data: bytes, path: Any = "<data>") -> builtins.list[x509.CertificateRevocationList]:
    """The CRLs of a PEM file (one or more ``X509 CRL`` blocks) or of one DER CRL.
    Raises InvalidParameterError naming ``file``."""
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise _invalid(path, "is a PEM file without an X509 CRL block")
        out = []
        for i, block in enumerate(blocks, 1):
            try:
                out.append(x509.load_pem_x509_crl(block))
            except ValueError as e:
                raise _invalid(path, f"CRL number {i} of the file is malformed ({e})") from None
        return out
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError as e:
        raise _invalid(path, f"is not a CRL, neither PEM nor DER ({e})") from None


class CrlStore:
    """CRL operations on an open ``Store``. Every change is one store transaction."""

    _COLUMNS = "thumbprint, issuer, der, this_update, next_update, entries, source, added"

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> CrlEntry:
        thumb, issuer, der, this, following, entries, source, added = row
        return CrlEntry(thumb, issuer, bytes(der), this, following, int(entries), source, added)

    def list(self) -> builtins.list[CrlEntry]:
        """Every CRL, by issuer."""
        rows = self.store.execute(f"SELECT {self._COLUMNS} FROM crls ORDER BY issuer, thumbprint")
        return [self._entry(r) for r in rows]

    def ders(self) -> builtins.list[bytes]:
        """The DER of every CRL, by issuer (what a binding checks client certificates with)."""
        return [bytes(r[0]) for r in self.store.execute("SELECT der FROM crls ORDER BY issuer")]

    def find(self, selector: str, *, param: str = "crl") -> CrlEntry:
        """The CRL a thumbprint (40 hex digits, any case, spaces and colons ignored) or an
        issuer (RFC 4514, e.g. ``CN=Root,O=Example``) names. CrlNotFoundError names it."""
        cleaned = re.sub(r"[\s:\u200e]", "", selector)
        if re.fullmatch(r"[0-9A-Fa-f]{40}", cleaned):
            row = self.store.execute(f"SELECT {self._COLUMNS} FROM crls WHERE thumbprint = ?",
                                     (cleaned.upper(),)).fetchone()
            if row is None:
                raise CrlNotFoundError(f"{param}: no CRL with thumbprint {cleaned.upper()} in "
                                       "the store", param=param)
            return self._entry(row)
        try:
            issuer = x509.Name.from_rfc4514_string(selector.strip()).rfc4514_string()
        except ValueError:
            issuer = selector.strip()
        rows = [self._entry(r) for r in self.store.execute(f"SELECT {self._COLUMNS} FROM crls")]
        for entry in rows:
            if entry.issuer == issuer:
                return entry
        for entry in rows:
            if entry.issuer.lower() == issuer.lower():
                return entry
        raise CrlNotFoundError(f"{param}: no CRL with thumbprint or issuer {selector!r} in the "
                               "store", param=param)

    def delete(self, selector: str, *, param: str = "crl") -> CrlEntry:
        """Removes the CRL ``selector`` names (see find)."""
        entry = self.find(selector, param=param)
        with self.store.transaction() as c:
            c.execute("DELETE FROM crls WHERE thumbprint = ?", (entry.thumbprint,))
        return entry

    def _issuer_checked(self, crl: x509.CertificateRevocationList, path: Any) -> None:
        """Refuses a CRL whose issuer is not in ROOT/CA or whose signature does not verify."""
        certs = CertStore(self.store)
        candidates = [e for e in certs.list("ROOT") + certs.list("CA")
                      if e.certificate.subject == crl.issuer]
        issuer = crl.issuer.rfc4514_string()
        if not candidates:
            raise _invalid(path, f"the CRL's issuer {issuer!r} is not in the ROOT or CA "
                                 "certificate store; import the issuer's certificate first "
                                 "(httpsys cert import FILE --store ROOT)")
        for entry in candidates:
            try:
                if crl.is_signature_valid(entry.certificate.public_key()):  # type: ignore[arg-type]
                    return
            except (TypeError, ValueError):
                continue
        raise _invalid(path, f"bad signature: the CRL does not verify with the key of its "
                             f"issuer {issuer!r} (certificate "
                             f"{', '.join(e.thumbprint for e in candidates)})")

    def add_file(self, path: str | os.PathLike[str]) -> builtins.list[Added]:
        """Adds the CRLs of a PEM or DER file; all of them or none. Returns what happened to
        each. The generation moves only if the store changed."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise _invalid(path, f"cannot read it: {e.strerror}") from None
        crls = read_crls(data, path)
        results: builtins.list[Added] = []
        try:
            with self.store.transaction() as c:  # the trust check reads under the write lock
                for crl in crls:
                    self._issuer_checked(crl, path)
                    results.append(self._put(c, crl, path))
                if all(r.outcome == "already" for r in results):
                    raise _NothingChanged
        except _NothingChanged:
            pass
        return results

    def _put(self, c: Any, crl: x509.CertificateRevocationList, path: Any) -> Added:
        der = crl.public_bytes(serialization.Encoding.DER)
        thumb = crl_thumbprint(der)
        issuer = crl.issuer.rfc4514_string()
        this, following = _update_times(crl)
        old = c.execute("SELECT thumbprint, this_update FROM crls WHERE issuer = ?",
                        (issuer,)).fetchone()
        if old is not None and old[0] == thumb:
            return Added(thumb, issuer, "already")
        if old is not None and old[1] >= this:
            raise CrlNotNewerError(
                f"file: {os.fspath(path)!r}: the CRL {thumb} of {issuer!r} (thisUpdate {this}) "
                f"is not newer than the one in the store, {old[0]} (thisUpdate {old[1]}); "
                f"delete that one first (httpsys crl delete {old[0]}) to go back to it",
                param="file")
        if old is not None:
            c.execute("DELETE FROM crls WHERE thumbprint = ?", (old[0],))
        c.execute("INSERT INTO crls (thumbprint, issuer, der, this_update, next_update, entries, "
                  "source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (thumb, issuer, der, this, following, len(builtins.list(crl)),
                   os.path.abspath(os.fspath(path))))
        return Added(thumb, issuer, "replaced" if old else "added", old[0] if old else None)
