"""httpsys side by side with nginx, granian and uvicorn: CPU per request, measured from /proc.

    python bench/run.py [--only SCENARIO[,SCENARIO]] [--duration 8] [--runs 3]
                        [--server-core 0] [--load-core 1] [--json OUT]

Each scenario starts its servers pinned to the server core, checks that each answers GET / with
200 "Hello, world!" over a new connection, warms each up, then runs wrk on the load core
``--runs`` times per server, round-robin across servers so that drift on a shared machine
spreads over all of them. For every run it reads utime+stime of the server's working process
from /proc/PID/stat before and after wrk, and divides by the requests wrk completed. The table
shows the median of the runs for each figure, and the ratio httpsys CPU / peer CPU.

The ``idle`` scenario does not run wrk: it holds --idle-connections TLS connections open and
reports the server's resident memory per connection (bench/idle.py). The ``mtls`` and
``mtls-crl`` scenarios load the servers with ``httpsys bench handshake --cert --key`` instead of
wrk (full handshakes with a client certificate, without and with a 100,000-entry CRL;
bench/mtls.py), measured the same way: server CPU per handshake.

Nothing is installed: what is missing is named, with the command that installs it, and that
server is skipped. See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import certs
import idle
import loadgen
import mtls
import servers


@dataclass(frozen=True)
class Scenario:
    """One row of the plan: the servers it compares and how wrk loads them.

    ``servers`` are keys of servers.SERVERS; the first one marked ``is_httpsys`` is the
    baseline of the ratios. ``targets`` are the issue's goals for httpsys CPU / peer CPU.
    """

    name: str
    title: str
    measures: str
    servers: tuple[str, ...]
    tls: bool = True
    connection_close: bool = False
    resume: bool = True          # may wrk resume TLS sessions (matters with connection_close)
    per: str = "request"         # what one wrk request is: a request, or a connection
    kind: str = "wrk"            # "wrk": load with wrk, CPU per request; "idle": see idle.py;
                                 # "mtls": load with httpsys bench handshake --cert, see mtls.py
    crl: bool = False            # mtls: the servers load the 100,000-entry CRL
    targets: dict[str, float] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "keepalive-wsgi", "TLS keep-alive, hello world (WSGI)",
        "wrk over 50 TLS 1.3 keep-alive connections: request parsing, the app, one TLS record "
        "each way. The handshakes of the 50 connections are a negligible part.",
        ("httpsys", "nginx", "granian-wsgi"),
        targets={"granian-wsgi": 0.85, "nginx": 1.25}),
    Scenario(
        "keepalive-asgi", "TLS keep-alive, hello world (ASGI)",
        "As keepalive-wsgi, for ASGI servers: httpsys's asyncio loop thread (uvloop) against "
        "uvicorn (uvloop, httptools) and granian's ASGI worker.",
        ("httpsys-asgi", "uvicorn", "granian-asgi"),
        targets={"granian-asgi": 0.7, "uvicorn": 0.5}),
    Scenario(
        "plain-http", "Plain HTTP keep-alive, hello world",
        "As keepalive-wsgi without TLS: what the HTTP and app path costs by itself.",
        ("httpsys", "nginx", "granian-wsgi"),
        tls=False),
    Scenario(
        "handshake", "Full TLS handshake per request (Connection: close)",
        "wrk sends `Connection: close`, so every request is a new TCP connection and a full "
        "TLS 1.3 handshake (X25519, ECDSA P-256); the server's CPU per request is its CPU per "
        "connection. wrk would resume sessions; bench/wrk_tls.c stops that.",
        ("httpsys", "nginx", "granian-wsgi"),
        connection_close=True, resume=False, per="connection",
        targets={"nginx": 0.75}),
    Scenario(
        "resumed", "Resumed TLS 1.3 handshake per request (Connection: close)",
        "As handshake, but wrk keeps its TLS session between connections, so after the first "
        "handshake on each of the 50 connection slots every handshake is a TLS 1.3 resumption "
        "(PSK from the server's session ticket, with an X25519 exchange: psk_dhe_ke) and the "
        "server does no certificate signature. bench/wrk_tls.c counts how many were resumed.",
        ("httpsys", "nginx", "granian-wsgi"),
        connection_close=True, resume=True, per="connection"),
    Scenario(
        "idle", "Idle TLS keep-alive connections: server memory per connection",
        "Opens --idle-connections TLS 1.3 keep-alive connections to the server (one GET each, "
        "then left open and silent) from the load core and reads the server's resident memory "
        "(VmRSS summed over its processes) before and with them open: KiB per connection.",
        ("httpsys", "nginx", "granian-wsgi"),
        per="connection", kind="idle"),
    Scenario(
        "mtls", "Mutual TLS 1.3, full handshake per connection, no CRL",
        "`httpsys bench handshake --cert --key`: every connection is a full TLS 1.3 handshake in "
        "which the client presents a certificate the server requires and verifies against the "
        "bench CA (ECDSA P-256), then one GET with `Connection: close`. CPU per handshake.",
        ("httpsys", "nginx", "granian-wsgi"),
        connection_close=True, resume=False, per="handshake", kind="mtls"),
    Scenario(
        "mtls-crl", "Mutual TLS 1.3, full handshake per connection, 100,000-entry CRL",
        "As mtls, with the CA's CRL of 100,000 revoked serials loaded by every server (httpsys: "
        "the binding's CRL; nginx: ssl_crl; granian: --ssl-crl); the client's certificate is not "
        "in it, so every handshake looks its serial up. CPU per handshake.",
        ("httpsys", "nginx", "granian-wsgi"),
        connection_close=True, resume=False, per="handshake", kind="mtls", crl=True),
)}

RESUMED_MIN_SHARE = 0.98   # resumed: fewer resumed handshakes than this share is a warning

SETTLE_S = 0.25   # after wrk exits, before the second /proc read: the server finishes closing


# ---- preflight -----------------------------------------------------------------------------

def preflight(args: argparse.Namespace) -> list[str]:
    """Fatal problems (the load side): returns messages naming what to install."""
    problems = []
    if shutil.which("wrk") is None:
        problems.append("wrk is missing: apt-get install wrk")
    if shutil.which("taskset") is None:
        problems.append("taskset is missing: apt-get install util-linux")
    allowed = os.sched_getaffinity(0)
    for flag, core in (("--server-core", args.server_core), ("--load-core", args.load_core)):
        if core not in allowed:
            problems.append(f"{flag} {core}: this process may run on cores {sorted(allowed)} only")
    return problems


# ---- machine --------------------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (r.stdout.strip() or r.stderr.strip()).splitlines()
    return text[0] if text else ""


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = servers.REPO_ROOT / ".git"
    head = _first_line(["git", "-C", str(servers.REPO_ROOT), "rev-parse", "--short", "HEAD"]) if git.exists() else ""
    dirty = _first_line(["git", "-C", str(servers.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"]) if git.exists() else ""
    nginx = servers.nginx_binary()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "openssl": _first_line(["openssl", "version"]),
        "python": platform.python_version(),
        "python_ssl": ssl.OPENSSL_VERSION,
        "loadavg_at_start": os.getloadavg(),
        "httpsys_git": f"{head}{' (with uncommitted changes)' if dirty else ''}",
        "httpsys_core": servers.httpsys_core_info(),
        "wrk": _first_line(["wrk", "-v"]) if shutil.which("wrk") else None,
        "nginx": _first_line([nginx, "-v"]) if nginx else None,
        "granian": _first_line([sys.executable, "-m", "granian", "--version"]),
        "uvicorn": _first_line([sys.executable, "-m", "uvicorn", "--version"]),
    }


# ---- one measurement --------------------------------------------------------------------------

class ServerDied(RuntimeError):
    pass


def measure(run: servers.Running, scn: Scenario, args: argparse.Namespace, duration: int,
            shim: Path | None, workdir: Path, ctx_mtls: servers.Mtls | None = None) -> dict[str, Any]:
    """One load run (wrk, or the handshake tool for kind "mtls") against one server, with the
    server's CPU over it."""
    tree = servers.descendants(run.proc.pid)
    before = servers.proc_stat(run.pid)
    tree_before = [servers.proc_stat(p) for p in tree]
    if before is None or not run.alive():
        raise ServerDied(f"{run.name} is not running before the run:\n{run.log_tail()}")
    if scn.kind == "mtls":
        assert ctx_mtls is not None
        pki = ctx_mtls.pki
        argv = loadgen.handshake_command(
            run.url, core=args.load_core, connections=args.connections, duration_s=duration,
            tls=args.mtls_tls, cert=pki.client_cert_path, key=pki.client_key_path, json_out=workdir / "handshake-report.json")
    else:
        argv = loadgen.command(run.url, core=args.load_core, threads=args.threads,
                               connections=args.connections, duration_s=duration,
                               connection_close=scn.connection_close)
    others0 = servers.cpu_by_process()
    switches0 = servers.context_switches(run.pid)
    kids0, self0 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    srv_core0, load_core0 = servers.core_stat(args.server_core), servers.core_stat(args.load_core)
    t0 = time.monotonic()
    if scn.kind == "mtls":
        result = loadgen.run_handshake(argv, env=servers.python_env(),
                                       json_out=workdir / "handshake-report.json", timeout_s=duration + 60)
        result.tls["version"] = f"TLSv{args.mtls_tls}"
    else:
        result = loadgen.run(argv, shim=shim if scn.tls else None, resume=scn.resume,
                             stats_path=workdir / "wrk-tls-stats.txt", timeout_s=duration + 60)
    time.sleep(SETTLE_S)
    wall = time.monotonic() - t0
    srv_core = servers.core_stat(args.server_core) - srv_core0
    load_core = servers.core_stat(args.load_core) - load_core0
    wrk_cpu = _rusage_cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _rusage_cpu(kids0)
    self_cpu = _rusage_cpu(resource.getrusage(resource.RUSAGE_SELF)) - _rusage_cpu(self0)
    switches = servers.context_switches(run.pid) - switches0
    after = servers.proc_stat(run.pid)
    if after is None or not run.alive():
        raise ServerDied(f"{run.name} died during the run (measured PID {run.pid}):\n{run.log_tail()}")
    tree_after = [servers.proc_stat(p) for p in tree]
    others = _busiest_others(others0, servers.cpu_by_process(), set(tree) | {os.getpid()})
    cpu = after.cpu_seconds - before.cpu_seconds
    tree_cpu = sum(a.cpu_seconds - b.cpu_seconds for a, b in zip(tree_after, tree_before)
                   if a is not None and b is not None and a.starttime == b.starttime)
    n = result.requests
    server_other = srv_core.busy - tree_cpu
    load_other = load_core.busy - wrk_cpu - self_cpu
    return {
        "requests": n,
        "duration_s": result.duration_s,
        "requests_per_s": result.requests_per_s,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "errors": result.errors,
        "error_total": result.error_total,
        "server_cpu_s": cpu,
        "cpu_us_per_request": cpu * 1e6 / n if n else math.nan,
        "server_core_busy": cpu / wall if wall else math.nan,
        "tree_pids": tree,
        "tree_cpu_us_per_request": tree_cpu * 1e6 / n if n else math.nan,
        "server_threads": after.threads,
        "context_switches_per_request": switches / n if n else math.nan,
        # /proc/stat for the two cores: everything that ran there, whoever it was charged to
        "server_core_all_us_per_request": srv_core.busy * 1e6 / n if n else math.nan,
        "server_core_other_s": server_other,
        "server_core_steal_s": srv_core.steal,
        "load_core_busy": load_core.busy / wall if wall else math.nan,
        "load_core_other_s": load_other,
        "load_core_steal_s": load_core.steal,
        "other_processes": others,   # busiest other processes anywhere on the machine
        "wrk_cpu_us_per_request": wrk_cpu * 1e6 / n if n else math.nan,
        "wall_s": wall,
        "disturbed": _disturbance(server_other, load_other, srv_core.steal + load_core.steal, wall, others),
        "wrk_tls": result.tls,
        "wrk_argv": argv,
        "wrk_stdout": result.stdout,
        **({"handshake_report": result.report} if result.report else {}),
    }


