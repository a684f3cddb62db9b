"""The parameters of one SSL certificate binding, as ``netsh http add sslcert`` takes them.

Reference section 1.2. ``SslCertParams`` holds every parameter with netsh's default; the binding's
key (``ipport=`` or ``hostnameport=``) is not part of it. Values are typed: flags are ``bool``,
times are ``int``, the thumbprint is 40 lowercase hex digits and the application ID is a braced
lowercase GUID, the forms ``netsh http show sslcert`` prints.

Pure: no store, no I/O. Every function here raises only InvalidParameterError (naming the
parameter); anything else is a bug.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameterError

__all__ = [
    "BOOL_PARAMS",
    "INT_PARAMS",
    "KEY_PARAMS",
    "PARAM_KINDS",
    "PARAM_NAMES",
    "STRING_PARAMS",
    "SslCertParams",
    "normalize_appid",
    "normalize_certhash",
]

UINT32_MAX = 0xFFFFFFFF

# The binding keys (selectors). They name a binding; they are not parameters of it.
KEY_PARAMS = ("ipport", "hostnameport", "ccs", "scopedccs")

_CERTHASH = re.compile(r"^[0-9A-Fa-f]{40}$")
_GUID = re.compile(
    r"^(?P<open>\{?)(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"
    r"(?P<close>\}?)$"
)


def normalize_certhash(value: str, param: str = "certhash") -> str:
    """Returns the thumbprint as 40 lowercase hex digits, as netsh shows it."""
    if not isinstance(value, str) or _CERTHASH.match(value) is None:
        if not isinstance(value, str):
            got = type(value).__name__
        elif len(value) == 40:
            got = "a character that is not a hex digit"
        else:
            got = f"{len(value)} characters"
        raise InvalidParameterError(
            f"{param}={value}: expected the certificate's SHA-1 thumbprint, "
            f"40 hexadecimal digits (got {got})",
            param=param,
        )
    return value.lower()


def normalize_appid(value: str, param: str = "appid") -> str:
    """Returns a GUID, given with or without braces, as ``{xxxxxxxx-xxxx-...}`` in lowercase."""
    m = _GUID.match(value) if isinstance(value, str) else None
    if m is None or bool(m["open"]) != bool(m["close"]):
        raise InvalidParameterError(
            f"{param}={value}: expected a GUID such as "
            "{00112233-4455-6677-8899-aabbccddeeff} (braces optional)",
            param=param,
        )
    return "{" + m["guid"].lower() + "}"


@dataclass(frozen=True)
class SslCertParams:
    """Every ``add sslcert`` parameter of reference 1.2, with netsh's defaults.

    ``certstorename`` defaults to ``MY`` (netsh stores NULL and reads it as MY; the issue asks for
    MY to be stored and shown). ``verifyclientcertrevocation`` and ``usagecheck`` default to
    enabled; every other flag to disabled / not set. Constructing one validates and normalizes
    every field (InvalidParameterError naming the field).
    """

    certhash: str
    appid: str
    certstorename: str | None = "MY"
    verifyclientcertrevocation: bool = True
    verifyrevocationwithcachedclientcertonly: bool = False
    usagecheck: bool = True
    revocationfreshnesstime: int = 0  # seconds
    urlretrievaltimeout: int = 0  # milliseconds; 0 = the default
    sslctlidentifier: str | None = None
    sslctlstorename: str | None = None
    dsmapperusage: bool = False
    clientcertnegotiation: bool = False
    reject: bool = False
    disablehttp2: bool = False
    disablequic: bool = False
    disabletls12: bool = False
    disabletls13: bool = False
    disableocspstapling: bool = False
    enabletokenbinding: bool = False
    logextendedevents: bool = False
    disablelegacytls: bool = False
    enablesessionticket: bool = False
    disablesessionid: bool = False

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            value = getattr(self, name)
            coerced = _coerce(name, value)
            if coerced is not value:
                object.__setattr__(self, name, coerced)

    @classmethod
    def from_kv(cls, kv: Mapping[str, Any]) -> SslCertParams:
        """Builds the parameters of ``add sslcert`` from parsed ``key=value`` pairs.

        Accepts typed values (as ``httpsys.cli._kv.parse`` returns them) or netsh's strings
        (``enable``/``disable``, decimal or ``0x`` integers). Binding keys (``ipport=`` ...) are
        ignored. Raises InvalidParameterError for a missing certhash/appid, an unknown key or a
        bad value.
        """
        values = _checked(kv)
        for name in ("certhash", "appid"):
            if values.get(name) is None:
                raise InvalidParameterError(f"{name}= is required", param=name)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All parameters, typed, in netsh's order (ready for JSON)."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def update(self, kv: Mapping[str, Any]) -> SslCertParams:
        """``update sslcert``: a copy where only the given keys change. Same errors as from_kv."""
        return dataclasses.replace(self, **_checked(kv))

    @property
    def flags(self) -> int:
        """The ``HTTP_SERVICE_CONFIG_SSL_FLAG_*`` bits these parameters set (reference 1.2)."""
        bits = 0
        for name, bit in FLAG_BITS.items():
            if getattr(self, name):
                bits |= bit
        return bits

    @property
    def cert_check_mode(self) -> int:
        """``DefaultCertCheckMode`` as HTTP.sys stores it (reference 1.2, S5)."""
        mode = 0
        if not self.verifyclientcertrevocation:
            mode |= 0x1
        if self.verifyrevocationwithcachedclientcertonly:
            mode |= 0x2
        if self.revocationfreshnesstime:
            mode |= 0x4
        if not self.usagecheck:
            mode |= 0x10000
        return mode


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(SslCertParams))
INT_PARAMS = ("revocationfreshnesstime", "urlretrievaltimeout")
STRING_PARAMS = ("certstorename", "sslctlidentifier", "sslctlstorename")
BOOL_PARAMS = tuple(n for n in PARAM_NAMES
                    if n not in INT_PARAMS + STRING_PARAMS + ("certhash", "appid"))


def _kind_of(name: str) -> str:
    if name == "certhash":
        return "certhash"
    if name == "appid":
        return "guid"
    if name in STRING_PARAMS:
        return "string"
    if name in INT_PARAMS:
        return "uint32"
    return "enable"


# How the CLI parser reads each parameter (kind names of httpsys.cli._kv), in netsh's order.
PARAM_KINDS: dict[str, str] = {name: _kind_of(name) for name in PARAM_NAMES}

FLAG_BITS = {
    "dsmapperusage": 0x1,
    "clientcertnegotiation": 0x2,
    "reject": 0x8,
    "disablehttp2": 0x10,
    "disablequic": 0x20,
    "disabletls13": 0x40,
    "disableocspstapling": 0x80,
    "enabletokenbinding": 0x100,
    "logextendedevents": 0x200,
    "disablelegacytls": 0x400,
    "enablesessionticket": 0x800,
    "disabletls12": 0x1000,
    "disablesessionid": 0x4000,
}


def _checked(kv: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in kv.items():
        name = key.lower()
        if name in KEY_PARAMS:
            continue
        if name not in PARAM_KINDS:
            raise InvalidParameterError(f"{key} is not a parameter of an SSL certificate binding",
                                        param=key)
        values[name] = _coerce(name, value)
    return values


def _coerce(name: str, value: Any) -> Any:
    kind = PARAM_KINDS[name]
    if kind == "certhash":
        return normalize_certhash(value, name)
    if kind == "guid":
        return normalize_appid(value, name)
    if kind == "enable":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("enable", "disable"):
            return value.lower() == "enable"
        raise InvalidParameterError(f"{name}={value}: expected enable or disable", param=name)
    if kind == "uint32":
        number = value
        if isinstance(value, str):
            text = value.strip()
            try:
                number = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= UINT32_MAX:
            raise InvalidParameterError(
                f"{name}={value}: expected an integer from 0 to {UINT32_MAX}", param=name)
        return number
    # string: None or "" means "not set" ((null) in show); the case is kept (MY, My).
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameterError(f"{name}={value}: expected a string", param=name)
    return value
