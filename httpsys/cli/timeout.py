"""``httpsys http add|delete|show timeout``: the service-wide timeouts, as netsh has them.

    httpsys http add timeout timeouttype=TYPE value=N
    httpsys http delete timeout timeouttype=TYPE
    httpsys http show timeout

TYPE is one of netsh's ``idleconnectiontimeout`` and ``headerwaittimeout``, or the rest of
HTTP.sys's timeouts (HTTP_TIMEOUT_LIMIT_INFO): ``entitybodytimeout``,
``drainentitybodytimeout``, ``requestqueuetimeout`` and ``minsendrate``.

Reference 1.5. ``value`` is an unsigned 16-bit number of seconds, except for ``minsendrate``:
bytes a second, an unsigned 32-bit number (4294967295 turns the check off); ``0x`` hex is
allowed. ``add`` sets the value whether or not one was set before; ``delete`` reverts to the
default, 120 seconds (minsendrate 150 bytes a second), which ``show timeout`` prints for a
timeout never set. A running ``httpsys serve`` applies changes to new waits at once.
"""

from __future__ import annotations

import sys
from typing import Any

from ..store import Store
from ._kv import format_success, format_timeout

VERBS = ("add", "delete", "show")


def add(store: Store, values: dict[str, Any]) -> int:
    with store.transaction() as conn:
        conn.execute("INSERT INTO timeouts (timeouttype, value) VALUES (?, ?) "
                     "ON CONFLICT (timeouttype) DO UPDATE SET value = excluded.value",
                     (values["timeouttype"], values["value"]))
    sys.stdout.write(format_success("timeout", "add"))
    return 0


def delete(store: Store, values: dict[str, Any]) -> int:
    with store.transaction() as conn:
        conn.execute("DELETE FROM timeouts WHERE timeouttype = ?", (values["timeouttype"],))
    sys.stdout.write(format_success("timeout", "delete"))
    return 0


def show(store: Store, values: dict[str, Any]) -> int:
    rows = store.execute("SELECT timeouttype, value FROM timeouts")
    sys.stdout.write(format_timeout({kind: int(value) for kind, value in rows}))
    return 0
