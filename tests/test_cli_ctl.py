"""``httpsys cert ctl add|show|delete``: certificate trust lists (what a binding's
``sslctlidentifier`` names) through the real console command against a store in a temporary
folder. Every refusal is checked for its exit code, its message and for leaving the store
(generation included) as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from mtls_pki import MtlsPKI
from test_cli_cert import Cli

from httpsys.store import Store

MISSING = "0" * 40


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


@pytest.fixture
def thumbs(cli: Cli, mtls: MtlsPKI) -> dict[str, str]:
    """root and foreign_root in ROOT, intermediate in CA, a self-signed server certificate in MY."""
    out = {
        "root": cli.ok("cert", "import", str(mtls.root.cert_file), "--store", "ROOT").strip(),
        "foreign_root": cli.ok("cert", "import", str(mtls.foreign_root.cert_file),
                               "--store", "ROOT").strip(),
        "intermediate": cli.ok("cert", "import", str(mtls.intermediate.cert_file),
                               "--store", "CA").strip(),
        "my": cli.ok("cert", "new", "--dns", "localhost").strip(),
    }
    return out


def ctl_state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    """The generation, the trust lists and the certificates: 'nothing changed' means equal."""
    with Store.open(cli.store) as st:
        rows = list(st.execute("SELECT identifier, thumbprint FROM ctl "
                               "ORDER BY identifier, thumbprint"))
        rows += list(st.execute("SELECT thumbprint, store FROM certificates ORDER BY thumbprint"))
        return st.generation(), rows


def test_add_show_delete(cli: Cli, thumbs: dict[str, str], mtls: MtlsPKI) -> None:
    assert cli.ok("cert", "ctl", "show") == "No trust lists.\n"
    gen = ctl_state(cli)[0]
    out = cli.ok("cert", "ctl", "add", "partners", thumbs["intermediate"],
                 thumbs["foreign_root"].upper())
    assert out == (f"{thumbs['intermediate']}\n{thumbs['foreign_root']}\n"
                   "Trust list partners: 2 certificate(s) added, 2 in the list.\n")
    assert ctl_state(cli)[0] == gen + 1  # one change, one generation
    # Identifiers compare case-insensitively; adding a member again adds nothing.
    assert cli.ok("cert", "ctl", "add", "PARTNERS", thumbs["foreign_root"]) == \
        "Trust list partners: 0 certificate(s) added, 2 in the list.\n"
    cli.ok("cert", "ctl", "add", "others", thumbs["root"])

    subject = {name: getattr(mtls, name).cert.subject.rfc4514_string()
               for name in ("root", "foreign_root", "intermediate")}
    partners = (
        "Trust List           : partners\n"
        f"    Thumbprint       : {thumbs['foreign_root']}\n"
        "    Store            : ROOT\n"
        f"    Subject          : {subject['foreign_root']}\n"
        f"    Thumbprint       : {thumbs['intermediate']}\n"
        "    Store            : CA\n"
        f"    Subject          : {subject['intermediate']}\n"
    )
    assert cli.ok("cert", "ctl", "show", "Partners") == partners
    assert cli.ok("cert", "ctl", "show") == (
        "Trust List           : others\n"
        f"    Thumbprint       : {thumbs['root']}\n"
        "    Store            : ROOT\n"
        f"    Subject          : {subject['root']}\n\n" + partners)

    assert cli.ok("cert", "ctl", "delete", "partners", thumbs["intermediate"]) == \
        "1 certificate(s) removed from trust list partners.\n"
    assert thumbs["intermediate"] not in cli.ok("cert", "ctl", "show", "partners")
    # Out of every list, a certificate can be deleted again.
    cli.ok("cert", "delete", thumbs["intermediate"])
    assert cli.ok("cert", "ctl", "delete", "partners") == \
        "Trust list partners deleted (1 certificate(s)).\n"
    assert cli.ok("cert", "ctl", "delete", "others", thumbs["root"]) == \
        "1 certificate(s) removed from trust list others.\n"
    assert cli.ok("cert", "ctl", "show") == "No trust lists.\n"  # the last member took the list


def test_refusals_name_the_argument_and_change_nothing(cli: Cli, thumbs: dict[str, str]) -> None:
    cli.ok("cert", "ctl", "add", "partners", thumbs["foreign_root"], thumbs["intermediate"])
    err = "httpsys cert: error: "
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("add", "partners", "1234"), 2,
         f"{err}THUMBPRINT: '1234' is not a certificate thumbprint (40 hex digits)\n"),
        # A good thumbprint before a missing one: neither is added.
        (("add", "newlist", thumbs["root"], MISSING), 2,
         f"{err}THUMBPRINT: no certificate with thumbprint {MISSING} in the certificate store\n"),
        (("add", "partners", thumbs["my"]), 2,
         (f"{err}THUMBPRINT: certificate {thumbs['my']} is in store MY; a trust list holds ROOT "
          "and CA certificates only\n")),
        (("add", "two words", thumbs["root"]), 2,
         (f"{err}IDENTIFIER: 'two words' is not a trust list identifier (1-256 characters, "
          "no spaces)\n")),
        (("show", "nope"), 2, f"{err}IDENTIFIER: no trust list 'nope' in the store\n"),
        (("delete", "nope"), 2, f"{err}IDENTIFIER: no trust list 'nope' in the store\n"),
        (("delete", "nope", thumbs["root"]), 2,
         f"{err}IDENTIFIER: no trust list 'nope' in the store\n"),
        # A member before a non-member: neither is removed.
        (("delete", "partners", thumbs["foreign_root"], thumbs["root"]), 2,
         f"{err}THUMBPRINT: certificate {thumbs['root']} is not in the trust list partners\n"),
        (("delete", "partners", "xyz"), 2,
         f"{err}THUMBPRINT: 'xyz' is not a certificate thumbprint (40 hex digits)\n"),
    ]
    before = ctl_state(cli)
    for args, rc, stderr in cases:
        r = cli("cert", "ctl", *args)
        assert (r.rc, r.out, r.err) == (rc, "", stderr), args
        assert ctl_state(cli) == before, args

    for args in (("add", "partners"), ("add",), ("bogus",), ()):
        r = cli("cert", "ctl", *args)
        assert r.rc == 2 and r.out == "" and "usage: httpsys cert ctl" in r.err, args
        assert ctl_state(cli) == before, args

    # A certificate in a trust list cannot be deleted, like one a binding uses.
    r = cli("cert", "delete", thumbs["intermediate"])
    assert (r.rc, r.out) == (1, "")
    assert r.err == (f"{err}THUMBPRINT: certificate {thumbs['intermediate']} is in the trust "
                     f"list partners; remove it from the list first (httpsys cert ctl delete "
                     f"partners {thumbs['intermediate']})\n")
    assert ctl_state(cli) == before
