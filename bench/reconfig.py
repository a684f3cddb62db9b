"""How long until a config store change is live in a running server.

Starts ``python -m httpsys serve`` on a fresh temporary store (or, with ``--in-process``, a Server
and a StoreWatcher in this process), then makes N changes of the binding's certhash, alternating
between two certificates, each one store transaction as ``httpsys http update sslcert`` makes it.
For each change it measures the time from the return of the COMMIT to the end of the first new
TLS handshake that presents the new certificate (handshakes are retried back to back), and prints
median / p99 / max in milliseconds. The target (issue 3) is 100 ms.

    python bench/reconfig.py [--changes 100] [--interval 0.02] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpsys.certstore import CertStore
from httpsys.store import Store

APPID = "{3c1d9a2e-7b4f-4e61-9a8d-5f2e6c7b8a90}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def presented(port: int, ctx: ssl.SSLContext) -> bytes | None:
    """The DER certificate a new handshake presents, or None if the handshake failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)
    except (ssl.SSLError, ConnectionError, OSError):
        return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.02,
                    help="the watcher's poll interval (in-process only; serve uses its default)")
    ap.add_argument("--in-process", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="httpsys-reconfig-"))
    os.chmod(tmp, 0o700)
    path = tmp / "store.db"
    store = Store.open(path)
    certs = CertStore(store)
    thumbs = [certs.new_self_signed("localhost", ip="127.0.0.1") for _ in range(2)]
    ders = [certs.get(t).der for t in thumbs]
    port = free_port()
    ipport = f"0.0.0.0:{port}"
    store.add_sslcert("ipport", ipport, thumbs[0], APPID)

    proc = None
    srv = watcher = None
    if args.in_process:
        from httpsys import Server
        from httpsys.demo import app
        from httpsys.watcher import StoreWatcher

        srv = Server(workers=1)
        srv.add_app(f"https://+:{port}/", app)
        watcher = StoreWatcher(srv, path, interval=args.interval)
        watcher.start()
        srv.start()
    else:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "httpsys", "--store", str(path), "serve",
                                 "--app", f"https://+:{port}/=httpsys.demo:app", "--threads", "1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        deadline = time.monotonic() + 30
        while presented(port, ctx) != ders[0]:
            if time.monotonic() > deadline:
                print("the server did not come up", file=sys.stderr)
                return 1
            time.sleep(0.05)

        latencies: list[float] = []
        handshakes = 0
        for i in range(args.changes):
            new = (i + 1) % 2
            with store.transaction() as c:
                c.execute("UPDATE sslcert SET certhash = ? WHERE kind = 'ipport' AND key = ?",
                          (thumbs[new], ipport))
            t0 = time.perf_counter()
            while True:
                handshakes += 1
                der = presented(port, ctx)
                if der == ders[new]:
                    break
                if time.perf_counter() - t0 > 5:
                    print(f"change {i}: not live after 5 s", file=sys.stderr)
                    return 1
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)  # a little quiet between changes, as between CLI runs
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        if watcher is not None:
            watcher.stop()
        if srv is not None:
            srv.close()
        store.close()

    mode = "in-process" if args.in_process else "serve process"
    print(f"reconfig ({mode}, {args.changes} certhash updates, {handshakes} handshakes): "
          f"median {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
