"""The mutual-TLS scenarios of bench/run.py (``mtls``, ``mtls-crl``): who gets what, and the
CRL / no-CRL ratio.

Both scenarios load every server with ``httpsys bench handshake --cert --key`` (full TLS
handshakes presenting a good client certificate, one GET each) and measure the server's CPU per
handshake from /proc, as run.py measures every scenario. The load tool counts handshakes and
responses but not their status, so before the runs each server is probed with Python's ``ssl``
(``check``): the good client must get 200 "Hello, world!", a client without a certificate must be
refused, and the revoked client must be refused with the CRL and served without it. A server
that answers otherwise is reported under the table: its figures would not be for the same work.

Issue 4's target is httpsys's CPU per mTLS handshake with a 100,000-entry CRL at most 1.05x the
same without a CRL (nginx measured 6.2x, granian 3.9x); ``crl_ratios`` computes it per server
when both scenarios ran in the same invocation.
"""

from __future__ import annotations

import http.client
import re
import ssl
from typing import Any

import servers

TARGET_CRL_RATIO = 1.05
ISSUE_RATIOS = {"nginx": 6.2, "granian-wsgi": 3.9}   # what issue 4 measured, CRL / no CRL
WHO = ("client", "none", "revoked")


def probe(port: int, ctx: servers.Context, who: str, tls: str) -> str:
    """One GET / on a new connection presenting ``who``'s certificate ("client", "revoked") or
    none; returns "STATUS detail" (httpsys's 403 substatus, or the body of a 200) or
    "refused: ERROR" when the handshake or the connection failed."""
    assert ctx.mtls is not None
    pki = ctx.mtls.pki
    cert = {"client": (pki.client_cert_path, pki.client_key_path),
            "revoked": (pki.revoked_cert_path, pki.revoked_key_path)}.get(who)
    try:
        info = servers.probe(servers.HOST, port, True, pki.ca_path, timeout=5.0,
                             client_cert=cert, tls_version=tls)
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        reason = re.search(r"\[SSL: ([A-Z0-9_]+)\]", str(e))
        return f"refused ({reason.group(1) if reason else f'{type(e).__name__}: {e}'})"
    body = str(info["body"])
    detail = body if info["status"] == 200 else ""
    if info["status"] == 403:
        i = body.find("HTTP Error 403")   # httpsys: "HTTP Error 403.13. ..."
        detail = body[i + 11:body.find(".", i + 15)] if i >= 0 else ""
    return f"{info['status']} {detail}".strip()


def expected(server: str, crl: bool, who: str) -> tuple[str, ...]:
    """Answers (prefixes of probe()'s) a correct server gives."""
    if who == "client" or (who == "revoked" and not crl):
        return ("200 Hello, world!",)
    if servers.SERVERS[server].is_httpsys:
        return ("403 403.7",) if who == "none" else ("403 403.13",)
    if server == "nginx":
        return ("400",)      # "No required SSL certificate was sent" / "The SSL certificate error"
    return ("refused",)      # granian (rustls) fails the handshake


def check(server: str, run: servers.Running, ctx: servers.Context, tls: str) -> tuple[dict[str, str], list[str]]:
    """Who gets what from one running server: (answers, problems)."""
    assert ctx.mtls is not None
    port = int(run.url.rsplit(":", 1)[1].rstrip("/"))
    answers, problems = {}, []
    for who in WHO:
        got = probe(port, ctx, who, tls)
        answers[who] = got
        want = expected(server, ctx.mtls.crl, who)
        if not got.startswith(want):
            problems.append(f"{server}: {who} certificate over TLS {tls}: got {got!r}, "
                            f"expected {' or '.join(want)}")
    return answers, problems


def checks_line(res: dict[str, Any]) -> str:
    """One line for the table: what each server answered to the three probes."""
    parts = []
    for entry in res["servers"].values():
        a = entry.get("checks")
        if a:
            parts.append(f"{entry['label']}: " + ", ".join(
                f"{who if who != 'none' else 'no'} certificate → {a[who][:60]}" for who in WHO))
    return "Who gets what (Python ssl, before the runs): " + "; ".join(parts) + "." if parts else ""


def crl_ratios(scenarios: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per server, CPU per handshake in mtls-crl ÷ in mtls (medians), when both ran."""
    a, b = scenarios.get("mtls"), scenarios.get("mtls-crl")
    if not a or not b:
        return {}
    out = {}
    for name, eb in b["servers"].items():
        ea = a["servers"].get(name, {})
        if ea.get("median") and eb.get("median"):
            out[name] = {"nocrl_us": ea["median"]["cpu_us_per_request"],
                         "crl_us": eb["median"]["cpu_us_per_request"],
                         "ratio": eb["median"]["cpu_us_per_request"] / ea["median"]["cpu_us_per_request"]}
    return out


def crl_table(ratios: dict[str, dict[str, float]], entries: int) -> str:
    if not ratios:
        return ""
    lines = [f"### mtls-crl ÷ mtls: what the {entries:,}-entry CRL costs each server", "",
             "| server | CPU µs/handshake, no CRL | with the CRL | CRL ÷ no CRL | target / issue 4's figure |",
             "|---|---:|---:|---:|---:|"]
    for name, r in ratios.items():
        defn = servers.SERVERS[name]
        note = (f"≤ {TARGET_CRL_RATIO:.2f}" if defn.is_httpsys
                else f"issue: {ISSUE_RATIOS[name]:.1f}×" if name in ISSUE_RATIOS else "")
        lines.append(f"| {defn.label} | {r['nocrl_us']:,.1f} | {r['crl_us']:,.1f} | {r['ratio']:.2f} | {note} |")
    return "\n".join(lines)
