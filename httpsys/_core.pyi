"""Type stub of the cffi extension built from csrc/ (see csrc/httpsys.h for the C API).

Only httpsys._native imports it; the rest of the package uses _native's typed wrappers.
"""

from typing import Any

ffi: Any
lib: Any
