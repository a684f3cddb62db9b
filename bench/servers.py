"""Starting and stopping the servers under test, each pinned to one core with ``taskset``.

Every server is described by a ``ServerDef`` in ``SERVERS``: what it needs installed (and the
command that installs it), how to launch it, and which of its processes does the work. Starting
one returns a ``Running`` whose ``pid`` is the process to measure: the nginx worker (not the
master), the granian worker (not the supervisor), the uvicorn or httpsys process itself. All
threads of that process count: /proc/PID/stat's utime and stime are per process.

A new server is one more entry in ``SERVERS`` and one more name in a scenario's list in run.py.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from certs import CertFiles, MtlsFiles

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
EXPECTED_BODY = b"Hello, world!"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """A server failed to start, to answer correctly, or died."""


# ---- what a server needs -------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """Something that must be installed. ``problem()`` returns None when it is there, else what
    is wrong; ``hint`` is the command that fixes it."""

    what: str
    problem: Callable[[], str | None]
    hint: str


def _binary(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def nginx_binary() -> str | None:
    return _binary("nginx", "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")


def _modules(*names: str) -> Callable[[], str | None]:
    def problem() -> str | None:
        absent = [n for n in names if importlib.util.find_spec(n) is None]
        return f"not installed: {', '.join(absent)}" if absent else None
    return problem


def httpsys_core() -> Path | None:
    """The httpsys._core shared object the servers will load, found without importing it."""
    spec = importlib.machinery.PathFinder.find_spec("httpsys", [str(REPO_ROOT), *sys.path])
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("_core*.so"))
        if found:
            return found[0]
    return None


def httpsys_core_info() -> dict[str, object]:
    """Which build of the core is measured: path, size, modification time, sanitizer or not."""
    so = httpsys_core()
    if so is None:
        return {"path": None}
    data = so.read_bytes()
    st = so.stat()
    return {"path": str(so), "bytes": st.st_size,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(st.st_mtime)),
            "sha256": hashlib.sha256(data).hexdigest()[:16],
            "sanitizer": b"__asan_init" in data or b"__ubsan_handle" in data}


def _httpsys_problem() -> str | None:
    so = httpsys_core()
    if so is None:
        return "httpsys._core is not built"
    if httpsys_core_info()["sanitizer"]:
        return (f"{so.name} is a sanitizer build (HTTPSYS_SANITIZE): its figures would mean "
                "nothing; rebuild without HTTPSYS_SANITIZE")
    r = subprocess.run([sys.executable, "-c", "import httpsys"], env=python_env(),
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return f"import httpsys fails: {lines[-1] if lines else r.returncode}"
    return None


HTTPSYS_REQ = Requirement("httpsys", _httpsys_problem,
                          f"cd {REPO_ROOT} && python setup.py -q build_ext --inplace")
NGINX_REQ = Requirement("nginx", lambda: None if nginx_binary() else "no nginx binary",
                        "apt-get install nginx-light")
GRANIAN_REQ = Requirement("granian", _modules("granian"), "pip install granian")


def _granian_mtls_problem() -> str | None:
    """granian verifies client certificates from its CLI since 2.x (--ssl-ca, --ssl-crl,
    --ssl-client-verify); an older one cannot."""
    if importlib.util.find_spec("granian") is None:
        return "not installed: granian"
    r = subprocess.run([sys.executable, "-m", "granian", "--help"], check=False, capture_output=True, text=True)
    absent = [o for o in ("--ssl-ca", "--ssl-crl", "--ssl-client-verify") if o not in r.stdout + r.stderr]
    return f"this granian has no {', '.join(absent)} option" if absent else None


GRANIAN_MTLS_REQ = Requirement("granian with client certificates", _granian_mtls_problem,
                               "pip install -U granian")
UVICORN_REQ = Requirement("uvicorn, uvloop, httptools", _modules("uvicorn", "uvloop", "httptools"),
                          "pip install uvicorn uvloop httptools")


def python_env() -> dict[str, str]:
    """The environment for Python servers: the repository (httpsys) and bench/ (apps) importable."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(BENCH_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---- the launch context and a running server ----------------------------------------------

@dataclass(frozen=True)
class Mtls:
    """Mutual TLS for the mtls scenarios: every server serves the PKI's server certificate,
    requires a client certificate issued by its CA and, with ``crl``, loads its CRL."""

    pki: MtlsFiles
    crl: bool


