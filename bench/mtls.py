"""Server CPU per mutual-TLS handshake, without a CRL and with a 100,000-entry CRL.

    python bench/mtls.py [--runs 3] [--duration 8] [--tls 1.3[,1.2]] [--servers httpsys,nginx,granian]
                         [--crl-entries 100000] [--concurrency 32] [--json OUT]

Issue 4's target: with a 100,000-entry CRL, httpsys's server CPU per mutual-TLS handshake is at
most 1.05x the same handshake without a CRL (nginx measured 6.2x, granian 3.9x). This script
makes a PKI (a CA, a server and two client certificates, a CRL of the CA with 100,000 revoked
serials including one of the two clients), starts every server twice on the server core (without
and with the CRL), checks who answers what, then loads each with bench/mtls_client.c from the
load core: one full handshake per connection, presenting the client certificate, one GET with
``Connection: close``. The figure is the server's CPU (utime+stime of every process of the
server, from /proc) over the run divided by the connections answered. Runs go round-robin over
all (server, CRL) pairs, the order rotating each round; the table shows medians, the CRL / no
CRL ratio per server and httpsys / peer ratios. See bench/README.md ("Mutual TLS").
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import certs  # noqa: E402
import run as harness  # noqa: E402  (run.py: machine info, quiet wait, disturbance check, JSON)
import servers  # noqa: E402

BENCH_DIR = servers.BENCH_DIR
HOST = servers.HOST
CLIENT_SOURCE = BENCH_DIR / "mtls_client.c"
CASES = ("nocrl", "crl")
CASE_LABEL = {"nocrl": "no CRL", "crl": "100k CRL"}
SERVER_LABEL = {"httpsys": "httpsys (WSGI)", "nginx": "nginx (return 200)", "granian": "granian (WSGI)"}
# What the issue measured for the peers (CRL / no CRL, server CPU per mTLS handshake).
ISSUE_RATIOS = {"nginx": 6.2, "granian": 3.9}
TARGET_CRL_RATIO = 1.05
SETTLE_S = 0.25


# ---- what is missing ------------------------------------------------------------------------

def build_client(workdir: Path) -> tuple[Path | None, str]:
    """Compiles mtls_client.c against the system OpenSSL; (path or None, message)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (apt-get install gcc)"
    out = workdir / "mtls_client"
    r = subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(CLIENT_SOURCE), "-lssl", "-lcrypto"],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return None, (f"{cc} failed on {CLIENT_SOURCE.name} (the OpenSSL headers: apt-get install "
                      f"libssl-dev): {r.stderr.strip()[:500]}")
    return out, f"built {out.name} with {cc}"


REQUIREMENTS = {"httpsys": servers.HTTPSYS_REQ, "nginx": servers.NGINX_REQ, "granian": servers.GRANIAN_REQ}


def granian_mtls_problem() -> str | None:
    """granian verifies client certificates from its CLI since 2.x (--ssl-ca, --ssl-crl,
    --ssl-client-verify); an older one cannot."""
    r = subprocess.run([sys.executable, "-m", "granian", "--help"], check=False,
                       capture_output=True, text=True)
    text = r.stdout + r.stderr
    absent = [o for o in ("--ssl-ca", "--ssl-crl", "--ssl-client-verify") if o not in text]
    return f"this granian has no {', '.join(absent)} option (pip install -U granian)" if absent else None


# ---- servers ---------------------------------------------------------------------------------

@dataclass
class Target:
    """One server started for one case (with or without the CRL)."""

    server: str
    case: str
    run: servers.Running
    checks: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.server}/{self.case}"


