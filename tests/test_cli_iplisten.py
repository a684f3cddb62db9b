"""``httpsys http add|delete|show iplisten``: the real console command against a temporary
store, asserting on stdout, stderr, exit codes and the store (reference 1.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_cert import Cli

from httpsys.store import Store

HEADER = ("\nIP addresses present in the IP listen list:\n"
          "-------------------------------------------\n\n")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


def state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    with Store.open(cli.store) as st:
        return st.generation(), list(st.execute("SELECT * FROM iplisten ORDER BY address"))


def test_round_trip(cli: Cli) -> None:
    assert cli.ok("http", "show", "iplisten") == HEADER + "\n"
    generation = state(cli)[0]
    assert cli.ok("http", "add", "iplisten", "ipaddress=10.0.0.1") == \
        "IP address successfully added\n"
    cli.ok("http", "add", "iplisten", "fe80:0:0::1")  # positional, stored compressed
    cli.ok("http", "add", "iplisten", "ipaddress=0.0.0.0")
    assert state(cli)[0] == generation + 3
    assert cli.ok("http", "show", "iplisten") == HEADER + "    0.0.0.0\n    10.0.0.1\n    fe80::1\n\n"

    assert cli.ok("http", "delete", "iplisten", "ipaddress=fe80::1") == \
        "IP address successfully deleted\n"
    cli.ok("http", "delete", "iplisten", "ipaddress=10.0.0.1")
    cli.ok("http", "delete", "iplisten", "0.0.0.0")
    assert cli.ok("http", "show", "iplisten") == HEADER + "\n"
    assert state(cli) == (generation + 6, [])


def test_add_existing_and_delete_missing_fail(cli: Cli) -> None:
    cli.ok("http", "add", "iplisten", "ipaddress=::")
    before = state(cli)
    r = cli("http", "add", "iplisten", "ipaddress=0::0")
    assert r.rc == 1, r
    assert r.err.splitlines()[:2] == ["IP address add failed, Error: 183",
                                      "Cannot create a file when that file already exists."], r
    assert "ipaddress=::" in r.err
    r = cli("http", "delete", "iplisten", "ipaddress=10.9.9.9")
    assert r.rc == 1, r
    assert r.err.splitlines()[0] == "IP address delete failed, Error: 2", r
    assert "ipaddress=10.9.9.9" in r.err
    assert state(cli) == before


@pytest.mark.parametrize("args", [["ipaddress=10.0.0.1:80"], ["ipaddress=999.1.1.1"],
                                  ["ipaddress=localhost"], []])
def test_bad_address_names_the_parameter(cli: Cli, args: list[str]) -> None:
    before = state(cli)
    r = cli("http", "add", "iplisten", *args)
    assert r.rc == 2, r
    assert r.err.startswith("The parameter is incorrect.\n") and "ipaddress" in r.err, r
    assert state(cli) == before


def test_show_takes_no_parameters(cli: Cli) -> None:
    r = cli("http", "show", "iplisten", "ipaddress=10.0.0.1")
    assert r.rc == 2 and "takes no parameters" in r.err, r
