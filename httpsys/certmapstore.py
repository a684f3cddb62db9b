"""Client-certificate mappings in the config store (the ``certmapping`` table).

The ``httpsys http ... certmapping`` commands write the table; the watcher reads it and hands
the mappings to ``Server.set_certmappings``. A row is kept as stored (``MappingRow``, rules as
their JSON text) so that two reads compare equal exactly when nothing changed, and a damaged
row fails only when it is turned into an ``httpsys.certmapping`` object (``to_mapping``), never
while the store is read.

Rows are read in ``position`` order, the order they were added in: the order mappings are
evaluated in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .certmapping import ManyToOne, Mapping, OneToOne, Rule
from .errors import InvalidParameterError

TYPES = ("onetoone", "manytoone")

COLUMNS = ("name", "type", "certificate", "thumbprint", "rules", "user", "permission",
           "casesensitive", "enabled")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM certmapping"


def dump_rules(rules: Iterable[Rule]) -> str:
    """The rules as stored: a JSON list of ``[field, subfield, criteria]``."""
    return json.dumps([[r.field, r.subfield, r.criteria] for r in rules], ensure_ascii=False)


def load_rules(text: str | None, name: str = "") -> tuple[Rule, ...]:
    """The stored JSON rules as Rule objects. InvalidParameterError (``rules``) if damaged."""
    def damaged(why: str) -> InvalidParameterError:
        return InvalidParameterError(f"rules: the stored rules of mapping {name!r} are damaged "
                                     f"({why}); set them again with update certmapping",
                                     param="rules")

    try:
        items = json.loads(text) if text is not None else None
    except ValueError as e:
        raise damaged(str(e)) from None
    if not isinstance(items, list):
        raise damaged("not a list")
    out = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3
                and all(isinstance(part, str) for part in item)):
            raise damaged(f"{item!r} is not [field, subfield, criteria]")
        out.append(Rule(item[0], item[1], item[2]))
    return tuple(out)


@dataclass(frozen=True)
class MappingRow:
    """One stored mapping. ``certificate`` and ``thumbprint`` are set for one-to-one mappings,
    ``rules_json`` for many-to-one ones; ``user`` is None only for a many-to-one Deny."""

    name: str
    type: str
    certificate: bytes | None
    thumbprint: str | None
    rules_json: str | None
    user: str | None
    permission: str
    casesensitive: bool
    enabled: bool

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> MappingRow:
        name, type_, der, thumb, rules_json, user, permission, casesensitive, enabled = row
        return cls(name, type_, bytes(der) if der is not None else None, thumb, rules_json,
                   user, permission, bool(casesensitive), bool(enabled))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The many-to-one rules (empty for one-to-one). InvalidParameterError if damaged."""
        if self.type != "manytoone":
            return ()
        return load_rules(self.rules_json, self.name)

    def to_mapping(self) -> Mapping:
        """The ``httpsys.certmapping`` object of this row. InvalidParameterError if damaged."""
        if self.type == "onetoone":
            if self.certificate is None:
                raise InvalidParameterError(f"certificate: one-to-one mapping {self.name!r} has "
                                            "no certificate", param="certificate")
            return OneToOne(self.certificate, self.user or "", self.enabled)
        if self.type == "manytoone":
            return ManyToOne(self.name, self.user or "", self.rules, self.permission,
                             self.casesensitive, self.enabled)
        raise InvalidParameterError(f"type: mapping {self.name!r} has the unknown type "
                                    f"{self.type!r}", param="type")


def read_rows(conn: Any, name: str | None = None) -> list[MappingRow]:
    """Every mapping in evaluation order, or the one named (case-insensitive). ``conn`` is a
    Store or a sqlite3 connection (inside a transaction, to see its own changes)."""
    if name is None:
        cursor = conn.execute(_SELECT + " ORDER BY position")
    else:
        cursor = conn.execute(_SELECT + " WHERE name = ? ORDER BY position", (name,))
    return [MappingRow.from_db(tuple(r)) for r in cursor]


def write_row(conn: sqlite3.Connection, row: MappingRow, *, insert: bool) -> None:
    """Inserts ``row`` after every other mapping, or replaces the mapping of its name in place
    (keeping its position). Call inside ``Store.transaction()``."""
    values = (row.name, row.type, row.certificate, row.thumbprint, row.rules_json, row.user,
              row.permission, int(row.casesensitive), int(row.enabled))
    if insert:
        conn.execute(f"INSERT INTO certmapping ({', '.join(COLUMNS)}, position) VALUES "
                     f"({', '.join('?' * len(COLUMNS))}, "
                     "(SELECT coalesce(max(position), 0) + 1 FROM certmapping))", values)
    else:
        conn.execute(f"UPDATE certmapping SET {', '.join(f'{c} = ?' for c in COLUMNS)} "
                     "WHERE name = ?", (*values, row.name))
