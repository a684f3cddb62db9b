"""netsh's ``key=value`` arguments and output layouts, pure (no store, no I/O).

``parse(args, spec)`` reads the arguments of one ``httpsys http VERB NOUN`` command the way
netsh does (keys case-insensitive, values optionally in double quotes, positional values where
netsh allows them) and validates them against ``SPECS[(verb, noun)]``. The ``format_*``
functions reproduce the output of ``netsh http show ...`` and netsh's success and failure lines
(reference 1.4 and 1.5). Output uses ``\\n``; netsh's ``\\r\\n`` is the Windows console's newline.

parse raises only KvError (an InvalidParameterError naming the parameter); the formatters raise
only InvalidParameterError for a binding without a key. Anything else is a bug.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..certmapping import FIELDS as RULE_FIELDS
from ..certmapping import SUBFIELDS as RULE_SUBFIELDS
from ..certmapping import Rule
from ..errors import HttpsysError, InvalidParameterError
from ..sslcert_params import (
    PARAM_KINDS as SSLCERT_PARAM_KINDS,
)
from ..sslcert_params import (
    SslCertParams,
    normalize_appid,
    normalize_certhash,
)
from ..urlprefix import parse as parse_urlprefix

__all__ = [
    "SPECS",
    "WIN32_MESSAGES",
    "KvError",
    "Param",
    "Spec",
    "format_certmapping",
    "format_failure",
    "format_iplisten",
    "format_param_error",
    "format_rules",
    "format_sslcert",
    "format_sslcert_binding",
    "format_success",
    "format_timeout",
    "format_urlacl",
    "parse",
    "spec_for",
]

PARAMETER_INCORRECT = "The parameter is incorrect."


class KvError(InvalidParameterError):
    """A ``key=value`` argument is missing, unknown, repeated or malformed.

    ``param`` names the parameter, ``reason`` says what was expected; ``str()`` is netsh's
    "The parameter is incorrect." followed by the reason.
    """

    exit_code = 2  # bad usage or a bad parameter (httpsys.cli exit codes)

    def __init__(self, reason: str, *, param: str | None) -> None:
        super().__init__(f"{PARAMETER_INCORRECT} {reason}", param=param)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Value kinds: each takes (parameter name, raw text) and returns the typed, normalized value.

Kind = Callable[[str, str], Any]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _port(param: str, raw: str, text: str) -> int:
    if not text.isdigit() or not text.isascii() or not 1 <= int(text) <= 65535:
        raise KvError(f"{param}={raw}: the port must be a number from 1 to 65535", param=param)
    return int(text)


def ipport(param: str, raw: str) -> str:
    """``IP:PORT``: ``0.0.0.0:443``, ``10.0.0.1:443``, ``[::]:443``, ``[fe80::1]:443``."""
    expected = "expected IP:PORT, e.g. 0.0.0.0:443 or [::]:443 (IPv6 in brackets)"
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
        if not sep:
            raise KvError(f"{param}={raw}: {expected}", param=param)
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise KvError(f"{param}={raw}: {host!r} is not an IPv6 address; {expected}",
                          param=param) from None
        return f"[{address.compressed}]:{_port(param, raw, port)}"
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise KvError(f"{param}={raw}: {expected}", param=param)
    if ":" in host:
        raise KvError(f"{param}={raw}: put an IPv6 address in brackets, e.g. [::1]:443",
                      param=param)
    try:
        address4 = ipaddress.IPv4Address(host)
    except ValueError:
        raise KvError(f"{param}={raw}: {host!r} is not an IPv4 address; {expected} "
                      "(use hostnameport= for a host name)", param=param) from None
    return f"{address4.compressed}:{_port(param, raw, port)}"


def hostnameport(param: str, raw: str) -> str:
    """``name:port`` (an SNI binding); the name is returned in lowercase."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise KvError(f"{param}={raw}: expected HOSTNAME:PORT, e.g. www.contoso.com:443",
                      param=param)
    name = host.lower()
    if len(name) > 253 or _NAME.match(name) is None:
        raise KvError(f"{param}={raw}: {host!r} is not a valid host name; "
                      "expected HOSTNAME:PORT, e.g. www.contoso.com:443", param=param)
    return f"{name}:{_port(param, raw, port)}"


