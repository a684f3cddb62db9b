"""``httpsys http add|delete|show iplisten``: the IP listen list, as netsh has it.

    httpsys http add iplisten ipaddress=IP
    httpsys http delete iplisten ipaddress=IP
    httpsys http show iplisten

Reference 1.5. An empty list (the default) means listening on ``0.0.0.0`` and ``[::]`` for
every registered port; otherwise only on the listed addresses. Addresses are stored in their
compressed form (``fe80::1``), so two spellings of one address are one entry.
"""

from __future__ import annotations

import sys
from typing import Any

from ..store import Store
from . import HttpFailure
from ._kv import format_iplisten, format_success

VERBS = ("add", "delete", "show")

# (I) netsh's numbers for these two are not in the reference's transcripts; the list lives in
# the registry like the other settings, so a missing entry is ERROR_FILE_NOT_FOUND.
ERROR_FILE_NOT_FOUND = 2
ERROR_ALREADY_EXISTS = 183


def add(store: Store, values: dict[str, Any]) -> int:
    address = values["ipaddress"]
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM iplisten WHERE address = ?", (address,)).fetchone():
            raise HttpFailure(ERROR_ALREADY_EXISTS,
                              f"ipaddress={address}: in the IP listen list already",
                              param="ipaddress")
        conn.execute("INSERT INTO iplisten (address) VALUES (?)", (address,))
    sys.stdout.write(format_success("iplisten", "add"))
    return 0


def delete(store: Store, values: dict[str, Any]) -> int:
    address = values["ipaddress"]
    with store.transaction() as conn:
        if conn.execute("DELETE FROM iplisten WHERE address = ?", (address,)).rowcount == 0:
            raise HttpFailure(ERROR_FILE_NOT_FOUND,
                              f"ipaddress={address}: not in the IP listen list",
                              param="ipaddress")
    sys.stdout.write(format_success("iplisten", "delete"))
    return 0


def show(store: Store, values: dict[str, Any]) -> int:
    rows = store.execute("SELECT address FROM iplisten ORDER BY address")
    sys.stdout.write(format_iplisten(address for (address,) in rows))
    return 0