def launch(server: str, case: str, pki: certs.MtlsFiles, core: int, workdir: Path,
           io_threads: int, workers: int) -> servers.Launch:
    port = servers.free_port()
    crl = case == "crl"
    if server == "httpsys":
        argv = [sys.executable, str(BENCH_DIR / "httpsys_server.py"), "--port", str(port),
                "--io-threads", str(io_threads), "--workers", str(workers),
                "--cert", str(pki.server_cert_path), "--key", str(pki.server_key_path),
                "--client-ca", str(pki.ca_path), "--ssl-flags", "Ssl,SslNegotiateCert,SslRequireCert"]
        if crl:
            argv += ["--crl", str(pki.crl_der_path)]
        return servers.Launch(servers._pinned(core, argv), servers.python_env(), port, True)
    if server == "nginx":
        nginx_dir = workdir / f"nginx-{case}-{port}"
        nginx_dir.mkdir(parents=True, exist_ok=True)
        text = (BENCH_DIR / "nginx_mtls.conf.tmpl").read_text()
        for k, v in {"@DIR@": str(nginx_dir), "@HOST@": HOST, "@TLS_PORT@": str(port),
                     "@CERT@": str(pki.server_cert_path), "@KEY@": str(pki.server_key_path),
                     "@CA@": str(pki.ca_path),
                     "@CRL@": f"ssl_crl {pki.crl_pem_path};" if crl else ""}.items():
            text = text.replace(k, v)
        conf = nginx_dir / "nginx.conf"
        conf.write_text(text)
        argv = [servers.nginx_binary() or "nginx", "-p", str(nginx_dir), "-c", str(conf),
                "-e", str(nginx_dir / "nginx-error.log")]
        return servers.Launch(servers._pinned(core, argv), dict(os.environ), port, True, config_text=text)
    if server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1",
                "--blocking-threads", "1", "--runtime-threads", "1", "--http", "1", "--no-ws",
                "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
                "--working-dir", str(BENCH_DIR),
                "--ssl-certificate", str(pki.server_cert_path), "--ssl-keyfile", str(pki.server_key_path),
                "--ssl-protocol-min", "tls1.2", "--ssl-ca", str(pki.ca_path), "--ssl-client-verify"]
        if crl:
            argv += ["--ssl-crl", str(pki.crl_pem_path)]
        argv.append("apps:app")
        return servers.Launch(servers._pinned(core, argv), servers.python_env(), port, True)
    raise ValueError(server)


