"""The ``httpsys`` command: ``httpsys [--store PATH] demo``, ``httpsys [--store PATH] serve``, and
the store-backed commands of ``httpsys.cli`` (``httpsys [--store PATH] cert ...``, ``http ...``).

``serve`` and ``demo`` take their certificate bindings, URL reservations and iplisten addresses
from the config store and keep watching it: ``httpsys http update sslcert ...`` in another
terminal changes a running server for its new connections (httpsys.watcher).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import ipaddress
import logging
import os
import pwd
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import cli, demo, urlprefix, workers
from .errors import AccessDeniedError, HttpsysError, InvalidParameterError
from .server import TIMEOUT_DEFAULTS, Server

#: The application ID of the binding ``httpsys demo`` creates (netsh requires an appid).
DEMO_APPID = "{6f0b2c1e-5d3a-4e8b-9c47-2a1d8e3f9b60}"

log = logging.getLogger("httpsys")


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise InvalidParameterError(f"--app: {spec!r} is not PREFIX=module:attribute", param="app")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise InvalidParameterError(f"--app: cannot import {module!r}: {e}", param="app") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidParameterError(f"--app: {module!r} has no attribute {attr!r}", param="app")
        obj = getattr(obj, part)
    return obj


def _parse_apps(specs: list[str]) -> list[tuple[urlprefix.UrlPrefix, str]]:
    out = []
    for spec in specs:
        # The prefix itself has no '=': split at the first one.
        prefix, sep, target = spec.partition("=")
        if not sep:
            raise InvalidParameterError(f"--app: {spec!r} is not PREFIX=module:attribute",
                                        param="app")
        out.append((urlprefix.parse(prefix), target))
    return out


# ---- --ssl-flags ---------------------------------------------------------------------------------

#: IIS sslFlags (reference 4.1), lowercase → as IIS spells them.
SSL_FLAGS = {name.lower(): name for name in
             ("None", "Ssl", "SslNegotiateCert", "SslRequireCert", "SslMapCert", "Ssl128")}


def parse_ssl_flags(value: str) -> str:
    """IIS sslFlags as ``--ssl-flags`` takes them (``Ssl,SslNegotiateCert``, also with a space
    after the commas, any case) → the canonical spelling, e.g. ``Ssl,SslNegotiateCert``.
    ``None`` stands alone. Raises InvalidParameterError naming the bad flag."""
    names: list[str] = []
    for part in value.split(","):
        word = part.strip()
        if not word:
            raise InvalidParameterError(f"--ssl-flags: {value!r} has an empty flag; expected "
                                        "flags separated by commas, e.g. Ssl,SslNegotiateCert",
                                        param="ssl_flags")
        name = SSL_FLAGS.get(word.lower())
        if name is None:
            raise InvalidParameterError(f"--ssl-flags: {word!r} is not an SSL flag; expected "
                                        f"{', '.join(SSL_FLAGS.values())}", param="ssl_flags")
        if name not in names:
            names.append(name)
    if "None" in names and len(names) > 1:
        raise InvalidParameterError("--ssl-flags: None cannot be combined with other flags",
                                    param="ssl_flags")
    return ",".join(names)


class _AppAction(argparse.Action):
    """``--app``: appends to ``app``, and slots for its ``--ssl-flags`` and ``--interface`` to
    ``app_ssl_flags`` and ``app_interfaces``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        namespace.app = [*(namespace.app or []), values]
        namespace.app_ssl_flags = [*(getattr(namespace, "app_ssl_flags", None) or []), None]
        namespace.app_interfaces = [*(getattr(namespace, "app_interfaces", None) or []), None]


