"""The httpsys exception hierarchy.

Every error httpsys raises on purpose derives from HttpsysError. Errors that mirror a Win32
error of the HTTP Server API carry it as ``winerror`` (183 for ERROR_ALREADY_EXISTS, ...), and
where a builtin exception fits they subclass it too (InvalidParameterError is a ValueError).
"""

from __future__ import annotations


class HttpsysError(Exception):
    """Base class of every error httpsys raises on purpose."""

    winerror: int = 0

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidParameterError(HttpsysError, ValueError):
    """A parameter is malformed (ERROR_INVALID_PARAMETER, 87). ``param`` names it."""

    winerror = 87


class AlreadyExistsError(HttpsysError):
    """The prefix or binding is already registered (ERROR_ALREADY_EXISTS, 183)."""

    winerror = 183


class NotFoundError(HttpsysError, KeyError):
    """No such registration or binding (ERROR_NOT_FOUND, 1168)."""

    winerror = 1168

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AccessDeniedError(HttpsysError, PermissionError):
    """The caller may not register this namespace (ERROR_ACCESS_DENIED, 5)."""

    winerror = 5


class ConnectionGoneError(HttpsysError, ConnectionError):
    """The client closed the connection while the application was answering it."""

    winerror = 1229


class SystemError_(HttpsysError, OSError):
    """The operating system or OpenSSL refused (sockets, memory); the message says which."""

    winerror = 1359