def probe(port: int, pki: certs.MtlsFiles, who: str, tls: str = "1.3", timeout: float = 5.0) -> str:
    """One GET / over a new connection presenting ``who``'s certificate ("client", "revoked")
    or none ("none"); returns "STATUS first-line-of-interest" or "refused: ERROR"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_path))
    version = ssl.TLSVersion.TLSv1_3 if tls == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = version
    if who == "client":
        ctx.load_cert_chain(str(pki.client_cert_path), str(pki.client_key_path))
    elif who == "revoked":
        ctx.load_cert_chain(str(pki.revoked_cert_path), str(pki.revoked_key_path))
    conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode("latin-1")
        detail = ""
        if resp.status == 403:
            # httpsys's substatus is in the body: "HTTP Error 403.13. ..."
            i = body.find("HTTP Error 403")
            detail = body[i:body.find(".", i + 15) + 1] if i >= 0 else ""
            detail = detail.replace("HTTP Error ", "")
        elif resp.status == 200:
            detail = body
        return f"{resp.status} {detail}".strip()
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        return f"refused: {type(e).__name__}: {e}"
    finally:
        conn.close()


def expected(server: str, case: str, who: str) -> tuple[str, ...]:
    """Acceptable answers (prefixes of probe()'s result) for a correct server."""
    if who == "client" or (who == "revoked" and case == "nocrl"):
        return ("200 Hello, world!",)
    if server == "httpsys":
        return ("403 403.7",) if who == "none" else ("403 403.13",)
    if server == "nginx":
        return ("400",)   # "No required SSL certificate was sent" / "The SSL certificate error"
    return ("refused",)   # granian (rustls) fails the handshake


def start(server: str, case: str, pki: certs.MtlsFiles, args: argparse.Namespace,
          workdir: Path) -> Target:
    ln = launch(server, case, pki, args.server_core, workdir, args.httpsys_io_threads, args.httpsys_workers)
    log_path = workdir / f"{server}-{case}-{ln.port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(ln.argv, env=ln.env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(workdir))
    deadline = time.monotonic() + servers.START_TIMEOUT
    answer = ""
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise servers.ServerError(f"exited with {proc.returncode} while starting:\n"
                                          f"{servers.log_tail(log_path)}")
            if _port_open(ln.port):
                answer = probe(ln.port, pki, "client")
                if answer.startswith("200"):
                    break
            time.sleep(0.2)
        else:
            raise servers.ServerError(f"no 200 with the client certificate within "
                                      f"{servers.START_TIMEOUT:.0f} s (last: {answer!r}):\n"
                                      f"{servers.log_tail(log_path)}")
        st = servers.proc_stat(proc.pid)
        if st is None:
            raise servers.ServerError("the server process is gone")
        run = servers.Running(f"{server}-{case}", proc, proc.pid, st.starttime,
                              f"https://{HOST}:{ln.port}/", ln.argv, log_path, {}, ln.config_text)
        return Target(server, case, run, {})
    except BaseException:
        servers._kill(proc)
        raise


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def check(t: Target, pki: certs.MtlsFiles, versions: list[str]) -> list[str]:
    """Who gets what; returns warnings for answers a correct server would not give."""
    port = int(t.run.url.rsplit(":", 1)[1].rstrip("/"))
    problems = []
    for tls in versions:
        for who in ("client", "none", "revoked"):
            got = probe(port, pki, who, tls)
            t.checks[f"TLS {tls}, {who} certificate" if who != "none" else f"TLS {tls}, no certificate"] = got
            if not got.startswith(expected(t.server, t.case, who)):
                problems.append(f"{t.key}: TLS {tls}, {who}: got {got!r}, expected "
                                f"{' or '.join(expected(t.server, t.case, who))}")
    return problems


# ---- measuring -------------------------------------------------------------------------------

def _tree_cpu(pids: list[int]) -> dict[int, servers.ProcStat]:
    return {p: s for p in pids if (s := servers.proc_stat(p)) is not None}


def measure(t: Target, client: Path, pki: certs.MtlsFiles, tls: str, seconds: float,
            args: argparse.Namespace) -> dict[str, Any]:
    """One client run against one server: its CPU (all its processes) per answered connection."""
    if not t.run.alive():
        raise harness.ServerDied(f"{t.key} is not running:\n{t.run.log_tail()}")
    port = int(t.run.url.rsplit(":", 1)[1].rstrip("/"))
    tree = servers.descendants(t.run.proc.pid)
    argv = ["taskset", "-c", str(args.load_core), str(client), HOST, str(port), f"{seconds:g}",
            str(args.concurrency), str(pki.client_cert_path), str(pki.client_key_path), tls]
    before = _tree_cpu(tree)
    others0 = servers.cpu_by_process()
    switches0 = sum(servers.context_switches(p) for p in tree)
    srv0, load0 = servers.core_stat(args.server_core), servers.core_stat(args.load_core)
    ours0 = _our_cpu()
    t0 = time.monotonic()
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=seconds + 60)
    client_wall = time.monotonic() - t0
    time.sleep(SETTLE_S)
    wall = time.monotonic() - t0
    srv = servers.core_stat(args.server_core) - srv0
    load = servers.core_stat(args.load_core) - load0
    after = _tree_cpu(tree)
    switches = sum(servers.context_switches(p) for p in tree) - switches0
    if r.returncode != 0:
        raise RuntimeError(f"mtls_client failed ({r.returncode}): {r.stderr.strip()[:500]}")
    out = json.loads(r.stdout)
    if not t.run.alive():
        raise harness.ServerDied(f"{t.key} died during the run:\n{t.run.log_tail()}")
    cpu = sum(a.cpu_seconds - before[p].cpu_seconds for p, a in after.items()
              if p in before and a.starttime == before[p].starttime)
    per_pid = {p: round(a.cpu_seconds - before[p].cpu_seconds, 4) for p, a in after.items() if p in before}
    n = out["completed"]
    ours = _our_cpu() - ours0   # the client (a child) and this script
    others = harness._busiest_others(others0, servers.cpu_by_process(), set(tree) | {os.getpid()})
    server_other = srv.busy - cpu
    load_other = load.busy - ours
    rec = {
        "tls": tls, "server": t.server, "case": t.case,
        "completed": n, "handshakes": out["handshakes"], "resumed": out["resumed"],
        "status": out["status"], "errors": out["errors"],
        "error_total": sum(out["errors"].values()) + sum(v for k, v in out["status"].items() if k != "200"),
        "negotiated": f"{out['version']} {out['cipher']} {out['group']}",
        "client_openssl": out["openssl"],
        "client_elapsed_s": out["elapsed_s"],
        "handshakes_per_s": n / out["elapsed_s"] if out["elapsed_s"] else math.nan,
        "server_cpu_s": cpu,
        "server_cpu_by_pid": per_pid,
        "cpu_us_per_handshake": cpu * 1e6 / n if n else math.nan,
        # the server's CPU over the client's run: 1.0 = it had the core and used all of it
        "server_busy": cpu / out["elapsed_s"] if out["elapsed_s"] else math.nan,
        "server_core_busy": srv.busy / wall if wall else math.nan,
        "load_core_busy": load.busy / wall if wall else math.nan,
        "context_switches_per_handshake": switches / n if n else math.nan,
        "client_and_harness_cpu_us_per_handshake": ours * 1e6 / n if n else math.nan,
        "server_core_other_s": server_other,
        "load_core_other_s": load_other,
        "steal_s": srv.steal + load.steal,
        "other_processes": others,
        "wall_s": wall,
        "client_wall_s": client_wall,
        "disturbed": harness._disturbance(server_other, load_other, srv.steal + load.steal, wall, others),
        "client_argv": argv,
    }
    return rec


