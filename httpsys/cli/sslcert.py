"""``httpsys http add|update|delete|show sslcert``: SSL certificate bindings, as netsh has them.

    httpsys http add sslcert ipport=IP:PORT|hostnameport=NAME:PORT certhash=THUMBPRINT
                             appid={GUID} [certstorename=MY] [clientcertnegotiation=enable] ...
    httpsys http update sslcert ipport=|hostnameport= [any add parameter ...]
    httpsys http delete sslcert ipport=|hostnameport=
    httpsys http show sslcert [ipport=|hostnameport=]

Reference 1.2-1.4. ``add`` on an existing key fails with 183 (it is not an upsert); ``update``
changes only the parameters given; a binding needs a certificate of the named certificate store
(default MY) that has its private key (netsh's 1312 otherwise). Each change is one store
transaction: a refused one changes nothing, not even the generation.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from ..sslcert_params import BOOL_PARAMS, PARAM_NAMES, SslCertParams
from ..store import Store
from . import HttpFailure
from ._kv import format_sslcert, format_success

VERBS = ("add", "update", "delete", "show")
KEYS = ("ipport", "hostnameport")

# ERROR_FILE_NOT_FOUND: netsh's "SSL Certificate deletion failed, Error: 2" for a missing key.
ERROR_FILE_NOT_FOUND = 2
ERROR_ALREADY_EXISTS = 183
# ERROR_NO_SUCH_LOGON_SESSION: what netsh reports when HTTP.sys cannot get the certificate's
# private key, i.e. the certificate is not in the machine store named, or has no key.
ERROR_NO_SUCH_LOGON_SESSION = 1312

_COLUMNS = ("kind", "key", *PARAM_NAMES)
# ipport bindings first, then hostnameport, as netsh lists them.
_SELECT = (f"SELECT {', '.join(_COLUMNS)} FROM sslcert WHERE kind IN ('ipport', 'hostnameport')")
_ORDER = " ORDER BY CASE kind WHEN 'ipport' THEN 0 ELSE 1 END, key"


def _key(values: dict[str, Any]) -> tuple[str, str]:
    """The binding's key (``_kv.parse`` has checked there is exactly one where required)."""
    for kind in KEYS:
        if kind in values:
            return kind, str(values[kind])
    raise AssertionError("sslcert: no ipport= or hostnameport=")  # parse's one_of guarantees it


def _rows(conn: Store | sqlite3.Connection, kind: str | None = None,
          key: str | None = None) -> list[dict[str, Any]]:
    if kind is None:
        cursor = conn.execute(_SELECT + _ORDER)
    else:
        cursor = conn.execute(_SELECT + " AND kind = ? AND key = ?", (kind, key))
    return [dict(zip(_COLUMNS, row)) for row in cursor]


def _params(row: dict[str, Any]) -> SslCertParams:
    """A stored binding's parameters (booleans are stored 0/1)."""
    values: dict[str, Any] = {name: bool(row[name]) if name in BOOL_PARAMS else row[name]
                              for name in PARAM_NAMES}
    return SslCertParams(**values)


def _for_show(row: dict[str, Any]) -> dict[str, Any]:
    binding = {name: row[name] for name in PARAM_NAMES}
    binding[row["kind"]] = row["key"]
    return binding


def _check_certificate(conn: sqlite3.Connection, params: SslCertParams) -> None:
    """The certificate must be in the certificate store named (default MY) with its key."""
    storename = (params.certstorename or "MY").upper()
    thumb = params.certhash
    row = conn.execute(
        "SELECT c.store, k.thumbprint IS NOT NULL FROM certificates c "
        "LEFT JOIN private_keys k ON k.thumbprint = c.thumbprint WHERE c.thumbprint = ?",
        (thumb,)).fetchone()
    if row is None or row[0] != storename:
        elsewhere = f" (it is in {row[0]}, which keeps no private keys)" if row else \
            " (see httpsys cert list; add one with httpsys cert new or httpsys cert import)"
        raise HttpFailure(
            ERROR_NO_SUCH_LOGON_SESSION,
            f"certhash={thumb}: no certificate with this thumbprint in the {storename} "
            f"certificate store{elsewhere}", param="certhash", exit_code=2)
    if not row[1]:
        raise HttpFailure(
            ERROR_NO_SUCH_LOGON_SESSION,
            f"certhash={thumb}: the certificate has no private key in the {storename} "
            "certificate store; import it together with its key (httpsys cert import FILE)",
            param="certhash", exit_code=2)


def _write(conn: sqlite3.Connection, kind: str, key: str, params: SslCertParams,
           *, insert: bool) -> None:
    values = params.to_dict()
    if insert:
        columns = ("kind", "key", *values)
        conn.execute(f"INSERT INTO sslcert ({', '.join(columns)}) "
                     f"VALUES ({', '.join('?' * len(columns))})", (kind, key, *values.values()))
    else:
        conn.execute(f"UPDATE sslcert SET {', '.join(f'{n} = ?' for n in values)} "
                     "WHERE kind = ? AND key = ?", (*values.values(), kind, key))


def add(store: Store, values: dict[str, Any]) -> int:
    kind, key = _key(values)
    params = SslCertParams.from_kv(values)
    with store.transaction() as conn:
        if _rows(conn, kind, key):
            raise HttpFailure(
                ERROR_ALREADY_EXISTS,
                f"{kind}={key}: a binding exists already; change it with update sslcert, "
                "or delete it first", param=kind)
        _check_certificate(conn, params)
        _write(conn, kind, key, params, insert=True)
    sys.stdout.write(format_success("sslcert", "add"))
    return 0


def update(store: Store, values: dict[str, Any]) -> int:
    kind, key = _key(values)
    with store.transaction() as conn:
        rows = _rows(conn, kind, key)
        if not rows:
            raise HttpFailure(ERROR_FILE_NOT_FOUND,
                              f"{kind}={key}: no such binding (add it with add sslcert)",
                              param=kind)
        params = _params(rows[0]).update(values)
        _check_certificate(conn, params)
        _write(conn, kind, key, params, insert=False)
    sys.stdout.write(format_success("sslcert", "update"))
    return 0


def delete(store: Store, values: dict[str, Any]) -> int:
    kind, key = _key(values)
    with store.transaction() as conn:
        if conn.execute("DELETE FROM sslcert WHERE kind = ? AND key = ?",
                        (kind, key)).rowcount == 0:
            raise HttpFailure(ERROR_FILE_NOT_FOUND, f"{kind}={key}: no such binding",
                              param=kind)
    sys.stdout.write(format_success("sslcert", "delete"))
    return 0


def show(store: Store, values: dict[str, Any]) -> int:
    """All bindings, or the one named; a key with no binding prints the header only."""
    if any(kind in values for kind in KEYS):
        rows = _rows(store, *_key(values))
    else:
        rows = _rows(store)
    sys.stdout.write(format_sslcert([_for_show(row) for row in rows]))
    return 0
