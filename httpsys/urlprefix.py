"""UrlPrefix strings (``https://+:8443/api/``) as HTTP.sys defines them (reference 2.2).

Pure parsing and validation; the C core applies the same rules again when it registers the
prefix, so what is accepted here is what routes there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidParameterError

_PREFIX = re.compile(r"^(?P<scheme>https?)://(?P<host>\[[^\]]*\]|[^/:]+):(?P<port>[0-9]+)(?P<path>/.*)?$")
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$")


@dataclass(frozen=True)
class UrlPrefix:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def parse(prefix: str) -> UrlPrefix:
    """Parses and validates a UrlPrefix; raises InvalidParameterError saying what is wrong."""
    m = _PREFIX.match(prefix)
    if m is None:
        raise InvalidParameterError(
            f"url prefix {prefix!r} is not of the form scheme://host:port/path/ "
            "(scheme http or https in lowercase, the port is required)",
            param="url",
        )
    host, port_text, path = m["host"], m["port"], m["path"] or "/"
    if port_text.startswith("0") or not 1 <= int(port_text) <= 65535:
        raise InvalidParameterError(f"url prefix {prefix!r}: port must be 1-65535 without leading zeros",
                                    param="url")
    if not path.endswith("/"):
        raise InvalidParameterError(f"url prefix {prefix!r}: the path must end with '/'", param="url")
    if host not in ("+", "*") and not _valid_host(host):
        raise InvalidParameterError(f"url prefix {prefix!r}: {host!r} is not a valid host", param="url")
    return UrlPrefix(m["scheme"], host.lower(), int(port_text), path)


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return _NAME.match(host) is not None


def parse_ipport(ipport: str) -> tuple[str, int]:
    """Parses netsh's ``ipport=`` form: ``0.0.0.0:443``, ``127.0.0.1:8443``, ``[::]:443``."""
    host, sep, port_text = ipport.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidParameterError(f"ipport {ipport!r} is not of the form IP:PORT", param="ipport")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidParameterError(f"ipport {ipport!r}: {host!r} is not an IP address",
                                    param="ipport") from None
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidParameterError(f"ipport {ipport!r}: port must be 1-65535", param="ipport")
    return str(ip), port


def parse_hostnameport(hostnameport: str) -> tuple[str, int]:
    """Parses netsh's ``hostnameport=`` form: ``www.example.com:443``."""
    host, sep, port_text = hostnameport.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise InvalidParameterError(f"hostnameport {hostnameport!r} is not of the form NAME:PORT",
                                    param="hostnameport")
    if _NAME.match(host) is None or len(host) > 253:
        raise InvalidParameterError(f"hostnameport {hostnameport!r}: {host!r} is not a host name",
                                    param="hostnameport")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidParameterError(f"hostnameport {hostnameport!r}: port must be 1-65535",
                                    param="hostnameport")
    return host.lower().rstrip("."), port