@dataclass
class Context:
    """What every launch shares: the temp folder, the certificate, the core to pin to."""

    workdir: Path
    certs: CertFiles
    core: int
    httpsys_io_threads: int = 1
    httpsys_workers: int = 1
    # Connections the server must hold open at once (idle scenario); None: each server's default.
    # granian's default (--backpressure = --backlog = 1024 per worker) stops accepting at 1,024.
    max_connections: int | None = None
    mtls: Mtls | None = None   # mtls scenarios: client certificates required (see Mtls)

    def server_cert(self) -> tuple[Path, Path]:
        """(certificate, key) every server serves."""
        if self.mtls is not None:
            return self.mtls.pki.server_cert_path, self.mtls.pki.server_key_path
        return self.certs.cert_path, self.certs.key_path

    def trust(self) -> Path:
        """What a client verifies the server certificate against."""
        return self.mtls.pki.ca_path if self.mtls is not None else self.certs.cert_path

    def client_cert(self) -> tuple[Path, Path] | None:
        """The (certificate, key) a client presents, in the mtls scenarios."""
        if self.mtls is None:
            return None
        return self.mtls.pki.client_cert_path, self.mtls.pki.client_key_path


@dataclass
class Launch:
    """How one launcher wants to be started: the command and how to find the measured PID."""

    argv: list[str]
    env: dict[str, str]
    port: int
    tls: bool
    worker_marker: str | None = None  # measure the single child whose cmdline contains this
    config_text: str | None = None     # kept for the record (nginx)


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    pid: int              # the process whose CPU is measured
    pid_starttime: int    # /proc/PID/stat field 22, to notice a respawned worker
    url: str
    argv: list[str]
    log_path: Path
    probe: dict[str, object] = field(default_factory=dict)
    config_text: str | None = None

    def alive(self) -> bool:
        """The launched process runs and the measured process is the one we started with."""
        if self.proc.poll() is not None:
            return False
        st = proc_stat(self.pid)
        return st is not None and st.starttime == self.pid_starttime and st.state != "Z"

    def log_tail(self, n: int = 20) -> str:
        return log_tail(self.log_path, n)

    def stop(self) -> None:
        """SIGTERM to the process we launched, then SIGKILL to it and the measured PID if needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self.pid != self.proc.pid:
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline:
                st = proc_stat(self.pid)
                if st is None or st.starttime != self.pid_starttime or st.state == "Z":
                    return
                time.sleep(0.1)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---- /proc ---------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    utime: int      # clock ticks, all threads of the process (live and exited)
    stime: int
    threads: int
    starttime: int

    @property
    def cpu_seconds(self) -> float:
        return (self.utime + self.stime) / CLK_TCK


def proc_stat(pid: int) -> ProcStat | None:
    """Parses /proc/PID/stat; None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces or ')': split after the last one.
    rest = raw[raw.rindex(")") + 2:].split()
    return ProcStat(pid=pid, state=rest[0], ppid=int(rest[1]), utime=int(rest[11]),
                    stime=int(rest[12]), threads=int(rest[17]), starttime=int(rest[19]))


@dataclass(frozen=True)
class CoreStat:
    """One cpuN line of /proc/stat, in seconds."""

    busy: float     # user + nice + system + irq + softirq: every task and interrupt on the core
    steal: float    # time the hypervisor ran something else

    def __sub__(self, other: CoreStat) -> CoreStat:
        return CoreStat(self.busy - other.busy, self.steal - other.steal)


def core_stat(core: int) -> CoreStat:
    prefix = f"cpu{core} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            v = [int(x) for x in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
            return CoreStat((user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK)
    raise ServerError(f"no cpu{core} line in /proc/stat")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every live thread of ``pid``."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_by_process() -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, starttime) -> (command name, CPU seconds so far) for every process on the machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        out[(int(entry.name), int(rest[19]))] = (comm, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, by scanning /proc (works without CONFIG_PROC_CHILDREN)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st is not None and st.ppid == pid and st.state != "Z":
                out.append(st.pid)
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children(p))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def log_tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---- launchers ---------------------------------------------------------------------------