def _rusage_cpu(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


DISTURBED = 0.05   # other work above this share of the run, on either core, disturbs it
DISTURBED_MIN_S = 0.1   # ... and above this many seconds (short runs: ksoftirqd, kworkers)


def _disturbance(server_other: float, load_other: float, steal: float, wall: float,
                 others: list[tuple[str, int, float]]) -> str | None:
    """Why a run was disturbed by something else on the machine, or None if it was not."""
    why = []
    limit = max(DISTURBED * wall, DISTURBED_MIN_S)
    if server_other > limit:
        why.append(f"{server_other:.2f} s of other work on the server core")
    if load_other > limit:
        why.append(f"{load_other:.2f} s of other work on the load core")
    if steal > limit:
        why.append(f"{steal:.2f} s stolen by the hypervisor")
    if not why:
        return None
    who = ", ".join(f"{c} [{p}] {t:.2f} s" for c, p, t in others) or \
        "no process still running (short-lived ones such as compilers and test runs are not seen)"
    return "; ".join(why) + f"; busiest other processes: {who}"


def wait_quiet(args: argparse.Namespace) -> float:
    """Waits (up to --quiet-wait seconds) until both cores are idle apart from us; returns the
    seconds waited. Other people's builds and test runs share this machine."""
    start = time.monotonic()
    cores = (args.server_core, args.load_core)
    while True:
        a = [servers.core_stat(c) for c in cores]
        time.sleep(0.5)
        b = [servers.core_stat(c) for c in cores]
        busiest = max((y - x).busy + (y - x).steal for x, y in zip(a, b)) / 0.5
        waited = time.monotonic() - start
        if busiest <= DISTURBED or waited >= args.quiet_wait:
            return waited
        time.sleep(0.5)


def _busiest_others(before: dict[tuple[int, int], tuple[str, float]],
                    after: dict[tuple[int, int], tuple[str, float]], exclude: set[int],
                    top: int = 5) -> list[tuple[str, int, float]]:
    """Which other processes used CPU between two snapshots (those that exited are not seen)."""
    used = []
    for key, (comm, cpu) in after.items():
        if key[0] in exclude:
            continue
        delta = cpu - before.get(key, (comm, 0.0))[1]
        if delta >= 0.05:
            used.append((comm, key[0], round(delta, 2)))
    return sorted(used, key=lambda u: -u[2])[:top]


# ---- one scenario -----------------------------------------------------------------------------

MEDIAN_KEYS = ("requests_per_s", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request",
               "server_core_busy", "tree_cpu_us_per_request", "server_core_all_us_per_request",
               "load_core_busy", "context_switches_per_request")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS}
    med["runs"] = len(runs)
    med["error_total"] = sum(r["error_total"] for r in runs)
    med["requests_total"] = sum(r["requests"] for r in runs)
    med["cpu_us_per_request_range"] = [min(r["cpu_us_per_request"] for r in runs),
                                       max(r["cpu_us_per_request"] for r in runs)]
    tls = [r["wrk_tls"] for r in runs if r["wrk_tls"]]
    if tls:
        med["handshakes_total"] = sum(int(t.get("handshakes", 0)) for t in tls)
        med["resumed_total"] = sum(int(t.get("resumed", 0)) for t in tls)
        med["negotiated"] = " ".join(tls[0][k] for k in ("version", "cipher", "group") if k in tls[0])
    return med