class _InterfaceAction(argparse.Action):
    """``--interface``: wsgi, asgi or auto for the ``--app`` just before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        kinds = getattr(namespace, "app_interfaces", None) or []
        if not kinds:
            parser.error("argument --interface: it applies to the --app before it; give "
                         "--app PREFIX=module:app first")
        if kinds[-1] is not None:
            parser.error(f"argument --interface: given twice for --app {namespace.app[-1]}")
        kinds[-1] = str(values)


class _SslFlagsAction(argparse.Action):
    """``--ssl-flags``: the sslFlags of the ``--app`` just before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        flags = getattr(namespace, "app_ssl_flags", None) or []
        if not flags:
            parser.error("argument --ssl-flags: it applies to the --app before it; give "
                         "--app PREFIX=module:app first")
        if flags[-1] is not None:
            parser.error(f"argument --ssl-flags: given twice for --app {namespace.app[-1]}")
        try:
            flags[-1] = parse_ssl_flags(str(values))
        except InvalidParameterError as e:
            parser.error(f"argument {e}")


def _add_app(srv: Server, prefix: str, app: Any, ssl_flags: str | None,
             interface: str | None = None) -> None:
    """srv.add_app with the app's --ssl-flags and --interface (auto: detected)."""
    srv.add_app(prefix, app, ssl_flags=ssl_flags,
                interface=None if interface in (None, "auto") else interface)


# ---- URL reservations (urlacl) -----------------------------------------------------------------


def current_user_names() -> set[str]:
    """The names the current user may appear under in a urlacl row's ``user``: the account
    name of the real uid. Not ``getpass.getuser()``, which believes ``$USER`` and ``$LOGNAME``
    (anyone could set USER=root to pass a reservation made for root); that only when the uid
    has no account."""
    try:
        return {pwd.getpwuid(os.getuid()).pw_name.lower()}
    except KeyError:
        return {getpass.getuser().lower()}


def _user_matches(user: str | None, names: set[str]) -> bool:
    if not user:
        return False
    u = user.strip().lower()
    # netsh accepts DOMAIN\user; "Everyone" is the world (as on Windows).
    return u in names or u.rsplit("\\", 1)[-1] in names or u.rsplit("\\", 1)[-1] == "everyone"


def _same_host(a: str, b: str) -> bool:
    """Explicit hosts compare case-insensitively; IP literals by address (``[::1]`` equals
    ``[0:0::1]``)."""
    if a.lower() == b.lower():
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return False


def reservation_specificity(acl: urlprefix.UrlPrefix,
                            prefix: urlprefix.UrlPrefix) -> tuple[int, int] | None:
    """How specifically the reservation ``acl`` covers the registration ``prefix``, or None when
    it does not cover it. It covers it when the scheme and port are equal, the reservation's
    path is a whole-segment prefix of the registration's (case-insensitive; both end in '/'),
    and the host matches: ``+`` (strong wildcard) and ``*`` (weak wildcard) cover every host, an
    explicit name or IP only itself. Larger is more specific: an explicit host beats ``+``, which
    beats ``*`` (routing order, reference 2.3); then the longer path."""
    if acl.scheme != prefix.scheme or acl.port != prefix.port:
        return None
    if not prefix.path.lower().startswith(acl.path.lower()):
        return None
    if acl.host == "+":
        rank = 1
    elif acl.host == "*":
        rank = 0
    elif _same_host(acl.host, prefix.host):
        rank = 2
    else:
        return None
    return rank, len(acl.path)


def check_reservations(rows: list[tuple[str, str | None, int]],
                       prefix: urlprefix.UrlPrefix, names: set[str] | None = None) -> None:
    """Refuses (AccessDeniedError, ERROR_ACCESS_DENIED 5) to register ``prefix`` when urlacl
    reservations ``(url, user, listen)`` cover its namespace and the most specific of them
    (``reservation_specificity``) does not let the current user listen there: as in HTTP.sys,
    that one reservation decides, not the others. Without a covering reservation anyone may
    register it."""
    names = current_user_names() if names is None else names
    covering = []
    for url, user, listen in rows:
        try:
            acl = urlprefix.parse(url)
        except InvalidParameterError:
            continue
        rank = reservation_specificity(acl, prefix)
        if rank is not None:
            covering.append((rank, acl, user, listen))
    if not covering:
        return
    best = max(rank for rank, _, _, _ in covering)
    deciding = [(acl, user, listen) for rank, acl, user, listen in covering if rank == best]
    if any(listen and _user_matches(user, names) for _, user, listen in deciding):
        return
    acl, user, listen = deciding[0]
    why = f"reserved by the urlacl {acl} for user {user or '(sddl)'}"
    why += " with listen=no" if _user_matches(user, names) else f", not for {min(names)}"
    raise AccessDeniedError(
        f"cannot register {prefix}: access denied (ERROR_ACCESS_DENIED, 5): its namespace is "
        f"{why}; add a reservation for you with: "
        f"httpsys http add urlacl url={prefix} user={min(names)}",
        param="url",
    )