def certhash(param: str, raw: str) -> str:
    try:
        return normalize_certhash(raw, param)
    except InvalidParameterError as exc:
        raise KvError(str(exc), param=param) from None


def guid(param: str, raw: str) -> str:
    try:
        return normalize_appid(raw, param)
    except InvalidParameterError as exc:
        raise KvError(str(exc), param=param) from None


def enable(param: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("enable", "disable"):
        raise KvError(f"{param}={raw}: expected enable or disable", param=param)
    return value == "enable"


def yesno(param: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("yes", "no"):
        raise KvError(f"{param}={raw}: expected yes or no", param=param)
    return value == "yes"


def uint(low: int, high: int) -> Kind:
    """An integer in [low, high], decimal or hexadecimal with ``0x`` (``value=0x40``)."""

    def kind(param: str, raw: str) -> int:
        hexadecimal = raw[:2].lower() == "0x"
        digits = raw[2:] if hexadecimal else raw
        allowed = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
        if digits and all(c in allowed for c in digits):
            number = int(digits, 16 if hexadecimal else 10)
            if low <= number <= high:
                return number
        raise KvError(f"{param}={raw}: expected an integer from {low} to {high} "
                      "(decimal, or hexadecimal with 0x)", param=param)

    return kind


def string(param: str, raw: str) -> str:
    return raw


def ip_address(param: str, raw: str) -> str:
    """An IPv4 or IPv6 address without a port (``0.0.0.0`` = any IPv4, ``::`` = any IPv6)."""
    text = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise KvError(f"{param}={raw}: expected an IPv4 or IPv6 address without a port, "
                      "e.g. 10.0.0.1 or fe80::1", param=param) from None


def urlprefix(param: str, raw: str) -> str:
    """A UrlPrefix (reference 2.2), returned as given."""
    try:
        parse_urlprefix(raw)
    except InvalidParameterError as exc:
        raise KvError(f"{param}={raw}: {exc}", param=param) from None
    return raw


def choice(*values: str) -> Kind:
    def kind(param: str, raw: str) -> str:
        value = raw.lower()
        if value not in values:
            raise KvError(f"{param}={raw}: expected {' or '.join(values)}", param=param)
        return value

    return kind


def permission(param: str, raw: str) -> str:
    """``allow`` or ``deny`` (any case), returned as IIS spells it: ``Allow`` / ``Deny``."""
    value = raw.lower()
    if value not in ("allow", "deny"):
        raise KvError(f"{param}={raw}: expected allow or deny", param=param)
    return value.capitalize()


def rules(param: str, raw: str) -> tuple[Rule, ...]:
    """Many-to-one mapping rules: ``Field.SubField=criteria`` separated by ``;``, e.g.
    ``Subject.O=Contoso;Issuer.CN=Contoso CA``. Field is Subject or Issuer, SubField one of CN,
    OU, O, L, S, C (any case; returned as IIS spells them); the criteria run to the next ``;``
    and may hold ``*`` wildcards. Blanks around a rule are dropped, not inside its criteria."""
    expected = ("expected Field.SubField=criteria separated by ';', e.g. "
                "Subject.O=Contoso;Issuer.CN=Contoso CA")
    out = []
    for number, item in enumerate(raw.split(";"), 1):
        text = item.strip()
        where = f"{param}={raw}: rule {number}"
        if not text:
            raise KvError(f"{where} is empty; {expected}", param=param)
        target, sep, criteria = text.partition("=")
        field_name, dot, subfield = target.strip().partition(".")
        if not sep or not dot:
            raise KvError(f"{where} ({text!r}): {expected}", param=param)
        field_ = next((f for f in RULE_FIELDS if f.lower() == field_name.lower()), None)
        if field_ is None:
            raise KvError(f"{where} ({text!r}): the field must be Subject or Issuer, "
                          f"not {field_name!r}", param=param)
        sub = next((s for s in RULE_SUBFIELDS if s.lower() == subfield.lower()), None)
        if sub is None:
            raise KvError(f"{where} ({text!r}): the subfield must be one of "
                          f"{', '.join(RULE_SUBFIELDS)}, not {subfield!r}", param=param)
        if not criteria:
            raise KvError(f"{where} ({text!r}): the criteria after '=' are empty "
                          "(use * to match any value)", param=param)
        out.append(Rule(field_, sub, criteria))
    return tuple(out)


UINT16 = uint(0, 0xFFFF)
#: ``timeouttype`` values: netsh's two, then the rest of HTTP_TIMEOUT_LIMIT_INFO.
TIMEOUT_TYPES = ("idleconnectiontimeout", "headerwaittimeout", "entitybodytimeout",
                 "drainentitybodytimeout", "requestqueuetimeout", "minsendrate")
UINT32 = uint(0, 0xFFFFFFFF)


def _timeout_value(values: dict[str, Any]) -> None:
    """Seconds are USHORT; only minsendrate (bytes a second) is a ULONG."""
    if values["timeouttype"] != "minsendrate" and values["value"] > 0xFFFF:
        raise KvError(f"value={values['value']}: expected an integer from 0 to 65535 seconds for "
                      f"{values['timeouttype']} (decimal, or hexadecimal with 0x)", param="value")


_SSLCERT_KINDS: dict[str, Kind] = {
    "certhash": certhash, "guid": guid, "string": string, "uint32": UINT32, "enable": enable}


# ---------------------------------------------------------------------------------------------
# Specs: which keys each VERB NOUN takes.

@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    required: bool = False
    default: Any = None  # filled in by parse when absent (None: nothing is filled in)
    requires: str | None = None  # only valid together with this other key


@dataclass(frozen=True)
class Spec:
    verb: str
    noun: str
    params: tuple[Param, ...]
    one_of: tuple[tuple[str, ...], ...] = ()  # exactly one key of each group
    at_most_one_of: tuple[tuple[str, ...], ...] = ()
    positional: tuple[str, ...] = ()  # netsh's optional tags: "[url=]<s>"
    check: Callable[[dict[str, Any]], None] | None = None  # across parameters, after the rest
    by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.params})

    @property
    def command(self) -> str:
        return f"{self.verb} {self.noun}"


