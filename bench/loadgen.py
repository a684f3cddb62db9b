"""Driving the load: wrk (the command line, the TLS-session shim, parsing what wrk prints) and,
for the mtls scenarios, ``httpsys bench handshake`` (csrc/hsbench.c) with a client certificate.

wrk runs pinned to the load core. Over TLS it runs with bench/wrk_tls.c preloaded (built on
first use with the system C compiler), which counts the handshakes wrk completes and how many
were resumed, and with ``resume=False`` makes every handshake a full one (wrk itself has no
option for it; see wrk_tls.c and README.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPORT_SCRIPT = BENCH_DIR / "wrk_report.lua"
SHIM_SOURCE = BENCH_DIR / "wrk_tls.c"


class WrkError(RuntimeError):
    """wrk failed or printed nothing we could read."""


def build_shim(workdir: Path) -> tuple[Path | None, str]:
    """Compiles wrk_tls.c into ``workdir``; returns (path or None, message)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (apt-get install gcc)"
    out = workdir / "wrk_tls.so"
    r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", str(out),
                        str(SHIM_SOURCE), "-ldl"], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"{cc} failed on {SHIM_SOURCE.name}: {r.stderr.strip()[:500]}"
    return out, f"built {out.name} with {cc}"


@dataclass
class WrkResult:
    """What one load run did. For ``httpsys bench handshake`` (run_handshake): ``requests`` are
    its completed handshakes, the percentiles are TLS handshake latency from connect(), the
    errors its kinds (connect, tls, io, timeout), and ``report`` its whole JSON report."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    tls: dict[str, str] = field(default_factory=dict)   # from the shim: handshakes, resumed, ...
    stdout: str = ""
    report: dict[str, object] = field(default_factory=dict)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def command(url: str, *, core: int, threads: int, connections: int, duration_s: int,
            connection_close: bool, timeout_s: int = 4) -> list[str]:
    """wrk's command line; wrk reads durations as whole numbers (``-d0.5s`` is a usage error)."""
    argv = ["taskset", "-c", str(core), "wrk", f"-t{threads}", f"-c{connections}",
            f"-d{duration_s}s", f"--timeout={timeout_s}s", "--latency", "-s", str(REPORT_SCRIPT)]
    if connection_close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    return argv


def run(argv: list[str], *, shim: Path | None, resume: bool, stats_path: Path,
        timeout_s: float) -> WrkResult:
    """Runs wrk to completion and parses its output."""
    env = dict(os.environ)
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
        env["WRK_TLS_RESUME"] = "1" if resume else "0"
        env["WRK_TLS_STATS"] = str(stats_path)
        stats_path.unlink(missing_ok=True)
    r = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise WrkError(f"wrk exited with {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    result = parse(r.stdout)
    if shim is not None and stats_path.exists():
        result.tls = dict(kv.split("=", 1) for kv in stats_path.read_text().split())
    return result


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise WrkError(f"cannot read the duration {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse(out: str) -> WrkResult:
    """Reads the BENCH_RESULT line of wrk_report.lua (exact figures); falls back to wrk's
    --latency text (rounded) if the line is missing."""
    m = re.search(r"^BENCH_RESULT (.*)$", out, re.MULTILINE)
    if m:
        f = {k: float(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split())}
        requests, duration = int(f["requests"]), f["duration_us"] / 1e6
        errors = {k: int(f[k]) for k in ("connect", "read", "write", "timeout", "status")}
        return WrkResult(requests, duration, requests / duration if duration else 0.0,
                         f["p50_us"] / 1e3, f["p90_us"] / 1e3, f["p99_us"] / 1e3,
                         f["max_us"] / 1e3, errors, stdout=out)
    return _parse_text(out)


def _parse_text(out: str) -> WrkResult:
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", out)
    if not m:
        raise WrkError(f"no request count in wrk's output:\n{out}")
    requests, duration = int(m.group(1)), _ms(m.group(2)) / 1e3
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.MULTILINE)}
    lat = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    errors = dict.fromkeys(("connect", "read", "write", "timeout", "status"), 0)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors.update(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["status"] = int(non2xx.group(1))
    return WrkResult(requests, duration, requests / duration if duration else 0.0,
                     pct.get("50", float("nan")), pct.get("90", float("nan")),
                     pct.get("99", float("nan")), _ms(lat.group(1)) if lat else float("nan"),
                     errors, stdout=out)


# ---- httpsys bench handshake ---------------------------------------------------------------

def handshake_command(url: str, *, core: int, connections: int, duration_s: int, tls: str,
                      cert: Path, key: Path, json_out: Path) -> list[str]:
    """``httpsys bench handshake`` pinned to the load core: full handshakes (no resumption),
    presenting ``cert``. Without ``--cafile``: the client does not verify the server's
    certificate (the probes before the runs do), which leaves it more of its core for load,
    as wrk does not verify either."""
    return ["taskset", "-c", str(core), sys.executable, "-m", "httpsys", "bench", "handshake", url,
            "--connections", str(connections), "--duration", str(duration_s), "--tls", tls,
            "--resume", "0", "--cert", str(cert), "--key", str(key), "--json", str(json_out)]


def run_handshake(argv: list[str], *, env: dict[str, str], json_out: Path, timeout_s: float) -> WrkResult:
    """Runs the handshake tool to completion; its report mapped onto WrkResult's fields."""
    json_out.unlink(missing_ok=True)
    r = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode not in (0, 1) or not json_out.exists():   # 1: no handshake completed
        raise WrkError(f"httpsys bench handshake exited with {r.returncode}: "
                       f"{r.stderr.strip() or r.stdout.strip()}")
    rep = json.loads(json_out.read_text())
    hs = rep["latency_ms"].get("handshake") or {}
    nan = float("nan")
    # A connection that failed after its handshake (refused certificate, no response) is in
    # "io" or "timeout"; one the end of the run cut is not an error.
    errors = {k: int(v) for k, v in rep["errors"].items()}
    return WrkResult(int(rep["handshakes"]), float(rep["elapsed_s"]), float(rep["handshakes_per_s"]),
                     hs.get("p50", nan), hs.get("p90", nan), hs.get("p99", nan), hs.get("max", nan),
                     errors, tls={"handshakes": str(rep["handshakes"]), "resumed": str(rep["resumed"]),
                                  "full": str(rep["full"])},
                     stdout=r.stdout, report=rep)
