"""The ``idle`` scenario of bench/run.py: server memory per idle TLS keep-alive connection.

For each run and each server: start the server fresh (pinned to the server core), open and close
a few warm-up connections, read its resident memory, open N TLS 1.3 connections from this
process (which run.py pins to the load core), each sending one ``GET /`` and reading the whole
response, so that the server has done everything it does per connection, then leave them open
and silent, wait a second and read the memory again. The figure is

    (RSS with N connections open - RSS before) / N,

RSS being VmRSS summed over every process of the server (nginx master and worker, granian
supervisor and worker). A fresh server per run, because memory freed when connections close
mostly stays with the process (malloc keeps it): a second round on the same process would
reuse it and read close to zero.

What this does not see: kernel memory of the sockets (the same for every server), and memory a
server reserved but never touched (not resident). RssAnon (heap) is recorded next to VmRSS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import resource
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import servers

WARMUP_CONNECTIONS = 20
OPEN_CONCURRENCY = 32      # connections being opened at once
SETTLE_S = 1.0             # after the last response, before reading RSS
OPEN_TIMEOUT_S = 60.0
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: httpsys-bench-idle\r\n\r\n"


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raises this process's soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit);
    servers started afterwards inherit it. Returns the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---- memory of a process tree -----------------------------------------------------------------

STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def memory_kib(root: int) -> dict[str, Any]:
    """VmRSS, RssAnon, RssFile and RssShmem in KiB, summed over ``root`` and its descendants."""
    total = dict.fromkeys(STATUS_KEYS, 0)
    pids = servers.descendants(root)
    per_pid = {}
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        mine = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in total:
                mine[key] = int(value.split()[0])
                total[key] += mine[key]
        per_pid[pid] = mine
    return {**total, "pids": per_pid}


def open_fds(root: int) -> int:
    """Open file descriptors over the server's processes (sockets included)."""
    n = 0
    for pid in servers.descendants(root):
        try:
            n += len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            continue
    return n


# ---- the client --------------------------------------------------------------------------------

def client_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


async def _one(host: str, port: int, ctx: ssl.SSLContext,
               sem: asyncio.Semaphore) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with sem:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        try:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            if not lines[0].startswith("HTTP/1.1 200"):
                raise ConnectionError(f"answered {lines[0]!r}")
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "connection" and "close" in value.lower():
                    raise ConnectionError("the server closes the connection after one request")
            if length is None:
                raise ConnectionError("no Content-Length in the response")
            body = await reader.readexactly(length)
            if body != servers.EXPECTED_BODY:
                raise ConnectionError(f"unexpected body {body!r}")
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer


class IdleClient:
    """Holds N keep-alive TLS connections open on its own event loop (this thread)."""

    def __init__(self, host: str, port: int, cafile: Path) -> None:
        self.host, self.port = host, port
        self.ctx = client_context(cafile)
        self.loop = asyncio.new_event_loop()
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.errors: dict[str, int] = {}

    def open(self, n: int) -> None:
        async def go() -> None:
            sem = asyncio.Semaphore(OPEN_CONCURRENCY)
            tasks = [asyncio.ensure_future(_one(self.host, self.port, self.ctx, sem))
                     for _ in range(n)]
            done, pending = await asyncio.wait(tasks, timeout=OPEN_TIMEOUT_S)
            for t in pending:
                t.cancel()
            if pending:
                self.errors["timeout"] = len(pending)
                await asyncio.wait(pending)
            for t in done:
                e = t.exception()
                if e is None:
                    self.conns.append(t.result())
                else:
                    kind = type(e).__name__
                    self.errors[kind] = self.errors.get(kind, 0) + 1
        self.loop.run_until_complete(go())

    def still_open(self) -> int:
        """Lets the loop see what the server sent meanwhile; counts connections not at EOF."""
        self.loop.run_until_complete(asyncio.sleep(0.2))
        return sum(1 for r, w in self.conns if not r.at_eof() and not w.transport.is_closing())

    def close(self) -> None:
        async def go() -> None:
            for _, w in self.conns:
                w.close()
            waits = [asyncio.ensure_future(w.wait_closed()) for _, w in self.conns]
            if waits:
                await asyncio.wait(waits, timeout=10.0)
            for _, w in self.conns:
                if not w.transport.is_closing():
                    w.transport.abort()
            for t in waits:
                if t.done() and not t.cancelled():
                    t.exception()   # retrieved: a reset at close is not news
                else:
                    t.cancel()
        try:
            self.loop.run_until_complete(go())
        finally:
            self.conns.clear()
            self.loop.close()


# ---- one run, one scenario ---------------------------------------------------------------------

