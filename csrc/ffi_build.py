"""cffi builder for httpsys._core (API mode).

Our own sources compile with -Wall -Wextra -Werror. HTTPSYS_SANITIZE=address builds with
AddressSanitizer and UBSan (load it with LD_PRELOAD=$(gcc -print-file-name=libasan.so)).
"""

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

SOURCES = [
    "status.c",
    "environ.c",
    "http1.c",
    "chunked.c",
    "url.c",
    "route.c",
    "bindings.c",
    "tls.c",
    "clientcert.c",
    "crlfetch.c",
    "certmap.c",
    "hsbench.c",
    "httperr.c",
    "timer.c",
    "conn.c",
    "loop.c",
    "queue.c",
    "server.c",
    "crl.c",
]

CFLAGS = ["-std=gnu11", "-D_GNU_SOURCE", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
          ]
LDFLAGS: list[str] = []

sanitize = os.environ.get("HTTPSYS_SANITIZE", "")
if sanitize:
    if sanitize != "address":
        raise SystemExit(f"HTTPSYS_SANITIZE={sanitize!r}: only 'address' is supported")
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    CFLAGS = [f for f in CFLAGS if f != "-O2"] + ["-O1"] + san
    LDFLAGS += san

ffibuilder = FFI()
ffibuilder.cdef((HERE / "httpsys.cdef").read_text())
ffibuilder.set_source(
    "httpsys._core",
    '#include "httpsys.h"\n#include "status.h"\n',
    sources=[str(pathlib.Path("csrc") / s) for s in SOURCES],
    include_dirs=["csrc"],
    libraries=["ssl", "crypto", "pthread"],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