def _our_cpu() -> float:
    """CPU seconds of this script and its finished children (the client)."""
    kids, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    return kids.ru_utime + kids.ru_stime + me.ru_utime + me.ru_stime


def _print_run(rec: dict[str, Any], rnd: int) -> None:
    print(f"  run {rnd} TLS {rec['tls']} {rec['server']:8s} {CASE_LABEL[rec['case']]:9s} "
          f"{rec['handshakes_per_s']:7,.0f} hs/s  CPU {rec['cpu_us_per_handshake']:8.1f} us/handshake  "
          f"server busy {rec['server_busy']:.0%}  load core {rec['load_core_busy']:.0%}  "
          f"errors {rec['error_total']}  resumed {rec['resumed']}"
          f"{'  [disturbed]' if rec['disturbed'] else ''}", flush=True)


# ---- results ---------------------------------------------------------------------------------

def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("cpu_us_per_handshake", "handshakes_per_s", "server_busy", "server_core_busy",
            "load_core_busy", "context_switches_per_handshake")
    med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    med["runs"] = len(runs)
    med["range"] = [min(r["cpu_us_per_handshake"] for r in runs), max(r["cpu_us_per_handshake"] for r in runs)]
    med["completed_total"] = sum(r["completed"] for r in runs)
    med["resumed_total"] = sum(r["resumed"] for r in runs)
    med["error_total"] = sum(r["error_total"] for r in runs)
    med["negotiated"] = runs[0]["negotiated"]
    return med


def counted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[int, dict[str, Any]] = {}
    for r in runs:
        last[r["run"]] = r
    return [last[k] for k in sorted(last)]


def analyse(res: dict[str, Any]) -> None:
    """Medians, CRL / no-CRL ratios (of medians and paired by round), httpsys / peer ratios."""
    by = res["results"]
    for entry in by.values():
        if entry["runs"]:
            entry["median"] = summarize(counted(entry["runs"]))
    ratios: dict[str, Any] = {"crl_over_nocrl": {}, "httpsys_over_peer": {}}
    for server in res["servers"]:
        a, b = by.get(f"{server}/nocrl", {}), by.get(f"{server}/crl", {})
        if a.get("median") and b.get("median"):
            ra = {r["run"]: r["cpu_us_per_handshake"] for r in counted(a["runs"])}
            rb = {r["run"]: r["cpu_us_per_handshake"] for r in counted(b["runs"])}
            paired = [rb[k] / ra[k] for k in sorted(ra) if k in rb and ra[k]]
            ratios["crl_over_nocrl"][server] = {
                "of_medians": b["median"]["cpu_us_per_handshake"] / a["median"]["cpu_us_per_handshake"],
                "paired": paired, "paired_median": statistics.median(paired) if paired else math.nan}
    for case in CASES:
        h = by.get(f"httpsys/{case}", {})
        if not h.get("median"):
            continue
        for peer in res["servers"]:
            p = by.get(f"{peer}/{case}", {})
            if peer == "httpsys" or not p.get("median"):
                continue
            ratios["httpsys_over_peer"].setdefault(peer, {})[case] = \
                h["median"]["cpu_us_per_handshake"] / p["median"]["cpu_us_per_handshake"]
    res["ratios"] = ratios


