"""``httpsys bench handshake``: a TLS handshake load generator with its client side in C.

    httpsys bench handshake https://127.0.0.1:8443/ [--connections 50] [--duration 10]
        [--tls 1.2|1.3] [--resume 0.0-1.0] [--cert FILE --key FILE] [--cafile FILE]
        [--json OUT] [--plot OUT.png]

Each connection is a TCP connect, a TLS handshake (a full one, or for a ``--resume`` share of
them a resumption of the last session the server gave that connection slot), one ``GET`` with
``Connection: close`` and the response read to the server's close; ``--connections`` of them are in flight at once in
one epoll loop in C (csrc/hsbench.c) on the calling thread. It works against any TLS server.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

from ._native import ffi, lib
from .errors import InvalidParameterError

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)


@dataclass
class Report:
    """What a run measured. Latencies are in ms from the connect() call."""

    url: str
    connections: int
    duration_s: float
    tls: str
    resume: float
    elapsed_s: float
    handshakes: int
    full: int
    resumed: int
    responses: int
    errors: dict[str, int]
    first_error: str
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    samples_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)  # not in the JSON

    @property
    def handshakes_per_s(self) -> float:
        return self.handshakes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["samples_ms"]
        return {**out, "handshakes_per_s": self.handshakes_per_s}


def percentiles(samples: list[int]) -> dict[str, float]:
    """p50 ... max of microsecond samples, in ms (nearest rank)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    out = {}
    for p in PERCENTILES:
        rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
        out["max" if p == 100.0 else f"p{p:g}"] = ordered[rank - 1] / 1000
    return out


