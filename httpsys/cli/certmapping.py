"""``httpsys http add|update|delete|show certmapping``: IIS client-certificate mappings
(reference 4.4) in the config store, in netsh's style.

    httpsys http add certmapping name=NAME type=onetoone certfile=FILE|certhash=THUMBPRINT
                                 user=USER [enabled=yes|no]
    httpsys http add certmapping name=NAME type=manytoone rules="Field.SubField=criteria;..."
                                 user=USER [permission=allow|deny] [casesensitive=yes|no]
                                 [enabled=yes|no]
    httpsys http update certmapping name=NAME [any add parameter ...]
    httpsys http delete certmapping name=NAME
    httpsys http show certmapping [name=NAME]

One-to-one: ``certfile`` is a PEM (one certificate) or DER file, ``certhash`` the thumbprint of
a certificate of the certificate store (MY, ROOT or CA); the mapping keeps the certificate's
bytes, so deleting it from the store later does not change the mapping. Many-to-one: Field is
Subject or Issuer, SubField CN, OU, O, L, S or C, and ``*`` in the criteria matches any run of
characters; every rule must match; ``user`` may be left out of a Deny mapping. Defaults:
permission=allow, casesensitive=yes, enabled=yes.

Names compare case-insensitively; mappings are evaluated in the order they were added (an
update keeps the place). ``add`` of an existing name fails with 183, ``update``/``delete`` of a
missing one with 2. ``update`` changes only the parameters given; ``type=`` changes the kind of
mapping, and then the new kind's certificate or rules must be given. Each change is one store
transaction: a refused one changes nothing, not even the generation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import sys
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .. import certmapping
from ..certmapstore import MappingRow, dump_rules, read_rows, write_row
from ..errors import InvalidParameterError
from ..store import Store
from . import HttpFailure
from ._kv import KvError, format_certmapping, format_success

VERBS = ("add", "update", "delete", "show")

ERROR_FILE_NOT_FOUND = 2
ERROR_ALREADY_EXISTS = 183
ERROR_NOT_FOUND = 1168

#: Parameters only one kind of mapping takes.
ONETOONE_ONLY = ("certfile", "certhash")
MANYTOONE_ONLY = ("rules", "permission", "casesensitive")

#: httpsys.certmapping's parameter names (IIS attribute names) → this command's.
_PARAMS = {"certificate": "certfile", "userName": "user", "permissionMode": "permission",
           "certificateField": "rules", "certificateSubField": "rules",
           "matchCriteria": "rules", "rules": "rules", "mappings": "name"}


def read_certificate_file(path: str) -> bytes:
    """The DER of the one certificate in a PEM or DER file. KvError (``certfile``) otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KvError(f"certfile={path}: cannot read it: {e.strerror}", param="certfile") from None
    try:
        if b"-----BEGIN" in data:
            certs = (x509.load_pem_x509_certificates(data)
                     if b"-----BEGIN CERTIFICATE-----" in data else [])
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise KvError(f"certfile={path}: not a PEM or DER certificate ({e})",
                      param="certfile") from None
    if len(certs) != 1:
        raise KvError(f"certfile={path}: holds {len(certs)} certificates; a one-to-one mapping "
                      "needs a file with exactly one (the client's)", param="certfile")
    return certs[0].public_bytes(Encoding.DER)


def _certificate_from_store(conn: sqlite3.Connection, thumb: str) -> bytes:
    row = conn.execute("SELECT der FROM certificates WHERE thumbprint = ?", (thumb,)).fetchone()
    if row is None:
        raise HttpFailure(ERROR_NOT_FOUND,
                          f"certhash={thumb}: no certificate with this thumbprint in the "
                          "certificate store (see httpsys cert list; or give certfile=)",
                          param="certhash", exit_code=2)
    return bytes(row[0])


def _check_name(name: str) -> str:
    if any(c in name for c in "\t\r\n\0"):
        raise KvError(f"name={name!r}: a mapping name cannot hold tabs or line breaks",
                      param="name")
    return name