def measure(defn: servers.ServerDef, ctx: servers.Context, n: int) -> dict[str, Any]:
    """Starts ``defn`` fresh, measures its memory with ``n`` idle connections, stops it."""
    run = servers.start(defn, ctx, tls=True)
    try:
        port = int(run.url.rsplit(":", 1)[1].rstrip("/"))
        warm = IdleClient(servers.HOST, port, ctx.certs.cert_path)
        warm.open(WARMUP_CONNECTIONS)
        warm.close()
        time.sleep(SETTLE_S)
        before = memory_kib(run.proc.pid)
        fds_before = open_fds(run.proc.pid)
        cpu0 = servers.proc_stat(run.pid)
        client = IdleClient(servers.HOST, port, ctx.certs.cert_path)
        t0 = time.monotonic()
        try:
            client.open(n)
            open_s = time.monotonic() - t0
            cpu1 = servers.proc_stat(run.pid)
            time.sleep(SETTLE_S)
            opened = len(client.conns)
            held = memory_kib(run.proc.pid)
            fds_held = open_fds(run.proc.pid)
            still = client.still_open()
        finally:
            client.close()
        time.sleep(SETTLE_S)
        after = memory_kib(run.proc.pid)
        if not run.alive():
            raise servers.ServerError(f"{defn.name} died during the run:\n{run.log_tail()}")
    finally:
        run.stop()
    cpu = (cpu1.cpu_seconds - cpu0.cpu_seconds) if cpu0 and cpu1 else math.nan
    grew = held["VmRSS"] - before["VmRSS"]
    grew_anon = held["RssAnon"] - before["RssAnon"]
    return {
        "connections_asked": n,
        "connections_opened": opened,
        "still_open_after_measuring": still,
        "errors": client.errors,
        "error_total": sum(client.errors.values()),
        "open_s": open_s,
        "rss_before_kib": before["VmRSS"],
        "rss_held_kib": held["VmRSS"],
        "rss_after_close_kib": after["VmRSS"],
        "kib_per_connection": grew / opened if opened else math.nan,
        "anon_kib_per_connection": grew_anon / opened if opened else math.nan,
        "memory_before": before, "memory_held": held, "memory_after_close": after,
        "server_fds_before": fds_before, "server_fds_held": fds_held,
        # the server's CPU while the connections were opened: a full handshake and one request each
        "setup_cpu_us_per_connection": cpu * 1e6 / opened if opened else math.nan,
        "measured_pid": run.pid, "launched_pid": run.proc.pid, "argv": run.argv,
    }


MEDIAN_KEYS = ("kib_per_connection", "anon_kib_per_connection", "rss_before_kib", "rss_held_kib",
               "rss_after_close_kib", "open_s", "setup_cpu_us_per_connection")


def run_scenario(scn: Any, args: Any, ctx: servers.Context,
                 wait_quiet: Callable[[Any], float]) -> dict[str, Any]:
    n = args.idle_connections
    out: dict[str, Any] = {"title": scn.title, "measures": scn.measures, "kind": "idle",
                           "per": scn.per, "connections": n, "servers": {}, "skipped": {},
                           "warnings": []}
    soft, hard = raise_nofile(2 * n + 256)
    # granian stops accepting at --backpressure (default 1,024 per worker): raise it to hold n.
    ctx = dataclasses.replace(ctx, max_connections=n + 64)
    out["rlimit_nofile"] = [soft, hard]
    if soft != resource.RLIM_INFINITY and soft < n + 64:
        out["warnings"].append(f"RLIMIT_NOFILE is {soft} (hard {hard}): "
                               f"not enough for {n} connections")
    print(f"\n=== {scn.name}: {scn.title} ({n} connections; RLIMIT_NOFILE {soft})", flush=True)
    names = []
    for name in scn.servers:
        if args.servers and name not in args.servers:
            continue
        defn = servers.SERVERS[name]
        lacking = servers.missing(defn)
        if lacking:
            out["skipped"][name] = "; ".join(f"{r.what}: {why} ({r.hint})" for r, why in lacking)
            print(f"  skip {name}: {out['skipped'][name]}", flush=True)
            continue
        names.append(name)
        out["servers"][name] = {"label": defn.label, "runs": []}
    for i in range(args.runs):
        order = names[i % len(names):] + names[:i % len(names)] if names else names
        for name in order:
            if name in out["skipped"]:
                continue
            wait_quiet(args)
            try:
                rec = measure(servers.SERVERS[name], ctx, n)
            except (servers.ServerError, OSError) as e:
                out["skipped"][name] = f"run {i + 1}: {e}"
                print(f"  !! {name}: run {i + 1}: {e}", flush=True)
                continue
            rec["run"] = i + 1
            out["servers"][name]["runs"].append(rec)
            print(f"  run {i + 1} {name:13s} {rec['connections_opened']:,} open "
                  f"(still {rec['still_open_after_measuring']:,})  "
                  f"RSS {rec['rss_before_kib'] / 1024:.1f} -> "
                  f"{rec['rss_held_kib'] / 1024:.1f} MiB  {rec['kib_per_connection']:.1f} KiB/conn "
                  f"(anon {rec['anon_kib_per_connection']:.1f})  after close "
                  f"{rec['rss_after_close_kib'] / 1024:.1f} MiB  opened in {rec['open_s']:.1f} s  "
                  f"setup CPU {rec['setup_cpu_us_per_connection']:.0f} us/conn  "
                  f"errors {rec['error_total']}", flush=True)
    for name, entry in out["servers"].items():
        runs = entry["runs"]
        if not runs:
            continue
        med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS}
        med["runs"] = len(runs)
        med["error_total"] = sum(r["error_total"] for r in runs)
        med["opened_min"] = min(r["connections_opened"] for r in runs)
        med["still_open_min"] = min(r["still_open_after_measuring"] for r in runs)
        med["kib_per_connection_range"] = [min(r["kib_per_connection"] for r in runs),
                                           max(r["kib_per_connection"] for r in runs)]
        entry["median"] = med
        if med["error_total"]:
            out["warnings"].append(f"{name}: {med['error_total']} connections failed to open")
        if med["still_open_min"] < med["opened_min"]:
            out["warnings"].append(f"{name}: the server closed some idle connections before the "
                                   f"end of a run (fewest still open: {med['still_open_min']:,})")
    base = next((nm for nm in names if servers.SERVERS[nm].is_httpsys and
                 out["servers"][nm].get("median")), None)
    out["baseline"] = base
    out["ratios"], out["paired_ratios"] = {}, {}
    if base is not None:
        b = out["servers"][base]["median"]["kib_per_connection"]
        mine = {r["run"]: r["kib_per_connection"] for r in out["servers"][base]["runs"]}
        for name, peer in out["servers"].items():
            if name == base or not peer.get("median"):
                continue
            out["ratios"][name] = b / peer["median"]["kib_per_connection"]
            per_run = [mine[r["run"]] / r["kib_per_connection"] for r in peer["runs"]
                       if r["run"] in mine and r["kib_per_connection"] > 0]
            if per_run:
                out["paired_ratios"][name] = {"per_run": per_run,
                                              "median": statistics.median(per_run)}
    return out


