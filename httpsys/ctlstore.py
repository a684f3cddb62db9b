"""Certificate trust lists (netsh's ``sslctlidentifier``), kept in the config store.

A trust list is a name and a set of ROOT and CA certificates of the certificate store. A binding
whose ``sslctlidentifier`` names one trusts only those certificates for client certificates and
sends only their subjects as the acceptable CA names (HTTPSYS_REFERENCE.md 1.2 and 4.5). A list
exists while it has a member; identifiers compare case-insensitively.

Errors name the parameter (``identifier``, ``thumbprint``): InvalidParameterError for a malformed
value or a certificate that is not in ROOT or CA, TrustListNotFoundError for a list or a member
that is not there. Every change is one store transaction; a refused one changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .certstore import CertStore, normalize_thumbprint
from .errors import InvalidParameterError, NotFoundError
from .store import Store

#: The certificate stores a trust list may hold certificates of.
CTL_STORES = ("ROOT", "CA")

_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")


class TrustListNotFoundError(NotFoundError):
    """No trust list of that name, or the certificate is not in it (ERROR_NOT_FOUND)."""

    exit_code = 2


@dataclass(frozen=True)
class Member:
    """One certificate of a trust list."""

    thumbprint: str
    store: str  # ROOT | CA
    subject: str
    der: bytes


def check_identifier(value: str, param: str = "identifier") -> str:
    """``value`` if it can name a trust list (1-256 characters, no spaces or control
    characters); raises InvalidParameterError naming ``param`` otherwise."""
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidParameterError(
            f"{param}: {value!r} is not a trust list identifier (1-256 characters, no spaces)",
            param=param)
    return value


def check_store_name(value: str | None, param: str = "sslctlstorename") -> str | None:
    """The store a binding's trust list is restricted to (ROOT or CA, upper case), or None."""
    if value is None:
        return None
    name = value.upper()
    if name not in CTL_STORES:
        raise InvalidParameterError(
            f"{param}: {value!r} is not a store a trust list can use (ROOT or CA)", param=param)
    return name


class CtlStore:
    """Trust-list operations on an open ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def identifiers(self) -> list[str]:
        """Every trust list's identifier, sorted."""
        rows = self.store.execute(
            "SELECT identifier FROM ctl GROUP BY identifier ORDER BY identifier")
        return [r[0] for r in rows]

    def identifier_of(self, identifier: str, param: str = "identifier") -> str:
        """The stored spelling of a list's identifier; TrustListNotFoundError if none."""
        row = self.store.execute("SELECT identifier FROM ctl WHERE identifier = ? LIMIT 1",
                                 (identifier,)).fetchone()
        if row is None:
            raise TrustListNotFoundError(f"{param}: no trust list {identifier!r} in the store",
                                         param=param)
        return str(row[0])

    def members(self, identifier: str, store: str | None = None, *,
                param: str = "identifier") -> list[Member]:
        """The certificates of a list, ROOT first, then CA (only ``store``'s if given).
        Raises TrustListNotFoundError naming ``param`` if the list does not exist."""
        self.identifier_of(identifier, param)
        sql = ("SELECT c.thumbprint, c.store, c.subject, c.der FROM ctl l "
               "JOIN certificates c ON c.thumbprint = l.thumbprint WHERE l.identifier = ?")
        params: tuple[str, ...] = (identifier,)
        if store is not None:
            sql += " AND c.store = ?"
            params += (store,)
        rows = self.store.execute(sql + " ORDER BY c.store DESC, c.subject, c.thumbprint", params)
        return [Member(t, s, subj, bytes(der)) for t, s, subj, der in rows]

    def add(self, identifier: str, thumbprints: Sequence[str]) -> list[str]:
        """Adds certificates to a list (creating it); returns the thumbprints that were not in
        it yet. Each must be a ROOT or CA certificate; otherwise nothing is added."""
        check_identifier(identifier)
        if not thumbprints:
            raise InvalidParameterError("thumbprint: give at least one certificate",
                                        param="thumbprint")
        certs = CertStore(self.store)
        added: list[str] = []
        with self.store.transaction() as c:
            row = c.execute("SELECT identifier FROM ctl WHERE identifier = ? LIMIT 1",
                            (identifier,)).fetchone()
            name = identifier if row is None else str(row[0])
            for value in thumbprints:
                entry = certs.get(value)
                if entry.store not in CTL_STORES:
                    raise InvalidParameterError(
                        f"thumbprint: certificate {entry.thumbprint} is in store {entry.store}; "
                        "a trust list holds ROOT and CA certificates only", param="thumbprint")
                cur = c.execute("INSERT OR IGNORE INTO ctl (identifier, thumbprint) VALUES (?, ?)",
                                (name, entry.thumbprint))
                if cur.rowcount:
                    added.append(entry.thumbprint)
        return added

    def delete(self, identifier: str, thumbprints: Sequence[str] = ()) -> list[str]:
        """Removes the given certificates from a list, or the whole list if none are given;
        returns the thumbprints removed. A missing list or member removes nothing."""
        with self.store.transaction() as c:
            name = self.identifier_of(identifier)
            if not thumbprints:
                removed = [r[0] for r in c.execute(
                    "SELECT thumbprint FROM ctl WHERE identifier = ? ORDER BY thumbprint",
                    (name,))]
                c.execute("DELETE FROM ctl WHERE identifier = ?", (name,))
                return removed
            removed = []
            for value in thumbprints:
                thumb = normalize_thumbprint(value)
                cur = c.execute("DELETE FROM ctl WHERE identifier = ? AND thumbprint = ?",
                                (name, thumb))
                if not cur.rowcount:
                    raise TrustListNotFoundError(
                        f"thumbprint: certificate {thumb} is not in the trust list {name}",
                        param="thumbprint")
                removed.append(thumb)
            return removed

    def lists_holding(self, thumbprint: str) -> list[str]:
        """The identifiers of the lists a certificate is in."""
        rows = self.store.execute(
            "SELECT identifier FROM ctl WHERE thumbprint = ? ORDER BY identifier",
            (thumbprint.lower(),))
        return [r[0] for r in rows]