def _build(conn: sqlite3.Connection, old: MappingRow | None, values: dict[str, Any]) -> MappingRow:
    """The mapping ``values`` make of ``old`` (None for add). Raises KvError naming the
    parameter that is missing, does not fit the type, or that httpsys.certmapping refuses."""
    type_ = str(values.get("type") or (old.type if old else ""))
    wrong = MANYTOONE_ONLY if type_ == "onetoone" else ONETOONE_ONLY
    for key in wrong:
        if key in values:
            other = "manytoone" if type_ == "onetoone" else "onetoone"
            raise KvError(f"{key}= is a parameter of type={other} mappings; mapping "
                          f"{values['name']!r} is type={type_}", param=key)
    same = old if old is not None and old.type == type_ else None  # what carries over
    user = values.get("user", old.user if old else None)
    enabled = bool(values.get("enabled", old.enabled if old else True))
    if type_ == "onetoone":
        if "certfile" in values:
            der = read_certificate_file(str(values["certfile"]))
        elif "certhash" in values:
            der = _certificate_from_store(conn, str(values["certhash"]))
        elif same is not None and same.certificate is not None:
            der = same.certificate
        else:
            raise KvError("type=onetoone needs certfile= or certhash= (the client's certificate)",
                          param="certfile")
        if user is None:
            raise KvError("user= is required for a type=onetoone mapping", param="user")
        row = MappingRow(old.name if old else values["name"], type_, der,
                         hashlib.sha1(der).hexdigest(), None, user, "Allow", True, enabled)
    else:
        if "rules" in values:
            rules: tuple[certmapping.Rule, ...] = values["rules"]
        elif same is not None:
            rules = same.rules
        else:
            raise KvError("type=manytoone needs rules=, e.g. rules=\"Subject.O=Contoso;"
                          "Issuer.CN=Contoso CA\"", param="rules")
        permission = str(values.get("permission", same.permission if same else "Allow"))
        casesensitive = bool(values.get("casesensitive", same.casesensitive if same else True))
        if user is None and permission == "Allow":
            raise KvError("user= is required for a type=manytoone mapping with permission=allow",
                          param="user")
        row = MappingRow(old.name if old else values["name"], type_, None, None,
                         dump_rules(rules), user, permission, casesensitive, enabled)
    _validate(row)
    return row


def _validate(row: MappingRow) -> None:
    """httpsys.certmapping's own checks (the ones the server applies), as if enabled."""
    try:
        certmapping.encode([dataclasses.replace(row.to_mapping(), enabled=True)])
    except InvalidParameterError as e:
        param = _PARAMS.get(e.param or "", e.param or "name")
        raise KvError(f"{param}=: {e}", param=param) from None


def _find(conn: sqlite3.Connection, name: str, verb: str) -> MappingRow:
    rows = read_rows(conn, name)
    if not rows:
        hint = " (add it with add certmapping)" if verb == "update" else ""
        raise HttpFailure(ERROR_FILE_NOT_FOUND,
                          f"name={name}: no such certificate mapping{hint}", param="name")
    return rows[0]


def add(store: Store, values: dict[str, Any]) -> int:
    name = _check_name(str(values["name"]))
    with store.transaction() as conn:
        existing = read_rows(conn, name)
        if existing:
            raise HttpFailure(ERROR_ALREADY_EXISTS,
                              f"name={name}: the mapping {existing[0].name!r} exists already; "
                              "change it with update certmapping, or delete it first",
                              param="name")
        write_row(conn, _build(conn, None, values), insert=True)
    sys.stdout.write(format_success("certmapping", "add"))
    return 0


def update(store: Store, values: dict[str, Any]) -> int:
    name = str(values["name"])
    with store.transaction() as conn:
        old = _find(conn, name, "update")
        write_row(conn, _build(conn, old, values), insert=False)
    sys.stdout.write(format_success("certmapping", "update"))
    return 0


def delete(store: Store, values: dict[str, Any]) -> int:
    name = str(values["name"])
    with store.transaction() as conn:
        _find(conn, name, "delete")
        conn.execute("DELETE FROM certmapping WHERE name = ?", (name,))
    sys.stdout.write(format_success("certmapping", "delete"))
    return 0


def _subject(der: bytes | None) -> str | None:
    if der is None:
        return None
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return "(damaged certificate)"


def _for_show(row: MappingRow) -> dict[str, Any]:
    many = row.type == "manytoone"
    return {"name": row.name, "type": row.type, "certhash": row.thumbprint,
            "subject": _subject(row.certificate), "rules": row.rules if many else None,
            "user": row.user, "permission": row.permission if many else None,
            "casesensitive": row.casesensitive if many else None, "enabled": row.enabled}


def show(store: Store, values: dict[str, Any]) -> int:
    """Every mapping in evaluation order, or the one ``name=`` names (the header only if there
    is none)."""
    rows = read_rows(store, str(values["name"])) if "name" in values else read_rows(store)
    sys.stdout.write(format_certmapping([_for_show(row) for row in rows]))
    return 0
