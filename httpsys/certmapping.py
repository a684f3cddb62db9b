"""Client-certificate mapping (IIS iisClientCertificateMappingAuthentication, reference 4.4).

A URL prefix with the ``SslMapCert`` sslFlag maps each client certificate to a user name, which
the application sees as ``REMOTE_USER`` (``AUTH_TYPE`` ``SSL/PCT``, as IIS sets it):

- one-to-one: the presented certificate is byte-for-byte the one in the mapping (a re-issued
  certificate with the same fields does not match);
- many-to-one: every rule of the mapping matches a field of the certificate's Subject or Issuer
  (``CN``, ``OU``, ``O``, ``L``, ``S``, ``C``; ``*`` in the criteria matches any run of
  characters), compared case-sensitively unless the mapping says otherwise. The first mapping
  (in order) whose rules all match decides: ``Allow`` maps to its user, ``Deny`` refuses.

One-to-one mappings are looked at first. No match, or a Deny, gets 403.12 from the core. The
matching runs in C, once per connection and mapping set (csrc/certmap.c); this module only
validates and lays the mappings out for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidParameterError

#: IIS certificateSubField names → what they mean (S is stateOrProvinceName).
SUBFIELDS = ("CN", "OU", "O", "L", "S", "C")
FIELDS = ("Subject", "Issuer")
PERMISSIONS = ("Allow", "Deny")


@dataclass(frozen=True)
class Rule:
    """``<add certificateField="Subject" certificateSubField="O" matchCriteria="Contoso"/>``."""

    field: str
    subfield: str
    criteria: str


@dataclass(frozen=True)
class OneToOne:
    """``<oneToOneMappings><add certificate="BASE64-DER" userName=.../>``: ``certificate`` is
    the DER of the exact certificate."""

    certificate: bytes
    user: str
    enabled: bool = True


@dataclass(frozen=True)
class ManyToOne:
    """``<manyToOneMappings><add name=... userName=... permissionMode="Allow|Deny"
    compareCaseSensitive=...><rules>...</rules></add>``."""

    name: str
    user: str
    rules: tuple[Rule, ...]
    permission: str = "Allow"
    case_sensitive: bool = True
    enabled: bool = True


Mapping = OneToOne | ManyToOne


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\t\n\r\0"):
        raise InvalidParameterError(f"{what} must be a non-empty string without tabs or line breaks, "
                                    f"not {value!r}", param=what)
    return value


def _rule(r: Rule) -> str:
    field = next((f for f in FIELDS if f.lower() == str(r.field).lower()), None)
    if field is None:
        raise InvalidParameterError(f"certificateField must be Subject or Issuer, not {r.field!r}",
                                    param="certificateField")
    sub = next((s for s in SUBFIELDS if s.lower() == str(r.subfield).lower()), None)
    if sub is None:
        raise InvalidParameterError(f"certificateSubField must be one of {', '.join(SUBFIELDS)}, "
                                    f"not {r.subfield!r}", param="certificateSubField")
    return f"{field[0]}{sub}\t{_text(r.criteria, 'matchCriteria')}"


def encode(mappings: Iterable[Mapping]) -> bytes:
    """The mappings as the core reads them: one line each, tab-separated fields.

    ``1\\t<sha256 hex of the DER>\\t<user>`` for one-to-one;
    ``M\\t<A|D>\\t<1|0 case-sensitive>\\t<user>\\t<n rules>\\t<S|I><sub>\\t<criteria>...`` for
    many-to-one. Disabled mappings are left out. InvalidParameterError names a bad field.
    """
    lines = []
    for m in mappings:
        if isinstance(m, OneToOne):
            if not isinstance(m.certificate, bytes | bytearray) or not m.certificate:
                raise InvalidParameterError("certificate must be the DER bytes of a certificate",
                                            param="certificate")
            line = f"1\t{hashlib.sha256(bytes(m.certificate)).hexdigest()}\t{_text(m.user, 'userName')}"
            if m.enabled:  # validated either way: enabling it later must not fail
                lines.append(line)
        elif isinstance(m, ManyToOne):
            if m.permission not in PERMISSIONS:
                raise InvalidParameterError(f"permissionMode must be Allow or Deny, not {m.permission!r}",
                                            param="permissionMode")
            if not m.rules:
                raise InvalidParameterError(f"many-to-one mapping {m.name!r} has no rules", param="rules")
            rules = [_rule(r) for r in m.rules]
            user = _text(m.user, "userName") if m.permission == "Allow" else (m.user or "-")
            if m.enabled:
                lines.append("\t".join(["M", m.permission[0], "1" if m.case_sensitive else "0", user,
                                        str(len(rules)), *rules]))
        else:
            raise InvalidParameterError(f"not a certificate mapping: {m!r}", param="mappings")
    return "".join(line + "\n" for line in lines).encode("utf-8")