def _read_urlacl(store: Any) -> list[tuple[str, str | None, int]]:
    return [(r[0], r[1], int(r[2])) for r in store.execute("SELECT url, user, listen FROM urlacl")]


# ---- serve -------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: Any) -> None:
    # Stops like Ctrl-C, once: a second SIGTERM must not interrupt the shutdown it started
    # (joining workers before their queues are freed).
    workers._stop_on_first_signal(signum, frame)


def _run(srv: Server, watcher: Any, renewer: Any = None) -> int:
    try:
        srv.serve_forever()
    finally:
        if renewer is not None:
            renewer.stop()
        if watcher is not None:
            watcher.stop()
        srv.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .store import Store, default_path
    from .renewal import Renewer
    from .watcher import StoreWatcher, read_snapshot

    if (args.cert is None) != (args.key is None):
        raise InvalidParameterError("--cert and --key go together", param="cert")
    apps = _parse_apps(args.app)
    store_path = Path(args.store) if args.store else None
    use_store = args.cert is None
    iplisten: tuple[str, ...] = ()
    timeouts: dict[str, int] = {}
    path = store_path or default_path()
    if use_store or path.exists():
        with Store.open(path) as store:
            acl = _read_urlacl(store)
            snap = read_snapshot(store)
            iplisten, timeouts = snap.iplisten, snap.timeouts
        for prefix, _ in apps:
            check_reservations(acl, prefix)
    if args.workers > 1 and workers.current() is None:
        # N processes: each worker runs this command again (store, reservations and all).
        return workers.supervise(args.workers, lambda: _guarded("serve", lambda: cmd_serve(args)),
                                 name="httpsys serve")
    kwargs: dict[str, Any] = {"io_threads": args.io_threads, "workers": args.threads}
    if iplisten:
        kwargs["iplisten"] = iplisten
    if not args.no_httperr:
        # HTTP.sys keeps its error log in a folder of its own (reference 3.1 ErrorLoggingDir);
        # ours sits beside the store, 0700 like the store's own protection.
        kwargs["httperr_dir"] = args.httperr_dir or str(path.parent / "httperr")
    srv = Server(**kwargs)
    watcher = None
    renewer = None
    try:
        for name, seconds in sorted(timeouts.items()):
            srv.set_timeout(name, seconds or TIMEOUT_DEFAULTS[name])  # 0: the default
        flags = getattr(args, "app_ssl_flags", None) or [None] * len(apps)
        kinds = getattr(args, "app_interfaces", None) or [None] * len(apps)
        for (prefix, target), ssl_flags, kind in zip(apps, flags, kinds):
            _add_app(srv, str(prefix), _load(target), ssl_flags, kind)
        if use_store:
            watcher = StoreWatcher(srv, path)
            watcher.start()
            renewer = Renewer(path)  # ACME certificates renew themselves while serving
            for port in sorted({p.port for p, _ in apps if p.tls}):
                if not any(b.endswith(f":{port}") for b in watcher.bindings):
                    log.warning("no sslcert binding for port %d in the store %s: handshakes "
                                "there fail until one is added (httpsys http add sslcert "
                                "ipport=0.0.0.0:%d certhash=... appid=...)", port, path, port)
        else:
            cert, key = Path(args.cert).read_bytes(), Path(args.key).read_bytes()
            for port in sorted({p.port for p, _ in apps if p.tls}):
                srv.set_sslcert(f"0.0.0.0:{port}", cert, key)
        # Printed before start() (the ports already listen; connections wait in the backlog), so
        # the line is out before the first request can be answered.
        me = workers.current()
        print(f"httpsys: serving {', '.join(srv.prefixes)}"
              + (f" (bindings from the store {path})" if use_store else "")
              + (f" [worker {me.index + 1}/{me.count}, pid {os.getpid()}]" if me else ""),
              flush=True)
        srv.start()
        if renewer is not None:
            renewer.start()
    except BaseException:
        if watcher is not None:
            watcher.stop()
        srv.close()
        raise
    return _run(srv, watcher, renewer)


