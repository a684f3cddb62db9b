"""``httpsys http add|delete|show urlacl``: the real console command against a temporary store,
asserting on stdout, stderr, exit codes and the store (reference 1.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_cert import Cli

from httpsys.store import Store

HEADER = "\nURL Reservations:\n-----------------\n\n"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


def state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    with Store.open(cli.store) as st:
        return st.generation(), list(st.execute("SELECT * FROM urlacl ORDER BY url"))


def test_round_trip(cli: Cli) -> None:
    assert cli.ok("http", "show", "urlacl") == HEADER
    generation = state(cli)[0]
    out = cli.ok("http", "add", "urlacl", "url=http://+:80/MyUri/",
                 'user="NT AUTHORITY\\NETWORK SERVICE"')
    assert out == "URL reservation successfully added\n"
    assert state(cli)[0] == generation + 1
    # Positional values, netsh's "[url=]<s> [user=]<s> [listen=]yes|no [delegate=]yes|no".
    cli.ok("http", "add", "urlacl", "https://+:443/api/", "alice", "no", "yes")
    cli.ok("http", "add", "urlacl", "url=https://www.example.test:8443/", "sddl=D:(A;;GX;;;WD)")

    assert cli.ok("http", "show", "urlacl") == HEADER + (
        "    Reserved URL            : http://+:80/MyUri/\n"
        "        User: NT AUTHORITY\\NETWORK SERVICE\n"
        "            Listen: Yes\n"
        "            Delegate: No\n"
        "            SDDL: D:(A;;GX;;;NT AUTHORITY\\NETWORK SERVICE)\n"
        "\n"
        "    Reserved URL            : https://+:443/api/\n"
        "        User: alice\n"
        "            Listen: No\n"
        "            Delegate: Yes\n"
        "            SDDL: D:(A;;GW;;;alice)\n"
        "\n"
        "    Reserved URL            : https://www.example.test:8443/\n"
        "        User: WD\n"
        "            Listen: Yes\n"
        "            Delegate: No\n"
        "            SDDL: D:(A;;GX;;;WD)\n"
        "\n")
    one = cli.ok("http", "show", "urlacl", "url=https://+:443/api/")
    assert one.count("Reserved URL") == 1 and "alice" in one
    assert cli.ok("http", "show", "urlacl", "url=http://+:81/") == HEADER

    out = cli.ok("http", "delete", "urlacl", "url=http://+:80/MyUri/")
    assert out == "URL reservation successfully deleted\n"
    cli.ok("http", "delete", "urlacl", "https://+:443/api/")
    cli.ok("http", "delete", "urlacl", "url=https://WWW.example.test:8443/")  # case-insensitive
    assert cli.ok("http", "show", "urlacl") == HEADER
    assert state(cli) == (generation + 6, [])


def test_add_existing_fails_with_183(cli: Cli) -> None:
    cli.ok("http", "add", "urlacl", "url=http://+:80/x/", "user=alice")
    before = state(cli)
    r = cli("http", "add", "urlacl", "url=http://+:80/X/", "user=bob")
    assert r.rc == 1, r
    assert r.err.splitlines()[:2] == ["Url reservation add failed, Error: 183",
                                      "Cannot create a file when that file already exists."], r
    assert "url=http://+:80/X/" in r.err
    assert state(cli) == before


def test_delete_missing_fails(cli: Cli) -> None:
    before = state(cli)
    r = cli("http", "delete", "urlacl", "url=http://+:80/none/")
    assert r.rc == 1, r
    assert r.err.splitlines()[:2] == ["Url reservation delete failed, Error: 2",
                                      "The system cannot find the file specified."], r
    assert state(cli) == before


@pytest.mark.parametrize(
    "args, param",
    [
        (["url=http://+:80/x"], "url"),  # no trailing slash, and no user/sddl either
        (["url=ftp://+:80/x/", "user=a"], "url"),
        (["url=http://+:80/x/"], "user"),
        (["url=http://+:80/x/", "user=a", "sddl=D:(A;;GX;;;WD)"], "sddl"),
        (["url=http://+:80/x/", "user=a", "listen=maybe"], "listen"),
        (["url=http://+:80/x/", "sddl=D:(A;;GX;;;WD)", "delegate=yes"], "delegate"),
        (["url=http://+:80/x/", "usr=a"], "usr"),
    ],
)
def test_bad_parameter_names_it(cli: Cli, args: list[str], param: str) -> None:
    before = state(cli)
    r = cli("http", "add", "urlacl", *args)
    assert r.rc == 2, r
    assert r.err.startswith("The parameter is incorrect.\n") and param in r.err, r
    assert state(cli) == before
