"""``httpsys http add|delete|show timeout``: the real console command against a temporary
store, asserting on stdout, stderr, exit codes and the store (reference 1.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_cert import Cli

from httpsys.store import Store

HEADER = "\nTimeout Values:\n---------------\n\n"


def shown(idle: int, header_wait: int, entity: int = 120, drain: int = 120, queue: int = 120,
          rate: int = 150) -> str:
    return (HEADER + f"    Idle Connection Timeout (secs) : {idle}\n"
            f"    Header Wait Timeout (secs)     : {header_wait}\n"
            f"    Entity Body Timeout (secs)     : {entity}\n"
            f"    Drain Body Timeout (secs)      : {drain}\n"
            f"    Request Queue Timeout (secs)   : {queue}\n"
            f"    Minimum Send Rate (bytes/sec)  : {rate}\n\n")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


def state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    with Store.open(cli.store) as st:
        return st.generation(), list(st.execute("SELECT * FROM timeouts ORDER BY timeouttype"))


def test_round_trip_and_defaults(cli: Cli) -> None:
    assert cli.ok("http", "show", "timeout") == shown(120, 120)
    generation = state(cli)[0]
    out = cli.ok("http", "add", "timeout", "timeouttype=idleconnectiontimeout", "value=30")
    assert out == "Timeout successfully added\n"
    assert cli.ok("http", "show", "timeout") == shown(30, 120)
    # hex with 0x, positional values, case-insensitive type; add again replaces the value.
    cli.ok("http", "add", "timeout", "HeaderWaitTimeout", "0x40")
    cli.ok("http", "add", "timeout", "timeouttype=idleconnectiontimeout", "value=65535")
    assert cli.ok("http", "show", "timeout") == shown(65535, 64)
    assert state(cli)[0] == generation + 3

    out = cli.ok("http", "delete", "timeout", "timeouttype=idleconnectiontimeout")
    assert out == "Timeout successfully deleted\n"
    assert cli.ok("http", "show", "timeout") == shown(120, 64)  # back to the default
    cli.ok("http", "delete", "timeout", "headerwaittimeout")
    assert cli.ok("http", "show", "timeout") == shown(120, 120)
    assert state(cli) == (generation + 5, [])


@pytest.mark.parametrize(
    "args, param",
    [
        (["timeouttype=idletimeout", "value=5"], "timeouttype"),
        (["timeouttype=headerwaittimeout", "value=65536"], "value"),
        (["timeouttype=requestqueuetimeout", "value=0x10000"], "value"),
        (["timeouttype=minsendrate", "value=4294967296"], "value"),
        (["timeouttype=minsendrates", "value=150"], "timeouttype"),
        (["timeouttype=headerwaittimeout", "value=-1"], "value"),
        (["timeouttype=headerwaittimeout", "value=0xZZ"], "value"),
        (["timeouttype=headerwaittimeout"], "value"),
        (["value=5"], "timeouttype"),
    ],
)
def test_bad_parameter_names_it(cli: Cli, args: list[str], param: str) -> None:
    cli.ok("http", "add", "timeout", "timeouttype=headerwaittimeout", "value=7")
    before = state(cli)
    r = cli("http", "add", "timeout", *args)
    assert r.rc == 2, r
    assert r.err.startswith("The parameter is incorrect.\n") and param in r.err, r
    assert state(cli) == before
    assert cli.ok("http", "show", "timeout") == shown(120, 7)


def test_the_rest_of_httpsys_timeouts(cli: Cli) -> None:
    """entitybodytimeout, drainentitybodytimeout, requestqueuetimeout (seconds, USHORT) and
    minsendrate (bytes a second, ULONG) beside netsh's two."""
    cli.ok("http", "add", "timeout", "timeouttype=entitybodytimeout", "value=5")
    cli.ok("http", "add", "timeout", "timeouttype=DrainEntityBodyTimeout", "value=6")
    cli.ok("http", "add", "timeout", "requestqueuetimeout", "65535")
    cli.ok("http", "add", "timeout", "timeouttype=minsendrate", "value=0xFFFFFFFF")
    assert cli.ok("http", "show", "timeout") == shown(120, 120, 5, 6, 65535, 4294967295)
    assert state(cli)[1] == [("drainentitybodytimeout", 6), ("entitybodytimeout", 5),
                             ("minsendrate", 4294967295), ("requestqueuetimeout", 65535)]
    cli.ok("http", "delete", "timeout", "timeouttype=minsendrate")
    assert cli.ok("http", "show", "timeout") == shown(120, 120, 5, 6, 65535)