_SSLCERT_KEYS = (Param("ipport", ipport), Param("hostnameport", hostnameport))
_SSLCERT_ONE_KEY = (("ipport", "hostnameport"),)


def _sslcert_params(*, required: bool) -> tuple[Param, ...]:
    return tuple(Param(name, _SSLCERT_KINDS[kind], required=required and name in ("certhash", "appid"))
                 for name, kind in SSLCERT_PARAM_KINDS.items())


def _certmapping_params(*, add: bool) -> tuple[Param, ...]:
    # No defaults here: which keys were given matters (a one-to-one mapping refuses rules=).
    return (Param("name", string, required=True),
            Param("type", choice("onetoone", "manytoone"), required=add),
            Param("certfile", string), Param("certhash", certhash), Param("user", string),
            Param("rules", rules), Param("permission", permission),
            Param("casesensitive", yesno), Param("enabled", yesno))


SPECS: dict[tuple[str, str], Spec] = {
    (spec.verb, spec.noun): spec
    for spec in (
        Spec("add", "sslcert", _SSLCERT_KEYS + _sslcert_params(required=True),
             one_of=_SSLCERT_ONE_KEY),
        # update: the key, then only what changes (the rest of the binding is kept).
        Spec("update", "sslcert", _SSLCERT_KEYS + _sslcert_params(required=False),
             one_of=_SSLCERT_ONE_KEY),
        Spec("delete", "sslcert", _SSLCERT_KEYS, one_of=_SSLCERT_ONE_KEY),
        Spec("show", "sslcert", _SSLCERT_KEYS, at_most_one_of=_SSLCERT_ONE_KEY),
        Spec("add", "urlacl",
             (Param("url", urlprefix, required=True), Param("user", string),
              Param("listen", yesno, default=True, requires="user"),
              Param("delegate", yesno, default=False, requires="user"),
              Param("sddl", string)),
             one_of=(("user", "sddl"),), positional=("url", "user", "listen", "delegate", "sddl")),
        Spec("delete", "urlacl", (Param("url", urlprefix, required=True),), positional=("url",)),
        Spec("show", "urlacl", (Param("url", urlprefix),), positional=("url",)),
        Spec("add", "iplisten", (Param("ipaddress", ip_address, required=True),),
             positional=("ipaddress",)),
        Spec("delete", "iplisten", (Param("ipaddress", ip_address, required=True),),
             positional=("ipaddress",)),
        Spec("show", "iplisten", ()),
        # value: seconds (USHORT) for all but minsendrate, bytes/s (ULONG).
        Spec("add", "timeout",
             (Param("timeouttype", choice(*TIMEOUT_TYPES), required=True),
              Param("value", UINT32, required=True)),
             positional=("timeouttype", "value"), check=_timeout_value),
        Spec("delete", "timeout",
             (Param("timeouttype", choice(*TIMEOUT_TYPES), required=True),),
             positional=("timeouttype",)),
        Spec("show", "timeout", ()),
        Spec("add", "certmapping", _certmapping_params(add=True),
             at_most_one_of=(("certfile", "certhash"),), positional=("name",)),
        # update: the name, then only what changes (the rest of the mapping is kept).
        Spec("update", "certmapping", _certmapping_params(add=False),
             at_most_one_of=(("certfile", "certhash"),), positional=("name",)),
        Spec("delete", "certmapping", (Param("name", string, required=True),),
             positional=("name",)),
        Spec("show", "certmapping", (Param("name", string),), positional=("name",)),
    )
}