def table(name: str, res: dict[str, Any], args: Any) -> str:
    n = res["connections"]
    intro = (f"{n:,} TLS 1.3 keep-alive connections, one `GET /` each, then idle; median of "
             f"{args.runs} runs, a fresh server per run; server on core {args.server_core}, "
             f"client on core {args.load_core}.")
    head = ("| server | RSS before | RSS with connections open | KiB/connection (RSS) | "
            "KiB/connection (RssAnon) | RSS after closing | still open | setup CPU µs/connection | "
            "errors | httpsys ÷ server (KiB/connection) |")
    lines = [f"### {name}: {res['title']}", "", intro, "", head,
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = res["baseline"]
    for sname, entry in res["servers"].items():
        med = entry.get("median")
        if not med:
            lines.append(f"| {entry['label']} | failed: see warnings |" + " |" * 8)
            continue
        if sname == base:
            ratio = "—"
        else:
            ratio = f"{res['ratios'][sname]:.2f}" if sname in res["ratios"] else "n/a"
        lines.append(
            f"| {entry['label']} | {med['rss_before_kib'] / 1024:.1f} MiB | "
            f"{med['rss_held_kib'] / 1024:.1f} MiB | {med['kib_per_connection']:.1f} | "
            f"{med['anon_kib_per_connection']:.1f} | {med['rss_after_close_kib'] / 1024:.1f} MiB | "
            f"{med['still_open_min']:,} of {med['opened_min']:,} | "
            f"{med['setup_cpu_us_per_connection']:.0f} | {med['error_total']} | {ratio} |")
    for sname, why in res["skipped"].items():
        if sname not in res["servers"] or not res["servers"][sname].get("median"):
            label = servers.SERVERS[sname].label
            lines.append(f"| {label} | skipped: {why.splitlines()[0]} |" + " |" * 8)
    if res.get("paired_ratios"):
        lines += ["", "Ratios paired by round: " + "; ".join(
            f"{servers.SERVERS[nm].label} {', '.join(f'{x:.2f}' for x in pr['per_run'])} "
            f"(median {pr['median']:.2f})" for nm, pr in res["paired_ratios"].items()) + "."]
    ranges = [f"{e['label']} {e['median']['kib_per_connection_range'][0]:.1f}-"
              f"{e['median']['kib_per_connection_range'][1]:.1f}"
              for e in res["servers"].values() if e.get("median")]
    if ranges:
        lines += ["", "KiB/connection across runs: " + "; ".join(ranges) + "."]
    if res["warnings"]:
        lines += [""] + [f"- warning: {w}" for w in res["warnings"]]
    return "\n".join(lines)
