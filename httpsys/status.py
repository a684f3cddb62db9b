"""Views of the C core's status table: every reason the listener answers a request itself."""

from __future__ import annotations

from dataclasses import dataclass

from ._native import ffi, lib


@dataclass(frozen=True)
class StatusRow:
    reject: int
    status: int
    substatus: int
    heading: str
    httperr: str


def table() -> list[StatusRow]:
    """Every row of csrc/status.c, read through cffi (never retyped in Python)."""
    rows = []
    status, sub = ffi.new("int *"), ffi.new("int *")
    reason, httperr = ffi.new("const char **"), ffi.new("const char **")
    for code in range(lib.hs_reject_count()):
        if lib.hs_reject_status(code, status, sub, reason, httperr) == lib.HS_RESULT_OK:
            rows.append(StatusRow(code, status[0], sub[0], ffi.string(reason[0]).decode(),
                                  ffi.string(httperr[0]).decode()))
    return rows