def table(res: dict[str, Any], args: argparse.Namespace, openssl: str) -> str:
    tls = res["tls"]
    by, ratios = res["results"], res.get("ratios", {})
    lines = [(f"### Mutual TLS {tls}: server CPU per full handshake, no CRL vs a "
              f"{args.crl_entries:,}-entry CRL"), "",
             (f"bench/mtls_client.c, {args.concurrency} connections in flight, {args.duration} s per run, "
              f"median of {args.runs} runs; server on core {args.server_core}, client on core "
              f"{args.load_core}; {openssl}."), "",
             (f"| server | CPU µs/handshake, no CRL | CPU µs/handshake, {CASE_LABEL['crl']} | CRL ÷ no CRL | "
              "paired by round | handshakes/s (no CRL / CRL) | server busy (no CRL / CRL) | "
              "load core busy | errors | target / issue's figure |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for server in res["servers"]:
        a, b = by.get(f"{server}/nocrl", {}).get("median"), by.get(f"{server}/crl", {}).get("median")
        if a is None and b is None:
            lines.append(f"| {SERVER_LABEL[server]} | failed: see warnings |" + " |" * 8)
            continue

        def f(m: dict[str, Any] | None, k: str, fmt: str) -> str:
            return format(m[k], fmt) if m else "—"
        cr = ratios.get("crl_over_nocrl", {}).get(server)
        target = (f"≤ {TARGET_CRL_RATIO:.2f}" if server == "httpsys"
                  else f"issue: {ISSUE_RATIOS[server]:.1f}×" if server in ISSUE_RATIOS else "")
        lines.append("| " + " | ".join([
            SERVER_LABEL[server], f(a, "cpu_us_per_handshake", ",.1f"), f(b, "cpu_us_per_handshake", ",.1f"),
            f"{cr['of_medians']:.2f}" if cr else "—",
            (", ".join(f"{x:.2f}" for x in cr["paired"]) + f" (median {cr['paired_median']:.2f})") if cr else "—",
            f"{f(a, 'handshakes_per_s', ',.0f')} / {f(b, 'handshakes_per_s', ',.0f')}",
            f"{f(a, 'server_busy', '.0%')} / {f(b, 'server_busy', '.0%')}",
            f"{f(a, 'load_core_busy', '.0%')} / {f(b, 'load_core_busy', '.0%')}",
            str((a or {}).get("error_total", 0) + (b or {}).get("error_total", 0)),
            target]) + " |")
    for server, why in res["skipped"].items():
        lines.append(f"| {SERVER_LABEL[server]} | skipped: {why.splitlines()[0]} |" + " |" * 8)
    peers = ratios.get("httpsys_over_peer", {})
    if peers:
        lines += ["", "httpsys ÷ peer (CPU per handshake, medians): " + "; ".join(
            f"{SERVER_LABEL[p]}: " + ", ".join(f"{CASE_LABEL[c]} {v:.2f}" for c, v in cases.items())
            for p, cases in peers.items()) + "."]
    neg = sorted({e["median"]["negotiated"] for e in by.values() if e.get("median")})
    resumed = sum(e["median"]["resumed_total"] for e in by.values() if e.get("median"))
    total = sum(e["median"]["completed_total"] for e in by.values() if e.get("median"))
    lines += ["", f"Negotiated: {', '.join(neg)}; {total:,} connections measured, {resumed} resumed."]
    if res["warnings"]:
        lines += [""] + [f"- warning: {w}" for w in res["warnings"]]
    return "\n".join(lines)


def checks_table(targets: list[Target]) -> str:
    cols = sorted({k for t in targets for k in t.checks}, key=lambda k: (k.split(",")[0], k))
    lines = ["| server, case | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for t in targets:
        lines.append(f"| {SERVER_LABEL[t.server]}, {CASE_LABEL[t.case]} | " +
                     " | ".join(t.checks.get(c, "").replace("|", "/")[:60] for c in cols) + " |")
    return "\n".join(lines)


def _warn(res: dict[str, Any]) -> None:
    for key, entry in res["results"].items():
        med = entry.get("median")
        if not med:
            continue
        if med["error_total"]:
            res["warnings"].append(f"{key}: {med['error_total']} failed connections or non-200 answers")
        if med["resumed_total"]:
            res["warnings"].append(f"{key}: {med['resumed_total']} handshakes were resumed")
        lo, hi = med["range"]
        if lo > 0 and hi / lo > 1.15:
            res["warnings"].append(f"{key}: CPU per handshake varied {lo:.1f}-{hi:.1f} us across runs")
        if med["server_busy"] < 0.85:
            res["warnings"].append(f"{key}: the server was not saturated (busy {med['server_busy']:.0%} "
                                   f"of its core; load core {med['load_core_busy']:.0%})")
        for r in counted(entry["runs"]):
            if r["disturbed"]:
                res["warnings"].append(f"{key} run {r['run']} counted although disturbed: {r['disturbed']}")


# ---- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs per server and case; the table shows the median")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per run (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--tls", default="1.3", help="TLS versions to measure, e.g. 1.3 or 1.3,1.2")
    p.add_argument("--servers", default="httpsys,nginx,granian", help="servers to run (default all three)")
    p.add_argument("--crl-entries", type=int, default=100_000, help="serials in the CRL (default 100000)")
    p.add_argument("--concurrency", type=int, default=32, help="connections the client keeps in flight")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    p.add_argument("--httpsys-io-threads", type=int, default=1)
    p.add_argument("--httpsys-workers", type=int, default=1)
    p.add_argument("--retries", type=int, default=3, help="how many disturbed runs to measure again, per target")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="before each run, wait up to this many seconds for both cores to go idle")
    p.add_argument("--json", type=Path, help="write every run, the medians and the machine here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (PKI, configs, logs)")
    args = p.parse_args(argv)

    if args.crl_entries != 100_000:
        CASE_LABEL["crl"] = f"{args.crl_entries:,}-entry CRL"
    versions = [v.strip() for v in args.tls.split(",") if v.strip()]
    if not versions or any(v not in ("1.2", "1.3") for v in versions):
        p.error("--tls takes 1.2 and/or 1.3")
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if any(n not in SERVER_LABEL for n in names):
        p.error(f"--servers: choose from {', '.join(SERVER_LABEL)}")
    if args.runs < 1 or args.duration <= 0 or args.crl_entries < 1:
        p.error("--runs, --duration and --crl-entries must be positive")
    problems = [m for m in harness.preflight(args) if not m.startswith("wrk")]
    if problems:
        for m in problems:
            print(f"error: {m}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.load_core})

    skipped: dict[str, str] = {}
    for n in names:
        why = REQUIREMENTS[n].problem()
        if why is None and n == "granian":
            why = granian_mtls_problem()
        if why is not None:
            skipped[n] = f"{why} ({REQUIREMENTS[n].hint})"
            print(f"missing: {n}: {skipped[n]}; skipped", flush=True)
    names = [n for n in names if n not in skipped]

    workdir = Path(tempfile.mkdtemp(prefix="httpsys-mtls-"))
    json_path = args.json or workdir / "results.json"
    targets: list[Target] = []
    try:
        client, msg = build_client(workdir)
        print(f"client: {msg}", flush=True)
        if client is None:
            print(f"error: {msg}", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        pki = certs.make_mtls(workdir / "pki", args.crl_entries)
        print(f"PKI: CA, server, client, revoked client; CRL with {args.crl_entries:,} entries "
              f"({pki.crl_der_path.stat().st_size:,} bytes DER) in {time.monotonic() - t0:.1f} s", flush=True)
        machine = harness.machine_info()
        machine["granian"] = harness._first_line([sys.executable, "-m", "granian", "--version"])
        doc: dict[str, Any] = {
            "machine": machine,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "pki": {"key": "ECDSA P-256 everywhere, SHA-256 signatures",
                    "crl_entries": args.crl_entries, "crl_der_bytes": pki.crl_der_path.stat().st_size,
                    "client_serial": hex(pki.client_serial), "revoked_serial": hex(pki.revoked_serial)},
            "skipped": skipped, "checks": {}, "tls": {}}
        print(f"{machine['date']}  {machine['cpu_model']} ({machine['cpus']} CPUs)  kernel {machine['kernel']}  "
              f"{machine['openssl']}  Python {machine['python']}", flush=True)

        warnings: list[str] = []
        for n in names:
            for case in CASES:
                try:
                    t = start(n, case, pki, args, workdir)
                except servers.ServerError as e:
                    skipped.setdefault(n, f"{case}: failed to start: {e}")
                    print(f"  skip {n} ({case}): failed to start: {e}", flush=True)
                    continue
                targets.append(t)
                warnings += check(t, pki, versions)
                doc["checks"][t.key] = {"argv": t.run.argv, "answers": t.checks,
                                        "config": t.run.config_text}
                print(f"  started {t.key} on {t.run.url} (PID {t.run.proc.pid}): " +
                      "; ".join(f"{k}: {v[:50]}" for k, v in t.checks.items()), flush=True)
        for w in warnings:
            print(f"  !! {w}", flush=True)
        print("\nWho gets what:\n\n" + checks_table(targets), flush=True)

        tables = []
        for tls in versions:
            res: dict[str, Any] = {"tls": tls, "servers": [n for n in names if any(t.server == n for t in targets)],
                                   "skipped": dict(skipped), "warnings": list(warnings),
                                   "results": {t.key: {"runs": []} for t in targets}}
            doc["tls"][tls] = res
            live = list(targets)
            print(f"\n=== TLS {tls}", flush=True)
            if args.warmup > 0:
                for t in list(live):
                    try:
                        measure(t, client, pki, tls, args.warmup, args)
                    except (harness.ServerDied, RuntimeError) as e:
                        res["warnings"].append(f"{t.key}: failed in warm-up: {str(e).splitlines()[0]}")
                        live.remove(t)
            retries = {t.key: args.retries for t in live}
            for i in range(args.runs):
                order = live[i % len(live):] + live[:i % len(live)] if live else []
                for t in order:
                    while t in live:
                        waited = harness.wait_quiet(args)
                        try:
                            rec = measure(t, client, pki, tls, args.duration, args)
                        except (harness.ServerDied, RuntimeError) as e:
                            res["warnings"].append(f"{t.key}: run {i + 1}: {str(e).splitlines()[0]}")
                            print(f"  !! {t.key}: {e}", flush=True)
                            live.remove(t)
                            break
                        rec["run"], rec["waited_for_quiet_s"] = i + 1, round(waited, 1)
                        res["results"][t.key]["runs"].append(rec)
                        _print_run(rec, i + 1)
                        if not rec["disturbed"] or retries[t.key] == 0:
                            break
                        retries[t.key] -= 1
                        print(f"    disturbed ({rec['disturbed']}); measuring again", flush=True)
            analyse(res)
            _warn(res)
            harness.write_json(json_path, doc)
            tables.append(table(res, args, machine["openssl"]))
            print("\n" + tables[-1], flush=True)
        print(f"\n## Results ({machine['date']}, {machine['cpu_model']}, {machine['openssl']})\n")
        print("Who gets what (probes with Python's ssl before the runs):\n\n" + checks_table(targets) + "\n")
        print("\n\n".join(tables))
        harness.write_json(json_path, doc)
        print(f"\nJSON: {json_path}")
    finally:
        for t in targets:
            t.run.stop()
        if not args.keep and args.json is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
