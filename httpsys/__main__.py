"""The ``httpsys`` command: ``httpsys demo``, ``httpsys serve``, and the store-backed commands
of ``httpsys.cli`` (``httpsys [--store PATH] cert ...``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from . import certs, cli, demo
from .errors import HttpsysError
from .server import Server


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise HttpsysError(f"--app: {spec!r} is not PREFIX=module:attribute", param="app")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def cmd_demo(args: argparse.Namespace) -> int:
    cert, key, path = certs.demo_certificate()
    srv = Server(io_threads=args.io_threads, workers=args.workers)
    srv.set_sslcert(f"0.0.0.0:{args.port}", cert, key)
    srv.add_app(f"https://+:{args.port}/", demo.app)
    srv.start()
    print(f"httpsys demo: https://localhost:{args.port}/  (self-signed certificate: {path})", flush=True)
    print(f"try: curl --cacert {path} https://localhost:{args.port}/", flush=True)
    srv.serve_forever()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    srv = Server(io_threads=args.io_threads, workers=args.workers)
    cert, key = open(args.cert, "rb").read(), open(args.key, "rb").read()
    ports = set()
    for spec in args.app:
        prefix, sep, target = spec.partition("=")
        if not sep:
            raise HttpsysError(f"--app: {spec!r} is not PREFIX=module:attribute", param="app")
        srv.add_app(prefix, _load(target))
        ports.add(prefix.rsplit(":", 1)[1].split("/", 1)[0])
    for port in sorted(ports):
        srv.set_sslcert(f"0.0.0.0:{port}", cert, key)
    srv.start()
    print(f"httpsys: serving {', '.join(srv.prefixes)}", flush=True)
    srv.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if cli.handles(argv):
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="httpsys", description="HTTP.sys-style HTTPS listener")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="serve a demo page on https://localhost:8443/ with a self-signed certificate")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--io-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("serve", help="serve WSGI apps: --app https://+:8443/api/=module:app")
    p.add_argument("--app", action="append", required=True, metavar="PREFIX=module:app")
    p.add_argument("--cert", required=True, help="PEM certificate chain, leaf first")
    p.add_argument("--key", required=True, help="PEM private key")
    p.add_argument("--io-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_serve)
    sub.add_parser("cert", help="the certificate store: new, import, list, show, export, delete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except HttpsysError as e:
        print(f"httpsys: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"httpsys: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
