"""httpsys: an HTTP.sys-style HTTPS listener for Linux with a C core."""

from ._native import VERSION as _CORE_VERSION
from .errors import (
    AccessDeniedError,
    AlreadyExistsError,
    ConnectionGoneError,
    HttpsysError,
    InvalidParameterError,
    NotFoundError,
)
from .server import Server

__version__ = "0.1.0"

if _CORE_VERSION != __version__:  # a stale build of the C core next to newer Python code
    raise ImportError(f"httpsys._core is version {_CORE_VERSION}, the package is {__version__}: rebuild it")

__all__ = [
    "AccessDeniedError",
    "AlreadyExistsError",
    "ConnectionGoneError",
    "HttpsysError",
    "InvalidParameterError",
    "NotFoundError",
    "Server",
    "__version__",
]