def run_scenario(scn: Scenario, args: argparse.Namespace, ctx: servers.Context,
                 shim: Path | None, pki: certs.MtlsFiles | None = None) -> dict[str, Any]:
    if scn.kind == "mtls":
        assert pki is not None
        ctx = dataclasses.replace(ctx, mtls=servers.Mtls(pki, scn.crl))
    title = scn.title.replace("100,000", f"{args.crl_entries:,}") if scn.crl else scn.title
    out: dict[str, Any] = {"title": title, "measures": scn.measures, "tls": scn.tls,
                           "kind": scn.kind,
                           "connection_close": scn.connection_close, "per": scn.per,
                           "wrk_may_resume": scn.resume if scn.tls else None,
                           "targets": scn.targets, "servers": {}, "skipped": {}, "warnings": []}
    if scn.tls and scn.connection_close and not scn.resume and shim is None:
        out["warnings"].append("wrk_tls.so could not be built: wrk resumed TLS sessions, so these "
                               "are mostly resumed handshakes, not full ones")
    if scn.tls and scn.connection_close and scn.resume and shim is None:
        out["warnings"].append("wrk_tls.so could not be built: how many handshakes were resumed "
                               "was not counted")
    print(f"\n=== {scn.name}: {title}", flush=True)
    running: dict[str, servers.Running] = {}
    try:
        for name in scn.servers:
            if args.servers and name not in args.servers:
                continue
            defn = servers.SERVERS[name]
            lacking = servers.missing(defn, mtls=scn.kind == "mtls")
            if lacking:
                msg = "; ".join(f"{r.what}: {why} ({r.hint})" for r, why in lacking)
                out["skipped"][name] = msg
                print(f"  skip {name}: {msg}", flush=True)
                continue
            try:
                run = servers.start(defn, ctx, scn.tls)
            except servers.ServerError as e:
                out["skipped"][name] = f"failed to start: {e}"
                print(f"  skip {name}: failed to start: {e}", flush=True)
                continue
            running[name] = run
            out["servers"][name] = {"label": defn.label, "argv": run.argv, "url": run.url,
                                    "measured_pid": run.pid, "launched_pid": run.proc.pid,
                                    "probe": run.probe, "runs": []}
            if run.config_text:
                out["servers"][name]["config"] = run.config_text
            if defn.is_httpsys:
                out["servers"][name]["core"] = servers.httpsys_core_info()
            if scn.kind == "mtls":
                answers, problems = mtls.check(name, run, ctx, args.mtls_tls)
                out["servers"][name]["checks"] = answers
                out["warnings"] += problems
            print(f"  started {name}: {run.url} (measured PID {run.pid}, launched {run.proc.pid}; "
                  f"probe {run.probe.get('status')} {run.probe.get('tls', '')})", flush=True)

        if args.warmup > 0:
            for name, run in list(running.items()):
                try:
                    measure(run, scn, args, args.warmup, shim, ctx.workdir, ctx.mtls)
                except (ServerDied, loadgen.WrkError) as e:
                    _drop(out, running, name, f"failed during warm-up: {e}")

        retries = dict.fromkeys(running, args.retries)
        for i in range(args.runs):
            names = list(running)
            names = names[i % len(names):] + names[:i % len(names)] if names else names
            for name in names:
                while name in running:
                    waited = wait_quiet(args)
                    try:
                        rec = measure(running[name], scn, args, args.duration, shim, ctx.workdir, ctx.mtls)
                    except (ServerDied, loadgen.WrkError) as e:
                        _drop(out, running, name, f"run {i + 1}: {e}")
                        break
                    rec["run"], rec["waited_for_quiet_s"] = i + 1, round(waited, 1)
                    out["servers"][name]["runs"].append(rec)
                    _print_run(name, rec, scn)
                    if not rec["disturbed"] or retries[name] == 0:
                        break
                    retries[name] -= 1
                    print(f"    disturbed ({rec['disturbed']}); measuring run {i + 1} again", flush=True)
    finally:
        for run in running.values():
            run.stop()

    for name, entry in out["servers"].items():
        if entry["runs"]:
            entry["median"] = summarize(counted_runs(entry["runs"]))
            _check(scn, args, name, entry, out["warnings"])
    out["baseline"] = _baseline(scn, out)
    out["ratios"] = _ratios(out)
    out["paired_ratios"] = _paired_ratios(out)
    return out


