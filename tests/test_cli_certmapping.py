"""``httpsys http add|update|delete|show certmapping``: the real console command
(``python -m httpsys``) against a store in a temporary folder, with the client certificates of
the ``mtls`` PKI. Every refusal is checked for its exit code, for its message naming the
parameter, and for leaving the store (generation included) as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mtls_pki import MtlsPKI
from test_cli_cert import Cli

from httpsys.store import Store

HEADER = "\nCertificate Mappings:\n---------------------\n\n"
INCORRECT = "The parameter is incorrect.\n"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


def state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    """The generation and every mapping row: 'nothing changed' means equal."""
    with Store.open(cli.store) as st:
        return st.generation(), list(st.execute("SELECT * FROM certmapping ORDER BY position"))


def names_in_order(cli: Cli) -> list[str]:
    with Store.open(cli.store) as st:
        return [r[0] for r in st.execute("SELECT name FROM certmapping ORDER BY position")]


def block(name: str, type_: str, certhash: str = "(null)", subject: str = "(null)",
          rules: str = "(null)", user: str = "(null)", permission: str = "(null)",
          casesensitive: str = "(null)", enabled: str = "Yes") -> str:
    return "".join(f"    {label.ljust(28)} : {value}\n" for label, value in (
        ("Mapping Name", name), ("Type", type_), ("Certificate Hash", certhash),
        ("Certificate Subject", subject), ("Rules", rules), ("User", user),
        ("Permission", permission), ("Case Sensitive", casesensitive),
        ("Enabled", enabled))) + "\n"


def sha1(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()


def test_round_trip(cli: Cli, mtls: MtlsPKI, tmp_path: Path) -> None:
    assert cli.ok("http", "show", "certmapping") == HEADER
    generation = state(cli)[0]
    out = cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
                 f"certfile={mtls.client.cert_file}", "user=alice")
    assert out == "Certificate mapping successfully added\n"
    assert state(cli)[0] == generation + 1
    # A DER file works as well as PEM; keys and type values in any case, values in quotes.
    der_file = tmp_path / "revoked.der"
    der_file.write_bytes(mtls.revoked.der)
    cli.ok("http", "add", "certmapping", "NAME=bob", "Type=OneToOne", f"certfile={der_file}",
           'user="CONTOSO\\bob"', "enabled=no")
    cli.ok("http", "add", "certmapping", "name=contoso", "type=manytoone",
           "user=contoso-users", "rules=subject.o=httpsys mtls tests;ISSUER.cn=*intermediate*",
           "permission=Allow", "casesensitive=no")
    cli.ok("http", "add", "certmapping", "name=blocked", "type=manytoone",
           "rules=Subject.CN=httpsys mtls foreign", "permission=deny")
    assert state(cli)[0] == generation + 4

    subject = mtls.client.cert.subject.rfc4514_string()
    alice = block("alice", "onetoone", sha1(mtls.client.der), subject, user="alice")
    assert cli.ok("http", "show", "certmapping") == HEADER + alice + block(
        "bob", "onetoone", sha1(mtls.revoked.der), mtls.revoked.cert.subject.rfc4514_string(),
        user="CONTOSO\\bob", enabled="No"
    ) + block(
        "contoso", "manytoone", rules="Subject.O=httpsys mtls tests;Issuer.CN=*intermediate*",
        user="contoso-users", permission="Allow", casesensitive="No"
    ) + block(
        "blocked", "manytoone", rules="Subject.CN=httpsys mtls foreign", permission="Deny",
        casesensitive="Yes")
    # One mapping by name (names compare case-insensitively), positional too; none: header.
    assert cli.ok("http", "show", "certmapping", "name=ALICE") == HEADER + alice
    assert cli.ok("http", "show", "certmapping", "alice") == HEADER + alice
    assert cli.ok("http", "show", "certmapping", "name=nobody") == HEADER

    # The one-to-one mapping keeps the exact certificate bytes.
    with Store.open(cli.store) as st:
        der, thumb = st.execute("SELECT certificate, thumbprint FROM certmapping "
                                "WHERE name = 'alice'").fetchone()
    assert bytes(der) == mtls.client.der and thumb == sha1(mtls.client.der)

    # update: only what is given changes, the place in the order stays.
    out = cli.ok("http", "update", "certmapping", "name=Contoso", "casesensitive=yes",
                 "rules=Subject.CN=*")
    assert out == "Certificate mapping successfully updated\n"
    assert cli.ok("http", "show", "certmapping", "name=contoso") == HEADER + block(
        "contoso", "manytoone", rules="Subject.CN=*", user="contoso-users", permission="Allow",
        casesensitive="Yes")
    cli.ok("http", "update", "certmapping", "name=bob", "enabled=yes",
           f"certfile={mtls.client.cert_file}")
    assert f"Certificate Hash             : {sha1(mtls.client.der)}\n" in cli.ok(
        "http", "show", "certmapping", "name=bob")
    # type= changes the kind of mapping: the old kind's certificate goes, the new needs rules.
    cli.ok("http", "update", "certmapping", "name=alice", "type=manytoone",
           "rules=Subject.CN=httpsys mtls client")
    assert cli.ok("http", "show", "certmapping", "name=alice") == HEADER + block(
        "alice", "manytoone", rules="Subject.CN=httpsys mtls client", user="alice",
        permission="Allow", casesensitive="Yes")
    assert names_in_order(cli) == ["alice", "bob", "contoso", "blocked"]

    out = cli.ok("http", "delete", "certmapping", "name=BOB")
    assert out == "Certificate mapping successfully deleted\n"
    cli.ok("http", "add", "certmapping", "name=bob", "type=manytoone", "rules=Subject.C=DE",
           "user=bob")
    # A mapping added again goes last: mappings are evaluated in the order added.
    assert names_in_order(cli) == ["alice", "contoso", "blocked", "bob"]
    cli.ok("http", "delete", "certmapping", "alice")
    assert names_in_order(cli) == ["contoso", "blocked", "bob"]
    assert state(cli)[0] == generation + 10


def test_certhash_takes_the_certificate_from_the_store(cli: Cli, mtls: MtlsPKI,
                                                       tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_bytes(mtls.client.chain_pem + mtls.client.key_pem)
    cli.ok("cert", "import", str(pem))
    thumb = sha1(mtls.client.der)
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certhash={thumb.upper()}", "user=alice")
    shown = cli.ok("http", "show", "certmapping")
    assert f"    Certificate Hash             : {thumb}\n" in shown
    # The mapping holds the certificate itself: deleting it from the store changes nothing.
    cli.ok("cert", "delete", thumb)
    assert cli.ok("http", "show", "certmapping") == shown
    with Store.open(cli.store) as st:
        (der,) = st.execute("SELECT certificate FROM certmapping").fetchone()
    assert bytes(der) == mtls.client.der


def _failure(verb: str, number: int, text: str) -> str:
    prefix = {"add": "add failed", "update": "update failed", "delete": "delete failed"}[verb]
    return f"Certificate mapping {prefix}, Error: {number}\n{text}\n"


def test_add_an_existing_name_fails_with_183(cli: Cli, mtls: MtlsPKI) -> None:
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice")
    before = state(cli)
    for name in ("alice", "ALICE"):
        r = cli("http", "add", "certmapping", f"name={name}", "type=manytoone",
                "rules=Subject.CN=x", "user=x")
        assert r.rc == 1 and r.out == "", r
        assert r.err.startswith(_failure(
            "add", 183, "Cannot create a file when that file already exists.")), r.err
        assert f"name={name}: the mapping 'alice' exists already" in r.err
    assert state(cli) == before


@pytest.mark.parametrize("verb", ["update", "delete"])
def test_update_or_delete_a_missing_name_fails_with_2(cli: Cli, mtls: MtlsPKI, verb: str) -> None:
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice")
    before = state(cli)
    extra = ["user=bob"] if verb == "update" else []
    r = cli("http", verb, "certmapping", "name=bob", *extra)
    assert r.rc == 1 and r.out == "", r
    assert r.err.startswith(_failure(verb, 2, "The system cannot find the file specified.")), r.err
    assert "name=bob: no such certificate mapping" in r.err
    assert state(cli) == before


# (arguments after "http", what stderr says after "The parameter is incorrect."). {client},
# {chain}, {garbage} and {missing} are files. Each names its parameter.
PARAM_ERRORS = [
    (["add", "certmapping", "type=onetoone", "certfile={client}", "user=a"],
     "name= is required for add certmapping"),
    (["add", "certmapping", "name=x", "certfile={client}", "user=a"],
     "type= is required for add certmapping"),
    (["add", "certmapping", "name=x", "type=onetwo", "certfile={client}", "user=a"],
     "type=onetwo: expected onetoone or manytoone"),
    (["add", "certmapping", "name=x", "type=onetoone", "user=a"],
     "type=onetoone needs certfile= or certhash="),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={client}"],
     "user= is required for a type=onetoone mapping"),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={client}", "user=a",
      "certhash=" + "ab" * 20], "give at most one of certfile= or certhash="),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={missing}", "user=a"],
     "certfile={missing}: cannot read it: No such file or directory"),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={chain}", "user=a"],
     ("certfile={chain}: holds 2 certificates; a one-to-one mapping needs a file with exactly "
     "one")),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={garbage}", "user=a"],
     "certfile={garbage}: not a PEM or DER certificate"),
    (["add", "certmapping", "name=x", "type=onetoone", "certhash=12345", "user=a"],
     "certhash=12345: expected the certificate's SHA-1 thumbprint"),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={client}", "user=a",
      "rules=Subject.CN=a"], "rules= is a parameter of type=manytoone mappings"),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={client}", "user=a",
      "permission=deny"], "permission= is a parameter of type=manytoone mappings"),
    (["add", "certmapping", "name=x", "type=onetoone", "certfile={client}", "user=a",
      "casesensitive=no"], "casesensitive= is a parameter of type=manytoone mappings"),
    (["add", "certmapping", "name=x", "type=manytoone", "rules=Subject.CN=a", "user=a",
      "certfile={client}"], "certfile= is a parameter of type=onetoone mappings"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a"],
     "type=manytoone needs rules="),
    (["add", "certmapping", "name=x", "type=manytoone", "rules=Subject.CN=a"],
     "user= is required for a type=manytoone mapping with permission=allow"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.XX=a"],
     ("rules=Subject.XX=a: rule 1 ('Subject.XX=a'): the subfield must be one of CN, OU, O, L, "
     "S, C, not 'XX'")),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a",
      "rules=Subject.CN=a;Owner.CN=b"],
     ("rules=Subject.CN=a;Owner.CN=b: rule 2 ('Owner.CN=b'): the field must be Subject or "
     "Issuer, not 'Owner'")),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN"],
     "rules=Subject.CN: rule 1 ('Subject.CN'): expected Field.SubField=criteria"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=CN=a"],
     "rules=CN=a: rule 1 ('CN=a'): expected Field.SubField=criteria"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a;"],
     "rules=Subject.CN=a;: rule 2 is empty"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN="],
     "rules=Subject.CN=: rule 1 ('Subject.CN='): the criteria after '=' are empty"),
    # httpsys.certmapping's own checks, reported under this command's parameter names.
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a\tb"],
     "rules=: matchCriteria must be a non-empty string without tabs or line breaks"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a\tb", "rules=Subject.CN=a"],
     "user=: userName must be a non-empty string without tabs or line breaks"),
    (["add", "certmapping", "name=x", "type=onetoone", "user=a\nb", "certfile={client}",
      "enabled=no"], "user=: userName must be a non-empty string without tabs or line breaks"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a",
      "permission=maybe"], "permission=maybe: expected allow or deny"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a",
      "casesensitive=maybe"], "casesensitive=maybe: expected yes or no"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a",
      "enabled=1"], "enabled=1: expected yes or no"),
    (["add", "certmapping", "name=x", "type=manytoone", "user=a", "rules=Subject.CN=a",
      "usr=b"], "usr is not a parameter of add certmapping (did you mean 'user'?)"),
    (["add", "certmapping", "name=a\tb", "type=manytoone", "user=a", "rules=Subject.CN=a"],
     "name='a\\tb': a mapping name cannot hold tabs or line breaks"),
    (["add", "certmapping", "name=x", "name=y", "type=manytoone", "user=a",
      "rules=Subject.CN=a"], "name is given more than once"),
    # update: the same checks against what the mapping becomes.
    (["update", "certmapping", "name=alice", "rules=Subject.CN=a"],
     "rules= is a parameter of type=manytoone mappings; mapping 'alice' is type=onetoone"),
    (["update", "certmapping", "name=alice", "type=manytoone"],
     "type=manytoone needs rules="),
    (["update", "certmapping", "name=contoso", "type=onetoone"],
     "type=onetoone needs certfile= or certhash="),
    (["update", "certmapping", "name=contoso", "certhash=" + "ab" * 20],
     "certhash= is a parameter of type=onetoone mappings; mapping 'contoso' is type=manytoone"),
    (["update", "certmapping", "name=denied", "permission=allow"],
     "user= is required for a type=manytoone mapping with permission=allow"),
    (["update", "certmapping", "name=contoso", "rules=Issuer.OO=a"],
     "the subfield must be one of CN, OU, O, L, S, C, not 'OO'"),
    (["update", "certmapping", "type=onetoone"], "name= is required for update certmapping"),
    (["delete", "certmapping"], "name= is required for delete certmapping"),
    (["delete", "certmapping", "name=alice", "user=a"],
     "user is not a parameter of delete certmapping"),
    (["show", "certmapping", "user=a"], "user is not a parameter of show certmapping"),
]


@pytest.mark.parametrize("args, message", PARAM_ERRORS)
def test_bad_parameters_are_named_and_change_nothing(cli: Cli, mtls: MtlsPKI, tmp_path: Path,
                                                     args: list[str], message: str) -> None:
    cli.ok("http", "add", "certmapping", "name=alice", "type=onetoone",
           f"certfile={mtls.client.cert_file}", "user=alice")
    cli.ok("http", "add", "certmapping", "name=contoso", "type=manytoone", "user=contoso",
           "rules=Subject.O=Contoso")
    cli.ok("http", "add", "certmapping", "name=denied", "type=manytoone", "permission=deny",
           "rules=Subject.O=Fabrikam")
    (tmp_path / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n"
                                           b"-----END CERTIFICATE-----\n")
    files = {"client": str(mtls.client.cert_file), "chain": str(mtls.client.chain_file),
             "garbage": str(tmp_path / "garbage.pem"), "missing": str(tmp_path / "nope.pem")}
    before = state(cli)
    r = cli("http", *[a.format(**files) for a in args])
    assert r.rc == 2 and r.out == "", r
    assert r.err.startswith(INCORRECT), r.err
    assert message.format(**files) in r.err, r.err
    assert "Traceback" not in r.err
    assert state(cli) == before


def test_certhash_not_in_the_store_fails_with_1168(cli: Cli) -> None:
    before = state(cli)
    thumb = "ab" * 20
    r = cli("http", "add", "certmapping", "name=x", "type=onetoone", f"certhash={thumb}",
            "user=a")
    assert r.rc == 2 and r.out == "", r
    assert r.err == (_failure("add", 1168, "Element not found.")
                     + f"certhash={thumb}: no certificate with this thumbprint in the "
                     "certificate store (see httpsys cert list; or give certfile=)\n")
    assert state(cli) == before


def test_unknown_verb_names_the_verbs_of_certmapping(cli: Cli) -> None:
    r = cli("http", "set", "certmapping", "name=x")
    assert r.rc == 2 and r.out == ""
    assert "certmapping has no 'set' command" in r.err
    assert "expected one of add, update, delete, show" in r.err