def spec_for(verb: str, noun: str) -> Spec:
    """The spec of ``VERB NOUN``; KvError (with a did-you-mean) if there is none."""
    key = (verb.lower(), noun.lower())
    if key in SPECS:
        return SPECS[key]
    nouns = sorted({n for _, n in SPECS})
    if key[1] not in nouns:
        raise KvError(f"unknown object {noun!r}{_did_you_mean(key[1], nouns)}; "
                      f"expected one of {', '.join(nouns)}", param=noun)
    verbs = sorted(v for v, n in SPECS if n == key[1])
    raise KvError(f"{noun} has no {verb!r} command{_did_you_mean(key[0], verbs)}; "
                  f"expected one of {', '.join(verbs)}", param=verb)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# parse

def _unquote(param: str, raw: str) -> str:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise KvError(f"{param}={raw}: unbalanced double quote", param=param)
        return raw[1:-1]
    if raw.endswith('"'):
        raise KvError(f"{param}={raw}: unbalanced double quote", param=param)
    return raw


def parse(args: Sequence[str], spec: Spec) -> dict[str, Any]:
    """Parses netsh ``key=value`` arguments against ``spec``; returns {key: typed value}.

    Keys are case-insensitive and returned in lowercase; a value may be in double quotes
    (``user="NT AUTHORITY\\NETWORK SERVICE"``); a bare value fills the next of the spec's
    positional keys. Defaults of the spec are filled in for absent keys. Raises KvError naming
    the parameter for an unknown, repeated, missing or malformed key.
    """
    raw_values: dict[str, str] = {}
    next_positional = 0
    for token in args:
        key, sep, raw = token.partition("=")
        if sep:
            name = key.strip().lower()
            if not name:
                raise KvError(f"{token!r}: expected key=value, the key is missing", param=None)
        else:
            while (next_positional < len(spec.positional)
                   and spec.positional[next_positional] in raw_values):
                next_positional += 1
            if next_positional >= len(spec.positional):
                hint = f"; {spec.command} takes {_keys(spec)}" if spec.params else \
                    f"; {spec.command} takes no parameters"
                raise KvError(f"{token!r}: expected key=value{hint}", param=token)
            name, raw = spec.positional[next_positional], token
        if name not in spec.by_name:
            if not spec.params:
                raise KvError(f"{name}: {spec.command} takes no parameters", param=name)
            hint = _did_you_mean(name, spec.by_name) or f"; expected {_keys(spec)}"
            raise KvError(f"{name} is not a parameter of {spec.command}{hint}", param=name)
        if name in raw_values:
            raise KvError(f"{name} is given more than once", param=name)
        raw_values[name] = raw

    values: dict[str, Any] = {}
    for name, raw in raw_values.items():
        text = _unquote(name, raw)
        if text == "":
            raise KvError(f"{name}= needs a value", param=name)
        values[name] = spec.by_name[name].kind(name, text)

    for group in spec.one_of:
        given = [name for name in group if name in values]
        if len(given) != 1:
            which = " or ".join(f"{name}=" for name in group)
            if given:
                raise KvError(f"give only one of {which}, not both", param=given[1])
            raise KvError(f"{spec.command} needs {which}", param=group[0])
    for group in spec.at_most_one_of:
        given = [name for name in group if name in values]
        if len(given) > 1:
            raise KvError(f"give at most one of {' or '.join(n + '=' for n in group)}",
                          param=given[1])
    for param in spec.params:
        if param.required and param.name not in values:
            raise KvError(f"{param.name}= is required for {spec.command}", param=param.name)
        if param.requires and param.name in values and param.requires not in values:
            raise KvError(f"{param.name}= is only valid together with {param.requires}=",
                          param=param.name)
    for param in spec.params:
        if param.default is not None and param.name not in values and (
                param.requires is None or param.requires in values):
            values[param.name] = param.default
    if spec.check is not None:
        spec.check(values)
    return values