# ---- demo --------------------------------------------------------------------------------------


def _demo_binding(store_path: Path | None, port: int) -> tuple[Path, str | None]:
    """Makes sure the store binds 0.0.0.0:PORT: if it does not, makes (or reuses) a self-signed
    localhost certificate in MY and adds the binding. Returns the store path and the thumbprint
    of the certificate bound there."""
    from .certstore import CertStore
    from .store import Store

    ipport = f"0.0.0.0:{port}"
    with Store.open(store_path) as store:
        row = store.execute("SELECT certhash FROM sslcert WHERE kind = 'ipport' AND key = ?",
                            (ipport,)).fetchone()
        if row is not None:
            return store.path, row[0]
        certs = CertStore(store)
        thumb = next((e.thumbprint for e in certs.list("MY")
                      if e.subject == "CN=localhost" and e.has_key and e.issuer == e.subject),
                     None)
        if thumb is None:
            thumb = certs.new_self_signed("localhost", ip="127.0.0.1")
            print(f"httpsys demo: made a self-signed certificate for localhost: {thumb}",
                  flush=True)
        try:
            # Session tickets are on for the demo: with netsh semantics a store binding sends
            # none unless enablesessionticket is set.
            store.add_sslcert("ipport", ipport, thumb, DEMO_APPID, enablesessionticket=1)
        except sqlite3.IntegrityError:  # another process bound it meanwhile
            row = store.execute("SELECT certhash FROM sslcert WHERE kind = 'ipport' AND key = ?",
                                (ipport,)).fetchone()
            return store.path, row[0] if row else None
        print(f"httpsys demo: bound it to ipport={ipport} (appid {DEMO_APPID})", flush=True)
        return store.path, thumb