def _pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def launch_httpsys(ctx: Context, tls: bool, interface: str) -> Launch:
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "httpsys_server.py"), "--port", str(port),
            "--io-threads", str(ctx.httpsys_io_threads), "--workers", str(ctx.httpsys_workers),
            "--interface", interface]
    cert, key = ctx.server_cert()
    argv += ["--cert", str(cert), "--key", str(key)] if tls else ["--plain"]
    if tls and ctx.mtls is not None:
        argv += ["--client-ca", str(ctx.mtls.pki.ca_path), "--ssl-flags", "Ssl,SslNegotiateCert,SslRequireCert"]
        if ctx.mtls.crl:
            argv += ["--crl", str(ctx.mtls.pki.crl_der_path)]
    return Launch(_pinned(ctx.core, argv), python_env(), port, tls)


def launch_nginx(ctx: Context, tls: bool, interface: str) -> Launch:
    tls_port, plain_port = free_port(), free_port()
    nginx_dir = ctx.workdir / f"nginx-{tls_port}"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    cert, key = ctx.server_cert()
    values = {"@DIR@": str(nginx_dir), "@HOST@": HOST, "@TLS_PORT@": str(tls_port),
              "@PLAIN_PORT@": str(plain_port), "@CERT@": str(cert), "@KEY@": str(key)}
    template = "nginx.conf.tmpl"
    if ctx.mtls is not None:
        template = "nginx_mtls.conf.tmpl"
        values["@CA@"] = str(ctx.mtls.pki.ca_path)
        values["@CRL@"] = f"ssl_crl {ctx.mtls.pki.crl_pem_path};" if ctx.mtls.crl else ""
    text = (BENCH_DIR / template).read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    conf = nginx_dir / "nginx.conf"
    conf.write_text(text)
    binary = nginx_binary() or "nginx"
    argv = [binary, "-p", str(nginx_dir), "-c", str(conf), "-e", str(nginx_dir / "nginx-error.log")]
    return Launch(_pinned(ctx.core, argv), dict(os.environ), tls_port if tls else plain_port, tls,
                  worker_marker="nginx: worker process", config_text=text)


def launch_granian(ctx: Context, tls: bool, interface: str) -> Launch:
    port = free_port()
    target = "apps:app" if interface == "wsgi" else "apps:asgi_app"
    argv = [sys.executable, "-m", "granian", "--interface", interface, "--workers", "1",
            "--blocking-threads", "1", "--runtime-threads", "1", "--http", "1", "--no-ws",
            "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
            "--working-dir", str(BENCH_DIR)]
    if tls:
        cert, key = ctx.server_cert()
        argv += ["--ssl-certificate", str(cert), "--ssl-keyfile", str(key), "--ssl-protocol-min", "tls1.2"]
        if ctx.mtls is not None:
            argv += ["--ssl-ca", str(ctx.mtls.pki.ca_path), "--ssl-client-verify"]
            if ctx.mtls.crl:
                argv += ["--ssl-crl", str(ctx.mtls.pki.crl_pem_path)]
    if ctx.max_connections is not None:
        n = str(max(1024, ctx.max_connections))
        argv += ["--backlog", n, "--backpressure", n]
    argv.append(target)
    return Launch(_pinned(ctx.core, argv), python_env(), port, tls, worker_marker="granian")


def launch_uvicorn(ctx: Context, tls: bool, interface: str) -> Launch:
    if interface != "asgi":
        raise ServerError("uvicorn is run as an ASGI server only")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--workers", "1", "--no-access-log", "--log-level", "warning",
            "--app-dir", str(BENCH_DIR)]
    if tls:
        argv += ["--ssl-certfile", str(ctx.certs.cert_path), "--ssl-keyfile", str(ctx.certs.key_path)]
    argv.append("apps:asgi_app")
    return Launch(_pinned(ctx.core, argv), python_env(), port, tls)


@dataclass(frozen=True)
class ServerDef:
    """One server under test. ``interface`` is what the app is (wsgi, asgi, or native for
    nginx); ``launcher(ctx, tls, interface)`` returns its command line."""

    name: str
    label: str
    interface: str
    requires: tuple[Requirement, ...]
    launcher: Callable[[Context, bool, str], Launch]
    is_httpsys: bool = False
    mtls_requires: tuple[Requirement, ...] = ()   # more, for the mtls scenarios