def _keys(spec: Spec) -> str:
    return ", ".join(f"{p.name}=" for p in spec.params)


# ---------------------------------------------------------------------------------------------
# Output layouts (reference 1.4, 1.5)

NULL = "(null)"
SSLCERT_HEADER = "\nSSL Certificate bindings:\n-------------------------\n\n"
URLACL_HEADER = "\nURL Reservations:\n-----------------\n\n"
IPLISTEN_HEADER = ("\nIP addresses present in the IP listen list:\n"
                   "-------------------------------------------\n\n")
# (I) The reference gives only the two labels of show timeout; header and width are inferred.
TIMEOUT_HEADER = "\nTimeout Values:\n---------------\n\n"
TIMEOUT_LABEL_WIDTH = 30
# (I) show certmapping has no netsh counterpart: header and labels follow show sslcert's style.
CERTMAPPING_HEADER = "\nCertificate Mappings:\n---------------------\n\n"
CERTMAPPING_FIELDS = (("Mapping Name", "name"), ("Type", "type"),
                      ("Certificate Hash", "certhash"), ("Certificate Subject", "subject"),
                      ("Rules", "rules"), ("User", "user"), ("Permission", "permission"),
                      ("Case Sensitive", "casesensitive"), ("Enabled", "enabled"))

# show sslcert, in netsh's order: (label, key, style). Styles: "text" prints the value or (null),
# "int" the number, "enabled" Enabled/Disabled, "set" Set/Not Set.
SSLCERT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("Certificate Hash", "certhash", "text"),
    ("Application ID", "appid", "text"),
    ("Certificate Store Name", "certstorename", "text"),
    ("Verify Client Certificate Revocation", "verifyclientcertrevocation", "enabled"),
    ("Verify Revocation Using Cached Client Certificate Only",
     "verifyrevocationwithcachedclientcertonly", "enabled"),
    ("Usage Check", "usagecheck", "enabled"),
    ("Revocation Freshness Time", "revocationfreshnesstime", "int"),
    ("URL Retrieval Timeout", "urlretrievaltimeout", "int"),
    ("Ctl Identifier", "sslctlidentifier", "text"),
    ("Ctl Store Name", "sslctlstorename", "text"),
    ("DS Mapper Usage", "dsmapperusage", "enabled"),
    ("Negotiate Client Certificate", "clientcertnegotiation", "enabled"),
    ("Reject Connections", "reject", "enabled"),
    ("Disable HTTP2", "disablehttp2", "set"),
    ("Disable QUIC", "disablequic", "set"),
    ("Disable TLS1.2", "disabletls12", "set"),
    ("Disable TLS1.3", "disabletls13", "set"),
    ("Disable OCSP Stapling", "disableocspstapling", "set"),
    ("Enable Token Binding", "enabletokenbinding", "set"),
    ("Log Extended Events", "logextendedevents", "set"),
    ("Disable Legacy TLS Versions", "disablelegacytls", "set"),
    ("Enable Session Ticket", "enablesessionticket", "set"),
    ("Disable Session ID", "disablesessionid", "set"),
    ("Enable Caching Client Hello", "enablecachingclienthello", "set"),  # no netsh parameter
)
SSLCERT_KEY_LABELS = (("ipport", "IP:port"), ("hostnameport", "Hostname:port"),
                      ("ccs", "Central Certificate Store"))
