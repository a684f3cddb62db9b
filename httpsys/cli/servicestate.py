"""``httpsys http show servicestate [view=session|requestq] [verbose=yes|no]``: a snapshot of
every running server, asked over its control socket (httpsys.control).

Reference 1.5 gives netsh's session view; it is followed as far as our model goes: each server
process is one server session, each registered prefix one URL group with its own request
queue. Lines marked (I) are ours (netsh has no such line): the process ID of a session, its
open connections, and a queue's current number of requests. ``verbose=no`` leaves out the
``Properties`` blocks. netsh's ``view=client`` is not supported.

With no server running the header is followed by ``No active server sessions`` (I: the
reference has no transcript of that case). Exit code 0 either way.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import control
from ._kv import SPECS, Param, Spec, choice, yesno

VERBS = ("show",)

#: The dispatcher neither opens nor creates the store for this noun: show gets None.
NEEDS_STORE = False

# The dispatcher validates the arguments against _kv's specs: this noun's spec lives here.
SPECS.setdefault(("show", "servicestate"), Spec(
    "show", "servicestate",
    (Param("view", choice("session", "requestq"), default="session"),
     Param("verbose", yesno, default=True)),
))

NO_SESSIONS = "No active server sessions"
UNNAMED = "Request queue is unnamed."


def _title(view: str) -> str:
    name = "Server Session View" if view == "session" else "Request Queue View"
    title = f"Snapshot of HTTP service state ({name}):"
    return f"{title}\n{'-' * len(title)}\n\n"


def _url(url: str) -> str:
    """netsh shows a registered URL with its scheme upper-cased: ``HTTPS://+:443/app/``."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.upper()}{sep}{rest}"


def _session(state: dict[str, Any], verbose: bool, indent: str = "") -> list[str]:
    lines = [f"{indent}Server session ID: {state['session_id']}",
             f"{indent}    Version: 2.0",
             f"{indent}    State: {state.get('state', 'Active')}",
             f"{indent}    Process ID: {state['pid']}",  # (I)
             f"{indent}    Number of open connections: {state['connections']}"]  # (I)
    if verbose:
        lines += [f"{indent}    Properties:",
                  f"{indent}        Max bandwidth: 4294967295"]
    return lines


def _group(group: dict[str, Any], verbose: bool, indent: str) -> list[str]:
    lines = [f"{indent}URL group ID: {group['id']}",
             f"{indent}    State: {group.get('state', 'Active')}",
             f"{indent}    Request queue name: {group.get('queue') or UNNAMED}"]
    if verbose:
        lines += [f"{indent}    Properties:",
                  f"{indent}        Max bandwidth: inherited",
                  f"{indent}        Max connections: inherited"]
    urls = group.get("urls", [])
    lines += [f"{indent}        Number of registered URLs: {len(urls)}",
              f"{indent}        Registered URLs:"]
    lines += [f"{indent}            {_url(u)}" for u in urls]
    return lines


def _queue(queue: dict[str, Any], indent: str) -> list[str]:
    pids = queue.get("pids", [])
    lines = [f"{indent}Request queue name: {queue.get('name') or UNNAMED}",
             f"{indent}    Version: 2.0",
             f"{indent}    State: {queue.get('state', 'Active')}",
             f"{indent}    Request queue 503 verbosity level: {queue.get('verbosity', 'Basic')}",
             f"{indent}    Max requests: {queue['limit']}",
             f"{indent}    Number of requests: {queue['length']}",  # (I)
             f"{indent}    Number of active processes attached: {len(pids)}",
             f"{indent}    Process IDs:"]
    lines += [f"{indent}        {pid}" for pid in pids]
    return lines


def format_servicestate(states: list[dict[str, Any]], view: str = "session",
                        verbose: bool = True) -> str:
    """The snapshot of ``states`` (each a ``Server.servicestate()``), netsh's layout."""
    out = _title(view)
    if not states:
        return out + NO_SESSIONS + "\n"
    lines: list[str] = []
    if view == "session":
        for state in states:
            lines += _session(state, verbose)
            lines.append("    URL groups:")
            for group in state.get("url_groups", []):
                lines += _group(group, verbose, "    ")
            lines.append("")
        lines.append("Request queues:")
        for state in states:
            for queue in state.get("queues", []):
                lines += _queue(queue, "    ")
                lines.append("")
    else:
        for state in states:
            groups = state.get("url_groups", [])
            for queue in state.get("queues", []):
                lines += _queue(queue, "")
                lines.append("    URL groups:")
                for group in groups:
                    if group.get("queue") == queue.get("name"):
                        lines += _group(group, verbose, "    ")
                lines.append("")
        lines.append("Server sessions:")
        for state in states:
            lines += _session(state, verbose, "    ")
            lines.append("")
    return out + "\n".join(lines) + "\n"


def show(store: Any, values: dict[str, Any]) -> int:
    """Asks every running server (the store is not used)."""

    def skipped(path: Any, why: str) -> None:
        print(f"httpsys http: warning: {path}: {why}", file=sys.stderr)

    answers = control.query_all({"query": "servicestate"}, on_skip=skipped)
    states = [a["servicestate"] for a in answers if isinstance(a.get("servicestate"), dict)]
    sys.stdout.write(format_servicestate(states, values.get("view") or "session",
                                         values.get("verbose", True) is not False))
    return 0