def _print_run(name: str, rec: dict[str, Any], scn: Scenario) -> None:
    tls = rec["wrk_tls"]
    hs = f", handshakes {tls['handshakes']} (resumed {tls['resumed']})" if tls else ""
    print(f"  run {rec['run']} {name:13s} {rec['requests_per_s']:>10,.0f} req/s  "
          f"p50 {rec['p50_ms']:.2f} ms  p99 {rec['p99_ms']:.2f} ms  "
          f"CPU {rec['cpu_us_per_request']:.2f} us/{scn.per}  core {rec['server_core_busy']:.0%}  "
          f"cs/{scn.per} {rec['context_switches_per_request']:.2f}  "
          f"wrk core {rec['load_core_busy']:.0%}  errors {rec['error_total']}{hs}"
          f"{'  [disturbed]' if rec['disturbed'] else ''}"
          f"{f'  (waited {w:.0f} s for a quiet machine)' if (w := rec['waited_for_quiet_s']) >= 1 else ''}",
          flush=True)


def counted_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs the medians use: for each run number, the last attempt (a disturbed attempt
    was measured again until clean or out of retries)."""
    last: dict[int, dict[str, Any]] = {}
    for r in runs:
        last[r["run"]] = r
    return [last[k] for k in sorted(last)]


def _drop(out: dict[str, Any], running: dict[str, servers.Running], name: str, why: str) -> None:
    print(f"  !! {name}: {why}", flush=True)
    out["servers"][name].setdefault("failures", []).append(why)
    out["warnings"].append(f"{name}: {why.splitlines()[0]}")
    running.pop(name).stop()


def _check(scn: Scenario, args: argparse.Namespace, name: str, entry: dict[str, Any],
           warnings: list[str]) -> None:
    """Turns what does not look right into warnings printed under the table."""
    med = entry["median"]
    if med["error_total"]:
        kinds: dict[str, int] = {}
        for r in counted_runs(entry["runs"]):
            for k, v in r["errors"].items():
                kinds[k] = kinds.get(k, 0) + v
        warnings.append(f"{name}: {med['error_total']} errors over {med['runs']} runs "
                        f"({', '.join(f'{k} {v}' for k, v in kinds.items() if v)})")
    if "handshakes_total" in med:
        if scn.connection_close and not scn.resume and med["resumed_total"]:
            warnings.append(f"{name}: {med['resumed_total']} handshakes were resumed")
        if scn.connection_close and scn.resume:
            # The first handshake on each of wrk's connection slots is a full one; any other
            # full handshake means the server gave no ticket or refused it.
            full = med["handshakes_total"] - med["resumed_total"]
            expected = med["runs"] * args.connections
            if full > expected or med["resumed_total"] < RESUMED_MIN_SHARE * med["handshakes_total"]:
                warnings.append(f"{name}: {full:,} of {med['handshakes_total']:,} handshakes were "
                                f"full ones ({expected:,} expected: the first on each wrk connection)")
        if not scn.connection_close:
            extra = med["handshakes_total"] - med["runs"] * args.connections
            if extra > 0:
                warnings.append(f"{name}: wrk reconnected {extra} times over {med['runs']} runs "
                                "(the server closed keep-alive connections)")
    counted = counted_runs(entry["runs"])
    for r in counted:
        if r["disturbed"]:
            warnings.append(f"{name} run {r['run']} counted although disturbed: {r['disturbed']}")
    retried = len(entry["runs"]) - len(counted)
    if retried:
        warnings.append(f"{name}: {retried} disturbed attempt(s) measured again (all kept in the JSON)")
    lo, hi = med["cpu_us_per_request_range"]
    if lo > 0 and hi / lo > 1.15:
        warnings.append(f"{name}: CPU per {scn.per} varied {lo:.2f}-{hi:.2f} us across runs")
    if not math.isnan(med["tree_cpu_us_per_request"]) and \
            med["tree_cpu_us_per_request"] > 1.05 * med["cpu_us_per_request"] + 0.2:
        warnings.append(f"{name}: its other processes used CPU too: "
                        f"{med['tree_cpu_us_per_request']:.2f} us/{scn.per} for the whole tree")


def _paired_ratios(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """httpsys CPU / peer CPU within each round of runs (run 1 with run 1, ...): drift that
    moves every server of a round together cancels out here."""
    base = out["baseline"]
    if base is None:
        return {}
    mine = {r["run"]: r["cpu_us_per_request"] for r in counted_runs(out["servers"][base]["runs"])}
    paired = {}
    for name, e in out["servers"].items():
        if name == base or not e.get("median"):
            continue
        theirs = {r["run"]: r["cpu_us_per_request"] for r in counted_runs(e["runs"])}
        per_run = [mine[k] / theirs[k] for k in sorted(mine) if theirs.get(k)]
        if per_run:
            paired[name] = {"per_run": per_run, "median": statistics.median(per_run)}
    return paired


def _baseline(scn: Scenario, out: dict[str, Any]) -> str | None:
    for name in scn.servers:
        if servers.SERVERS[name].is_httpsys and out["servers"].get(name, {}).get("median"):
            return name
    return None


def _ratios(out: dict[str, Any]) -> dict[str, float]:
    base = out["baseline"]
    if base is None:
        return {}
    b = out["servers"][base]["median"]["cpu_us_per_request"]
    return {name: b / e["median"]["cpu_us_per_request"]
            for name, e in out["servers"].items() if name != base and e.get("median")}


# ---- output ------------------------------------------------------------------------------------

def table(name: str, res: dict[str, Any], args: argparse.Namespace) -> str:
    per = res["per"]
    tool = res.get("kind") == "mtls"
    if tool:
        flags = (f"httpsys bench handshake --connections {args.connections} --duration {args.duration} "
                 f"--tls {args.mtls_tls} --resume 0 --cert client.pem --key client.key")
    else:
        flags = f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s" + \
            (" -H 'Connection: close'" if res["connection_close"] else "")
    load = "the handshake tool" if tool else "wrk"
    lines = [f"### {name}: {res['title']}", "",
             (f"`{flags}`, median of {args.runs} runs; server on core {args.server_core}, "
              f"{load} on core {args.load_core}."), ""]
    base = res["baseline"]
    head = ["server", "handshakes/s" if tool else "req/s", "handshake p50" if tool else "p50",
            "handshake p99" if tool else "p99", f"CPU µs/{per}", "server busy",
            "load core busy" if tool else "wrk core busy", "errors", f"httpsys ÷ server (CPU/{per})"]
    if res["targets"]:
        head.append("target")
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for sname, entry in res["servers"].items():
        med = entry.get("median")
        if not med:
            lines.append(f"| {entry['label']} | failed: see warnings |" + " |" * (len(head) - 2))
            continue
        if base is None:
            ratio = "n/a (no httpsys server here yet)"
        elif sname == base:
            ratio = "—"
        else:
            ratio = f"{res['ratios'][sname]:.2f}"
        row = [entry["label"], f"{med['requests_per_s']:,.0f}", f"{med['p50_ms']:.2f} ms",
               f"{med['p99_ms']:.2f} ms", f"{med['cpu_us_per_request']:.1f}",
               f"{med['server_core_busy']:.0%}", f"{med['load_core_busy']:.0%}",
               str(med["error_total"]), ratio]
        if res["targets"]:
            t = res["targets"].get(sname)
            row.append(f"≤ {t:.2f}" if t else "")
        lines.append("| " + " | ".join(row) + " |")
    for sname, why in res["skipped"].items():
        lines.append(f"| {servers.SERVERS[sname].label} | skipped: {why.splitlines()[0]} |" + " |" * (len(head) - 2))
    if res.get("paired_ratios"):
        lines += ["", "Ratios paired by round (httpsys and the peer measured within the same round): " +
                  "; ".join(f"{servers.SERVERS[n].label} {', '.join(f'{x:.2f}' for x in pr['per_run'])} "
                            f"(median {pr['median']:.2f})" for n, pr in res["paired_ratios"].items()) + "."]
    tls_notes = [f"{e['label']}: {e['median']['handshakes_total']:,} handshakes "
                 f"({e['median']['resumed_total']:,} resumed, "
                 f"{e['median']['resumed_total'] / max(1, e['median']['handshakes_total']):.1%}), "
                 f"{e['median']['negotiated']}"
                 for e in res["servers"].values() if e.get("median", {}).get("handshakes_total") is not None]
    if tls_notes and res["connection_close"]:
        who = "Handshakes (counted by httpsys bench handshake)" if tool else \
            "wrk's handshakes (counted by bench/wrk_tls.c)"
        lines += ["", f"{who}: " + "; ".join(tls_notes) + "."]
    if tool and mtls.checks_line(res):
        lines += ["", mtls.checks_line(res)]
    if res["warnings"]:
        lines += [""] + [f"- warning: {w}" for w in res["warnings"]]
    return "\n".join(lines)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str, allow_nan=True))
    tmp.replace(path)


# ---- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help=f"comma-separated scenarios (default all: {', '.join(SCENARIOS)})")
    p.add_argument("--servers", help=f"comma-separated servers to keep in every scenario "
                   f"(default all: {', '.join(servers.SERVERS)})")
    p.add_argument("--duration", type=int, default=8, help="whole seconds per wrk run (default 8)")
    p.add_argument("--runs", type=int, default=3, help="runs per server; the table shows the median")
    p.add_argument("--warmup", type=int, default=2, help="whole seconds of unmeasured load first (0: none)")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    p.add_argument("--retries", type=int, default=3,
                   help="per server and scenario: how many disturbed runs to measure again (default 3)")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="before each run, wait up to this many seconds for both cores to go idle")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (default 50)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    p.add_argument("--idle-connections", type=int, default=2000,
                   help="idle scenario: TLS keep-alive connections held open (default 2000)")
    p.add_argument("--mtls-tls", choices=("1.2", "1.3"), default="1.3",
                   help="mtls scenarios: the TLS version of the handshakes (default 1.3)")
    p.add_argument("--crl-entries", type=int, default=100_000,
                   help="mtls-crl: revoked serials in the CRL (default 100000)")
    p.add_argument("--httpsys-io-threads", type=int, default=1)
    p.add_argument("--httpsys-workers", type=int, default=1)
    p.add_argument("--json", type=Path, help="write every run, the medians and the machine here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)

    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:16s} {s.title}: {', '.join(s.servers)}")
        return 0
    names = list(SCENARIOS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.servers = [n.strip() for n in args.servers.split(",") if n.strip()] if args.servers else []
    unknown = [n for n in args.servers if n not in servers.SERVERS]
    if unknown:
        p.error(f"unknown server {', '.join(unknown)}; choose from {', '.join(servers.SERVERS)}")
    if args.runs < 1 or args.duration < 1 or args.warmup < 0:
        p.error("--runs and --duration must be >= 1, --warmup >= 0 (wrk takes whole seconds)")
    if args.idle_connections < 1:
        p.error("--idle-connections must be >= 1")
    if args.crl_entries < 1:
        p.error("--crl-entries must be >= 1")
    problems = preflight(args)
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    if args.server_core == args.load_core:
        print("warning: the server and wrk share a core; CPU per request still holds, req/s won't",
              file=sys.stderr)
    os.sched_setaffinity(0, {args.load_core})   # keep this process off the server's core
    mtls_wanted = any(SCENARIOS[n].kind == "mtls" for n in names)
    for sname in dict.fromkeys(n for scn in names for n in SCENARIOS[scn].servers
                               if not args.servers or n in args.servers):
        for req, why in servers.missing(servers.SERVERS[sname], mtls=mtls_wanted):
            print(f"missing: {req.what}: {why} ({req.hint}); {sname} will be skipped", flush=True)
    load_problem = servers.HTTPSYS_REQ.problem() if mtls_wanted else None
    if load_problem is not None:
        # httpsys bench handshake is the mtls scenarios' load: without the core there is none.
        print(f"missing: httpsys bench handshake (the mtls scenarios' load): {load_problem} "
              f"({servers.HTTPSYS_REQ.hint}); mtls scenarios skipped", flush=True)
        names = [n for n in names if SCENARIOS[n].kind != "mtls"]
        mtls_wanted = False

    workdir = Path(tempfile.mkdtemp(prefix="httpsys-bench-"))
    json_path = args.json or workdir / "results.json"
    try:
        cert = certs.make(workdir / "tls")
        shim, shim_msg = (None, "")
        if any(SCENARIOS[n].tls for n in names):
            shim, shim_msg = loadgen.build_shim(workdir)
            print(f"wrk TLS shim: {shim_msg}", flush=True)
        ctx = servers.Context(workdir, cert, args.server_core, args.httpsys_io_threads,
                              args.httpsys_workers)
        pki = None
        if mtls_wanted:
            t0 = time.monotonic()
            pki = certs.make_mtls(workdir / "pki", args.crl_entries)
            print(f"mTLS PKI: CA, server, client, revoked client; CRL with {args.crl_entries:,} "
                  f"entries ({pki.crl_der_path.stat().st_size:,} bytes DER) in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
        doc: dict[str, Any] = {
            "machine": machine_info(),
            "config": {"duration_s": args.duration, "runs": args.runs, "warmup_s": args.warmup,
                       "server_core": args.server_core, "load_core": args.load_core,
                       "wrk_connections": args.connections, "wrk_threads": args.threads,
                       "idle_connections": args.idle_connections,
                       "httpsys_io_threads": args.httpsys_io_threads,
                       "httpsys_workers": args.httpsys_workers, "wrk_tls_shim": shim_msg,
                       "retries": args.retries, "quiet_wait_s": args.quiet_wait,
                       "disturbed_threshold": DISTURBED,
                       "certificate": "ECDSA P-256, self-signed, localhost/127.0.0.1",
                       "mtls_tls": args.mtls_tls, "crl_entries": args.crl_entries,
                       "mtls_pki": "ECDSA P-256 CA issuing the server and client certificates, "
                                   "SHA-256 signatures" if mtls_wanted else None},
            "scenarios": {},
        }
        m = doc["machine"]
        print(f"{m['date']}  {m['cpu_model']} ({m['cpus']} CPUs)  kernel {m['kernel']}  "
              f"{m['openssl']}  Python {m['python']}", flush=True)
        tables = []
        for name in names:
            if SCENARIOS[name].kind == "idle":
                res = idle.run_scenario(SCENARIOS[name], args, ctx, wait_quiet)
                doc["scenarios"][name] = res
                write_json(json_path, doc)
                tables.append(idle.table(name, res, args))
            else:
                res = run_scenario(SCENARIOS[name], args, ctx, shim, pki)
                doc["scenarios"][name] = res
                write_json(json_path, doc)
                tables.append(table(name, res, args))
            print("\n" + tables[-1], flush=True)
        crl = mtls.crl_ratios(doc["scenarios"])
        if crl:
            doc["crl_over_nocrl"] = crl
            write_json(json_path, doc)
            tables.append(mtls.crl_table(crl, args.crl_entries))
            print("\n" + tables[-1], flush=True)
        print(f"\n## Results ({m['date']}, {m['cpu_model']}, {m['openssl']})\n")
        print("\n\n".join(tables))
        print(f"\nJSON: {json_path}")
    finally:
        if not args.keep and args.json is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep or args.json is None:
            print(f"kept {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