# sslpropertyex (reference 1.5): property id, then (label, key, default).
SSLCERT_EXTENDED: tuple[tuple[int, tuple[tuple[str, str, int], ...]], ...] = (
    (0, (("Receive Window", "receivewindow", 1048576),)),
    (1, (("Max Settings Per Frame", "maxsettingsperframe", 2796202),
         ("Max Settings Per Minute", "maxsettingsperminute", 4294967295))),
)

_SSLCERT_DEFAULTS: dict[str, Any] = {
    **SslCertParams(certhash="0" * 40, appid="{00000000-0000-0000-0000-000000000000}").to_dict(),
    "certhash": None, "appid": None, "enablecachingclienthello": False,
}


def _line(label: str, value: object, width: int = 28, indent: str = "    ") -> str:
    return f"{indent}{label.ljust(width)} : {value}\n"


def _text(value: object) -> str:
    return NULL if value is None or value == "" else str(value)


def format_sslcert_binding(binding: Mapping[str, Any]) -> str:
    """One binding's block of ``show sslcert`` (reference 1.4), without the blank line after it.

    ``binding`` holds ``ipport`` or ``hostnameport`` (or ``ccs``) and the keys of
    SslCertParams.to_dict(); absent keys print netsh's defaults. Optional extended-property keys:
    ``receivewindow``, ``maxsettingsperframe``, ``maxsettingsperminute``.
    """
    for key, label in SSLCERT_KEY_LABELS:
        if binding.get(key) not in (None, ""):
            lines = [_line(label, binding[key])]
            break
    else:
        raise InvalidParameterError("a binding needs ipport or hostnameport", param="ipport")
    for label, key, style in SSLCERT_FIELDS:
        value = binding.get(key, _SSLCERT_DEFAULTS[key])
        if style == "enabled":
            shown = "Enabled" if value else "Disabled"
        elif style == "set":
            shown = "Set" if value else "Not Set"
        elif style == "int":
            shown = str(int(value))
        else:
            shown = _text(value)
        lines.append(_line(label, shown))
    for property_id, fields in SSLCERT_EXTENDED:
        lines.append(" Extended Properties:\n")
        lines.append(_line("PropertyId", property_id))
        for label, key, default in fields:
            lines.append(_line(label, binding.get(key, default)))
    return "".join(lines)