def _demo_banner(port: int, path: Path, cafile: Path | None) -> None:
    print(f"httpsys demo: https://localhost:{port}/  (store {path})", flush=True)
    if cafile is not None:
        print(f"try: curl --cacert {cafile} https://localhost:{port}/", flush=True)
    else:
        print(f"try: curl -k https://localhost:{port}/", flush=True)
    print(f"change it live: httpsys http update sslcert ipport=0.0.0.0:{port} "
          f"certhash=THUMBPRINT appid={DEMO_APPID}", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from .certstore import CertStore
    from .store import Store
    from .watcher import StoreWatcher

    path, thumb = _demo_binding(Path(args.store) if args.store else None, args.port)
    in_worker = workers.current() is not None  # the parent did the banner
    cafile = None
    if thumb and not in_worker:
        with Store.open(path) as store:
            try:
                pem = CertStore(store).export(thumb)
                cafile = path.parent / "demo-localhost.crt"
                cafile.write_bytes(pem)
            except HttpsysError:
                cafile = None
    if args.workers > 1 and not in_worker:
        # Printed once, by the parent, before the workers listen.
        _demo_banner(args.port, path, cafile)
        return workers.supervise(args.workers, lambda: _guarded("demo", lambda: cmd_demo(args)),
                                 name="httpsys demo")
    srv = Server(io_threads=args.io_threads, workers=args.threads)
    watcher = StoreWatcher(srv, path)
    try:
        srv.add_app(f"https://+:{args.port}/", demo.app)  # the port listens from here on
        watcher.start()
        # Printed before start(): connections wait in the listen backlog until then, so nobody
        # can be answered before these lines are out.
        if not in_worker:
            _demo_banner(args.port, path, cafile)
        srv.start()
    except BaseException:
        watcher.stop()
        srv.close()
        raise
    return _run(srv, watcher)


# ---- entry point -------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return n


def _add_worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="server processes sharing the ports (SO_REUSEPORT), each watching the "
                        "store; a parent restarts one that dies (default 1: no parent)")
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="WSGI worker threads per prefix in each process (default: one per CPU)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="httpsys [--store PATH]",
                                     description="HTTP.sys-style HTTPS listener")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="serve a demo page on https://localhost:8443/ with a "
                                    "self-signed certificate from the store")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--io-threads", type=int, default=1)
    _add_worker_options(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("serve", help="serve WSGI and ASGI apps: --app "
                                     "https://+:8443/api/=module:app, with the bindings of the "
                                     "store")
    p.add_argument("--app", action=_AppAction, required=True, metavar="PREFIX=module:app")
    p.add_argument("--ssl-flags", action=_SslFlagsAction, metavar="FLAGS",
                   help="IIS sslFlags of the --app before it: Ssl, SslNegotiateCert, "
                        "SslRequireCert, SslMapCert, Ssl128 or None, comma separated")
    p.add_argument("--interface", action=_InterfaceAction, choices=("auto", "wsgi", "asgi"),
                   help="the interface of the --app before it (default auto: an async "
                        "callable of three arguments is ASGI 3, anything else WSGI)")
    p.add_argument("--cert", help="PEM certificate chain, leaf first: bind it to 0.0.0.0:PORT "
                                  "of every app instead of the store's bindings")
    p.add_argument("--key", help="PEM private key (with --cert)")
    p.add_argument("--io-threads", type=int, default=1)
    p.add_argument("--httperr-dir", metavar="DIR",
                   help="folder of the HTTPERR log (httperr<N>.log; created 0700); default: "
                        "'httperr' beside the store")
    p.add_argument("--no-httperr", action="store_true", help="write no HTTPERR log")
    _add_worker_options(p)
    p.set_defaults(func=cmd_serve)
    sub.add_parser("cert", help="the certificate store: new, import, request, complete, list, show, "
                   "export, delete")
    sub.add_parser("crl", help="certificate revocation lists: add, show, delete")
    sub.add_parser("http", help="netsh http: add/update/delete/show sslcert, urlacl, ...")
    sub.add_parser("bench", help="load generators: bench handshake URL (TLS handshakes per second)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        store_path, rest = cli.split_global(argv)
    except InvalidParameterError as e:
        print(f"httpsys: error: {e}", file=sys.stderr)
        return 2
    if rest and rest[0] == "bench":
        from . import bench  # the load generator: not needed to serve

        return bench.main(rest[1:])
    if not (rest and rest[0] in ("demo", "serve")) and cli.handles(argv):
        return cli.main(argv)
    args = _parser().parse_args(rest)
    args.store = store_path
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # SIGTERM stops as Ctrl-C does, from the first listening socket on: the commands close the
    # server (and its watcher) on the way out.
    signal.signal(signal.SIGTERM, _on_sigterm)
    return _guarded(args.command, lambda: int(args.func(args)))


def _guarded(command: str, run: Callable[[], int]) -> int:
    """Runs a command; turns Ctrl-C / SIGTERM into 0 and errors into a message and exit code."""
    try:
        return int(run())
    except KeyboardInterrupt:
        return 0
    except AccessDeniedError as e:
        print(f"httpsys {command}: error: {e}", file=sys.stderr)
        return 1
    except HttpsysError as e:
        print(f"httpsys {command}: error: {e}", file=sys.stderr)
        return cli.exit_code(e)
    except OSError as e:
        print(f"httpsys {command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
