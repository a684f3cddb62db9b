"""Serves bench/apps.py:app (or, with ``--interface asgi``, apps.py:asgi_app on the asyncio
loop) with httpsys for the benchmark harness.

    python bench/httpsys_server.py --port 8443 --cert cert.pem --key key.pem [--io-threads 1]
                                   [--workers 1] [--interface wsgi|asgi] [--plain] [--no-tickets]
                                   [--client-ca ca.pem [--crl crl.pem ...] [--ssl-flags FLAGS]]

``--plain`` registers ``http://+:PORT/`` instead of ``https://+:PORT/``. The process prints
``ready`` on stdout once the listener is up and runs until SIGTERM or SIGINT, then closes the
server. ``--client-ca`` turns on client certificates for the mtls scenarios of bench/run.py:
the binding asks for one in the handshake (``clientcertnegotiation=True``) and trusts that CA,
``--crl`` adds a CRL (PEM or DER) of it, and the prefix gets ``--ssl-flags`` (default
``Ssl,SslNegotiateCert,SslRequireCert``). Run it with PYTHONPATH pointing at the repository root (bench/run.py does).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpsys  # noqa: E402

from apps import app, asgi_app  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", type=Path, help="PEM certificate chain, leaf first (TLS only)")
    p.add_argument("--key", type=Path, help="PEM private key (TLS only)")
    p.add_argument("--io-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi",
                   help="serve apps.app (WSGI worker threads) or apps.asgi_app (asyncio loop)")
    p.add_argument("--plain", action="store_true", help="serve http:// instead of https://")
    p.add_argument("--no-tickets", action="store_true", help="binding option enablesessionticket=False")
    p.add_argument("--client-ca", type=Path, help="PEM CA(s) trusted for client certificates; "
                   "turns on clientcertnegotiation")
    p.add_argument("--crl", type=Path, action="append", default=[],
                   help="a CRL (PEM or DER) of the client CA; repeatable")
    p.add_argument("--ssl-flags", default="Ssl,SslNegotiateCert,SslRequireCert",
                   help="the prefix's sslFlags when --client-ca is given")
    args = p.parse_args(argv)

    srv = httpsys.Server(io_threads=args.io_threads, workers=args.workers)
    served = asgi_app if args.interface == "asgi" else app
    if args.plain:
        srv.add_app(f"http://+:{args.port}/", served, interface=args.interface)
    else:
        if args.cert is None or args.key is None:
            p.error("--cert and --key are needed unless --plain")
        options: dict[str, object] = {"enablesessionticket": False} if args.no_tickets else {}
        ssl_flags = None
        if args.client_ca is not None:
            options.update(clientcertnegotiation=True, trusted_ca_pem=args.client_ca.read_bytes(),
                           crls=[c.read_bytes() for c in args.crl])
            ssl_flags = args.ssl_flags
        elif args.crl:
            p.error("--crl needs --client-ca")
        srv.set_sslcert(f"0.0.0.0:{args.port}", args.cert.read_bytes(), args.key.read_bytes(), **options)
        srv.add_app(f"https://+:{args.port}/", served, ssl_flags=ssl_flags, interface=args.interface)

    def stop(signum: int, frame: FrameType | None) -> None:
        srv.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv.start()
    print("ready", flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