def format_sslcert(bindings: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """The whole output of ``show sslcert``: the header, then each block and a blank line."""
    if isinstance(bindings, Mapping):
        bindings = [bindings]
    return SSLCERT_HEADER + "".join(format_sslcert_binding(b) + "\n" for b in bindings)


def _urlacl_users(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if entry.get("users"):
        return list(entry["users"])
    if entry.get("user"):
        return [entry]
    # Added with sddl=: one user per ACE (A;;RIGHTS;;;TRUSTEE), GX = listen, GW = delegate.
    users: list[Mapping[str, Any]] = []
    for rights, trustee in re.findall(r"\(A;[^;]*;([^;]*);[^;]*;[^;]*;([^)]*)\)",
                                      str(entry.get("sddl") or "")):
        users.append({"user": trustee, "listen": "GX" in rights or "GA" in rights,
                      "delegate": "GW" in rights or "GA" in rights})
    return users


def _sddl(users: list[Mapping[str, Any]]) -> str:
    aces = []
    for user in users:
        rights = ("GX" if user.get("listen", True) else "") + \
            ("GW" if user.get("delegate", False) else "")
        aces.append(f"(A;;{rights};;;{user['user']})")
    return "D:" + "".join(aces)


def format_urlacl(entries: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """The output of ``show urlacl`` (reference 1.5).

    Each entry: ``url`` and either ``user`` (+ ``listen``, default yes, and ``delegate``,
    default no), a list ``users`` of such dicts, or ``sddl``. The SDDL line prints ``sddl`` if
    given, else one synthesized from the users (trustee = the user name).
    """
    if isinstance(entries, Mapping):
        entries = [entries]
    out = [URLACL_HEADER]
    for entry in entries:
        out.append(_line("Reserved URL", entry["url"], width=23))
        users = _urlacl_users(entry)
        for user in users:
            out.append(f"        User: {user['user']}\n")
            out.append(f"            Listen: {'Yes' if user.get('listen', True) else 'No'}\n")
            out.append(f"            Delegate: {'Yes' if user.get('delegate', False) else 'No'}\n")
        out.append(f"            SDDL: {entry.get('sddl') or _sddl(users)}\n")
        out.append("\n")
    return "".join(out)


def format_iplisten(addresses: Iterable[str]) -> str:
    """The output of ``show iplisten``: the header, one address per line, a blank line."""
    return IPLISTEN_HEADER + "".join(f"    {address}\n" for address in addresses) + "\n"


TIMEOUT_FIELDS = (("Idle Connection Timeout (secs)", "idleconnectiontimeout"),
                  ("Header Wait Timeout (secs)", "headerwaittimeout"),
                  ("Entity Body Timeout (secs)", "entitybodytimeout"),
                  ("Drain Body Timeout (secs)", "drainentitybodytimeout"),
                  ("Request Queue Timeout (secs)", "requestqueuetimeout"),
                  ("Minimum Send Rate (bytes/sec)", "minsendrate"))
TIMEOUT_DEFAULT = 120
#: What ``show timeout`` prints for a timeout never set.
TIMEOUT_DEFAULTS = {key: TIMEOUT_DEFAULT for _, key in TIMEOUT_FIELDS} | {"minsendrate": 150}


def format_timeout(timeouts: Mapping[str, int]) -> str:
    """The output of ``show timeout``; an absent timeout prints its default (120 seconds;
    minsendrate 150 bytes a second). netsh's two lines come first, as netsh prints them."""
    return TIMEOUT_HEADER + "".join(
        _line(label, timeouts.get(key, TIMEOUT_DEFAULTS[key]), width=TIMEOUT_LABEL_WIDTH)
        for label, key in TIMEOUT_FIELDS) + "\n"


def format_rules(mapping_rules: Iterable[Rule]) -> str:
    """Rules as ``rules=`` takes them: ``Subject.O=Contoso;Issuer.CN=Contoso CA``."""
    return ";".join(f"{r.field}.{r.subfield}={r.criteria}" for r in mapping_rules)


def format_certmapping(entries: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """The output of ``show certmapping``: the header, then one block per mapping (the keys of
    CERTMAPPING_FIELDS; booleans print Yes/No, None and absent keys ``(null)``; ``rules`` may
    be a sequence of Rule) and a blank line after each."""
    if isinstance(entries, Mapping):
        entries = [entries]
    out = [CERTMAPPING_HEADER]
    for entry in entries:
        for label, key in CERTMAPPING_FIELDS:
            value = entry.get(key)
            if isinstance(value, bool):
                shown = "Yes" if value else "No"
            elif key == "rules" and isinstance(value, (tuple, list)):
                shown = _text(format_rules(value))
            else:
                shown = _text(value)
            out.append(_line(label, shown))
        out.append("\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Success and failure lines

# Win32 error number -> the text netsh prints under "..., Error: N" (FormatMessage, English).
WIN32_MESSAGES: dict[int, str] = {
    1: "Incorrect function.",
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    50: "The request is not supported.",
    87: PARAMETER_INCORRECT,
    183: "Cannot create a file when that file already exists.",
    1168: "Element not found.",
    1229: "An operation was attempted on a nonexistent network connection.",
    1312: "A specified logon session does not exist. It may already have been terminated.",
    1359: "An internal error occurred.",
}

# (noun, verb) -> (success line, failure prefix). Marked (I): not in the reference's transcripts.
MESSAGES: dict[tuple[str, str], tuple[str, str]] = {
    ("sslcert", "add"): ("SSL Certificate successfully added", "SSL Certificate add failed"),
    ("sslcert", "delete"): ("SSL Certificate successfully deleted",
                            "SSL Certificate deletion failed"),
    ("sslcert", "update"): ("SSL Certificate successfully updated",  # (I)
                            "SSL Certificate update failed"),  # (I)
    ("urlacl", "add"): ("URL reservation successfully added", "Url reservation add failed"),
    ("urlacl", "delete"): ("URL reservation successfully deleted",
                           "Url reservation delete failed"),  # failure line (I)
    ("iplisten", "add"): ("IP address successfully added", "IP address add failed"),  # (I)
    ("iplisten", "delete"): ("IP address successfully deleted", "IP address delete failed"),  # (I)
    ("timeout", "add"): ("Timeout successfully added", "Timeout add failed"),  # (I)
    ("timeout", "delete"): ("Timeout successfully deleted", "Timeout delete failed"),  # (I)
    ("certmapping", "add"): ("Certificate mapping successfully added",  # (I)
                             "Certificate mapping add failed"),  # (I)
    ("certmapping", "update"): ("Certificate mapping successfully updated",  # (I)
                                "Certificate mapping update failed"),  # (I)
    ("certmapping", "delete"): ("Certificate mapping successfully deleted",  # (I)
                                "Certificate mapping delete failed"),  # (I)
}


def format_success(noun: str, verb: str) -> str:
    """netsh's success line, e.g. ``SSL Certificate successfully added``."""
    return MESSAGES[(noun, verb)][0] + "\n"


def format_failure(noun: str, verb: str, error: int | HttpsysError, detail: str | None = None) -> str:
    """netsh's failure lines: ``SSL Certificate add failed, Error: 183`` and the error's text.

    ``error`` is a Win32 error number or an HttpsysError (its ``winerror``); ``detail``, if
    given, is our own explanation, printed on a third line.
    """
    number = error if isinstance(error, int) else error.winerror
    text = WIN32_MESSAGES.get(number, f"Unknown error {number}.")
    prefix = MESSAGES.get((noun, verb), (None, f"{noun} {verb} failed"))[1]
    out = f"{prefix}, Error: {number}\n{text}\n"
    if detail:
        out += detail + "\n"
    return out


def format_param_error(error: InvalidParameterError) -> str:
    """A parameter error as netsh prints it: "The parameter is incorrect." and, below, why."""
    reason = error.reason if isinstance(error, KvError) else str(error)
    return f"{PARAMETER_INCORRECT}\n{reason}\n"
