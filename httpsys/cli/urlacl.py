"""``httpsys http add|delete|show urlacl``: URL reservations, as netsh has them.

    httpsys http add urlacl url=PREFIX user=NAME [listen=yes|no] [delegate=yes|no]
    httpsys http add urlacl url=PREFIX sddl=SDDL
    httpsys http delete urlacl url=PREFIX
    httpsys http show urlacl [url=PREFIX]

Reference 1.5. ``user`` (with ``listen``, default yes, and ``delegate``, default no) or ``sddl``,
not both. A URL is reserved once (183 on a second ``add``); URLs compare case-insensitively, as
HTTP.sys compares reservations.
"""

from __future__ import annotations

import sys
from typing import Any

from ..store import Store
from . import HttpFailure
from ._kv import format_success, format_urlacl

VERBS = ("add", "delete", "show")

ERROR_FILE_NOT_FOUND = 2
ERROR_ALREADY_EXISTS = 183

_SELECT = "SELECT url, user, listen, delegate, sddl FROM urlacl"


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    url, user, listen, delegate, sddl = row
    entry: dict[str, Any] = {"url": url, "sddl": sddl}
    if user is not None:
        entry.update(user=user, listen=bool(listen), delegate=bool(delegate))
    return entry


def add(store: Store, values: dict[str, Any]) -> int:
    url = values["url"]
    with store.transaction() as conn:
        row = conn.execute("SELECT url FROM urlacl WHERE lower(url) = lower(?)",
                           (url,)).fetchone()
        if row is not None:
            raise HttpFailure(ERROR_ALREADY_EXISTS,
                              f"url={url}: {row[0]} is reserved already; delete it first",
                              param="url")
        conn.execute("INSERT INTO urlacl (url, user, listen, delegate, sddl) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (url, values.get("user"), bool(values.get("listen", True)),
                      bool(values.get("delegate", False)), values.get("sddl")))
    sys.stdout.write(format_success("urlacl", "add"))
    return 0


def delete(store: Store, values: dict[str, Any]) -> int:
    url = values["url"]
    with store.transaction() as conn:
        if conn.execute("DELETE FROM urlacl WHERE lower(url) = lower(?)",
                        (url,)).rowcount == 0:
            raise HttpFailure(ERROR_FILE_NOT_FOUND, f"url={url}: no such reservation",
                              param="url")
    sys.stdout.write(format_success("urlacl", "delete"))
    return 0


def show(store: Store, values: dict[str, Any]) -> int:
    """Every reservation, or the one ``url=`` names (the header only if there is none)."""
    if "url" in values:
        rows = store.execute(_SELECT + " WHERE lower(url) = lower(?)", (values["url"],))
    else:
        rows = store.execute(_SELECT + " ORDER BY lower(url)")
    sys.stdout.write(format_urlacl([_entry(row) for row in rows]))
    return 0