def _target(url: str) -> tuple[str, int, str | None, str, str]:
    """(ip, port, sni, host header, path) of an https:// URL; a host name is resolved once."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        raise InvalidParameterError(f"URL must be https://host[:port]/path, not {url!r}", param="URL")
    port = u.port or 443
    try:
        ipaddress.ip_address(u.hostname)
        ip, sni = u.hostname, None
    except ValueError:
        try:
            ip = str(socket.getaddrinfo(u.hostname, port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as e:
            raise InvalidParameterError(f"URL: cannot resolve {u.hostname}: {e}", param="URL") from None
        sni = u.hostname
    host = u.netloc.rsplit("@", 1)[-1]
    return str(ip), port, sni, host, u.path or "/"


def run_handshake(url: str, *, connections: int = 50, duration: float = 10.0, tls: str | None = None,
                  resume: float = 0.0, cert: str | None = None, key: str | None = None,
                  cafile: str | None = None, progress: bool = False) -> Report:
    """Runs the load and returns its Report. InvalidParameterError names a bad argument."""
    ip, port, sni, host, path = _target(url)
    if tls not in (None, "1.2", "1.3"):
        raise InvalidParameterError(f"--tls must be 1.2 or 1.3, not {tls!r}", param="tls")
    if not 0.0 <= resume <= 1.0:
        raise InvalidParameterError(f"--resume must be 0.0-1.0, not {resume}", param="resume")
    if (cert is None) != (key is None):
        raise InvalidParameterError("--cert and --key go together", param="cert")
    keep: list[Any] = []

    def c_str(value: str | None) -> Any:
        if value is None:
            return ffi.NULL
        buf = ffi.new("char[]", value.encode())
        keep.append(buf)
        return buf

    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    cfg = ffi.new("hs_hsbench_config_t *")
    cfg.ip, cfg.port, cfg.sni = c_str(ip), port, c_str(sni)
    cfg.connections, cfg.duration_s = connections, duration
    cfg.tls_version = {"1.2": 12, "1.3": 13}.get(tls or "", 0)
    cfg.resume = resume
    cfg.cert_file, cfg.key_file, cfg.ca_file = c_str(cert), c_str(key), c_str(cafile)
    req = ffi.new("char[]", request)
    cfg.request, cfg.request_len = req, len(request)
    res = ffi.new("hs_hsbench_result_t *")
    err = ffi.new("char[]", 512)
    done = threading.Event()
    ticker = threading.Thread(target=_progress, args=(res, duration, done), daemon=True) if progress else None
    if ticker:
        ticker.start()
    try:
        rc = lib.hs_hsbench_run(cfg, res, err, 512)  # the GIL is released while it runs
    finally:
        done.set()
        if ticker:
            ticker.join()
    if rc != lib.HS_RESULT_OK:
        text = ffi.string(err).decode(errors="replace")
        raise InvalidParameterError(text, param=text.split(":", 1)[0])
    try:
        n = res.n_samples
        raw = {"connect": list(ffi.unpack(res.connect_us, n)) if n else [],
               "handshake": list(ffi.unpack(res.handshake_us, n)) if n else [],
               "first_byte": [v for v in ffi.unpack(res.ttfb_us, n) if v] if n else []}
    finally:
        lib.hs_hsbench_free(res)
    return Report(url=url, connections=connections, duration_s=duration, tls=tls or "1.2-1.3",
                  resume=resume, elapsed_s=res.elapsed_s, handshakes=res.handshakes, full=res.full,
                  resumed=res.resumed, responses=res.responses,
                  errors={"connect": res.err_connect, "tls": res.err_tls, "io": res.err_io,
                          "timeout": res.err_timeout},
                  first_error=ffi.string(res.first_error).decode(errors="replace"),
                  latency_ms={k: percentiles(v) for k, v in raw.items()},
                  samples_ms={k: [x / 1000 for x in v] for k, v in raw.items()})


def _progress(res: Any, duration: float, done: threading.Event) -> None:
    t0 = time.monotonic()
    while not done.wait(1.0):
        t = time.monotonic() - t0
        errors = res.err_connect + res.err_tls + res.err_io + res.err_timeout
        sys.stderr.write(f"\r  {t:5.1f}/{duration:g} s  {res.handshakes} handshakes  "
                         f"{res.handshakes / t:8.0f}/s  errors {errors}   ")
        sys.stderr.flush()
    sys.stderr.write("\r" + " " * 72 + "\r")


def format_report(r: Report) -> str:
    lines = [
        f"{r.url}: {r.elapsed_s:.1f} s, {r.connections} connections, TLS {r.tls}, resume {r.resume:g}",
        f"handshakes   {r.handshakes} ({r.handshakes_per_s:.1f}/s): full {r.full}, resumed {r.resumed}",
        f"responses    {r.responses}",
        "errors       " + ", ".join(f"{k} {v}" for k, v in r.errors.items())
        + (f"  (first: {r.first_error})" if r.first_error else ""),
        "",
        f"{'latency (ms)':<14}" + "".join(f"{k:>9}" for k in ("p50", "p90", "p99", "p99.9", "max")),
    ]
    for name, label in (("connect", "TCP connect"), ("handshake", "TLS handshake"), ("first_byte", "first byte")):
        p = r.latency_ms.get(name) or {}
        lines.append(f"{label:<14}" + "".join(f"{p.get(k, float('nan')):9.3f}"
                                              for k in ("p50", "p90", "p99", "p99.9", "max")))
    return "\n".join(lines) + "\n"


def plot(report: Report, out: str) -> None:
    """A latency histogram PNG (matplotlib is optional: ``pip install matplotlib``)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise InvalidParameterError("--plot needs matplotlib: pip install matplotlib", param="plot") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in report.samples_ms.items():
        if values:
            ax.hist(values, bins=100, alpha=0.6, label=name)
    ax.set_xlabel("ms from connect()")
    ax.set_ylabel("connections")
    ax.set_title(f"{report.url}: {report.handshakes_per_s:.0f} handshakes/s")
    ax.legend()
    fig.savefig(out, dpi=100)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="httpsys bench", description="load generators")
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("handshake", help="TLS handshakes per second against any HTTPS server")
    h.add_argument("url", metavar="URL")
    h.add_argument("--connections", type=int, default=50)
    h.add_argument("--duration", type=float, default=10.0)
    h.add_argument("--tls", choices=("1.2", "1.3"))
    h.add_argument("--resume", type=float, default=0.0, help="share of handshakes that resume (0.0-1.0)")
    h.add_argument("--cert", help="client certificate chain (PEM)")
    h.add_argument("--key", help="client key (PEM)")
    h.add_argument("--cafile", help="verify the server against these CAs (default: no verification)")
    h.add_argument("--json", metavar="OUT", help="write the report as JSON")
    h.add_argument("--plot", metavar="OUT.png", help="latency histogram (needs matplotlib)")
    args = p.parse_args(argv)
    try:
        report = run_handshake(args.url, connections=args.connections, duration=args.duration, tls=args.tls,
                               resume=args.resume, cert=args.cert, key=args.key, cafile=args.cafile,
                               progress=sys.stderr.isatty())
    except InvalidParameterError as e:
        print(f"httpsys bench handshake: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.as_json(), f, indent=2)
    if args.plot:
        try:
            plot(report, args.plot)
        except InvalidParameterError as e:
            print(f"httpsys bench handshake: error: {e}", file=sys.stderr)
            return 2
    return 0 if report.handshakes > 0 else 1