SERVERS: dict[str, ServerDef] = {d.name: d for d in (
    ServerDef("httpsys", "httpsys (WSGI)", "wsgi", (HTTPSYS_REQ,), launch_httpsys, is_httpsys=True),
    ServerDef("httpsys-asgi", "httpsys (ASGI)", "asgi", (HTTPSYS_REQ,), launch_httpsys,
              is_httpsys=True),
    ServerDef("nginx", "nginx (return 200)", "native", (NGINX_REQ,), launch_nginx),
    ServerDef("granian-wsgi", "granian (WSGI)", "wsgi", (GRANIAN_REQ,), launch_granian,
              mtls_requires=(GRANIAN_MTLS_REQ,)),
    ServerDef("granian-asgi", "granian (ASGI)", "asgi", (GRANIAN_REQ,), launch_granian),
    ServerDef("uvicorn", "uvicorn (ASGI, uvloop, httptools)", "asgi", (UVICORN_REQ,), launch_uvicorn),
)}


def missing(defn: ServerDef, mtls: bool = False) -> list[tuple[Requirement, str]]:
    """The requirements of ``defn`` that are not met, each with what is wrong (``mtls``: also
    what it needs to require client certificates)."""
    out = []
    for r in defn.requires + (defn.mtls_requires if mtls else ()):
        problem = r.problem()
        if problem is not None:
            out.append((r, problem))
    return out


# ---- start, probe, stop --------------------------------------------------------------------

def probe(url_host: str, port: int, tls: bool, cafile: Path | None, timeout: float = 2.0,
          client_cert: tuple[Path, Path] | None = None, tls_version: str | None = None) -> dict[str, object]:
    """One GET / on a fresh connection; the certificate is verified against ``cafile``,
    ``client_cert`` (certificate, key) is presented if given, ``tls_version`` ("1.2", "1.3")
    is the only version offered if given.

    Returns status, headers, body, and (TLS) the protocol and cipher. Raises OSError or
    http.client.HTTPException if the server does not answer.
    """
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        if tls_version is not None:
            v = ssl.TLSVersion.TLSv1_3 if tls_version == "1.3" else ssl.TLSVersion.TLSv1_2
            ctx.minimum_version = ctx.maximum_version = v
        conn = http.client.HTTPSConnection(url_host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        info: dict[str, object] = {"status": resp.status, "headers": resp.getheaders(),
                                   "body": body.decode("latin-1")}
        if tls and conn.sock is not None:
            tls_sock = conn.sock
            assert isinstance(tls_sock, ssl.SSLSocket)
            info["tls"] = f"{tls_sock.version()} {(tls_sock.cipher() or ('?',))[0]}"
        return info
    finally:
        conn.close()


def _find_worker(root: int, marker: str, deadline: float) -> int:
    """The single child of ``root`` whose command line contains ``marker``."""
    while time.monotonic() < deadline:
        found = [c for c in children(root) if marker in cmdline(c)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ServerError(f"expected one worker process under {root}, found {found}")
        time.sleep(0.05)
    raise ServerError(f"no worker process ({marker!r}) appeared under PID {root}")


def start(defn: ServerDef, ctx: Context, tls: bool) -> Running:
    """Launches the server, finds the PID to measure, and returns once a GET / over a new
    (TLS) connection answers 200 with the expected body. Raises ServerError otherwise."""
    launch = defn.launcher(ctx, tls, defn.interface)
    log_path = ctx.workdir / f"{defn.name}-{launch.port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(launch.argv, env=launch.env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(ctx.workdir))
    scheme = "https" if tls else "http"
    url = f"{scheme}://{HOST}:{launch.port}/"
    deadline = time.monotonic() + START_TIMEOUT
    last_error: BaseException | None = None
    try:
        info: dict[str, object] | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(f"{defn.name} exited with {proc.returncode} while starting:\n"
                                  f"{log_tail(log_path)}")
            try:
                info = probe(HOST, launch.port, tls, ctx.trust(), client_cert=ctx.client_cert())
                break
            except (OSError, http.client.HTTPException) as e:
                last_error = e
                time.sleep(0.1)
        if info is None:
            raise ServerError(f"{defn.name} did not answer on {url} within {START_TIMEOUT:.0f}s "
                              f"(last error: {last_error!r}):\n{log_tail(log_path)}")
        if info["status"] != 200 or info["body"] != EXPECTED_BODY.decode():
            raise ServerError(f"{defn.name} answered {info['status']} {info['body']!r} on {url}")
        pid = proc.pid
        if launch.worker_marker is not None:
            pid = _find_worker(proc.pid, launch.worker_marker, deadline)
        st = proc_stat(pid)
        if st is None:
            raise ServerError(f"{defn.name}: the measured process {pid} is gone")
        return Running(defn.name, proc, pid, st.starttime, url, launch.argv, log_path, info,
                       launch.config_text)
    except BaseException:
        _kill(proc)
        raise


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
