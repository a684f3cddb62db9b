"""``httpsys http add|update|delete|show sslcert``: the real console command (``python -m
httpsys``) against a temporary store, asserting on stdout, stderr, exit codes and the store.

Golden output is reference 1.4's ``netsh http show sslcert`` transcript with this test's
binding, certificate and application ID put in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PKI
from test_cli_cert import Cli, write

from httpsys.store import Store

APPID = "{214124cd-d05b-4309-9af9-9caa44b2b74a}"
OTHER_APPID = "{00112233-4455-6677-8899-aabbccddeeff}"

HEADER = "\nSSL Certificate bindings:\n-------------------------\n\n"

# Reference 1.4, verbatim but for the three values, which the test fills in.
GOLDEN_BLOCK = """\
    {label:<28} : {key}
    Certificate Hash             : {thumb}
    Application ID               : {appid}
    Certificate Store Name       : MY
    Verify Client Certificate Revocation : Enabled
    Verify Revocation Using Cached Client Certificate Only : Disabled
    Usage Check                  : Enabled
    Revocation Freshness Time    : 0
    URL Retrieval Timeout        : 0
    Ctl Identifier               : (null)
    Ctl Store Name               : (null)
    DS Mapper Usage              : Disabled
    Negotiate Client Certificate : Disabled
    Reject Connections           : Disabled
    Disable HTTP2                : Not Set
    Disable QUIC                 : Not Set
    Disable TLS1.2               : Not Set
    Disable TLS1.3               : Not Set
    Disable OCSP Stapling        : Not Set
    Enable Token Binding         : Not Set
    Log Extended Events          : Not Set
    Disable Legacy TLS Versions  : Not Set
    Enable Session Ticket        : Not Set
    Disable Session ID           : Not Set
    Enable Caching Client Hello  : Not Set
 Extended Properties:
    PropertyId                   : 0
    Receive Window               : 1048576
 Extended Properties:
    PropertyId                   : 1
    Max Settings Per Frame       : 2796202
    Max Settings Per Minute      : 4294967295
"""


def golden(key: str, thumb: str, appid: str = APPID, label: str = "IP:port") -> str:
    return GOLDEN_BLOCK.format(label=label, key=key, thumb=thumb, appid=appid)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "state" / "store.db", tmp_path)


@pytest.fixture
def thumb(cli: Cli) -> str:
    """A self-signed MY certificate with its key, made by ``httpsys cert new``."""
    return cli.ok("cert", "new", "--dns", "localhost").strip()


def state(cli: Cli) -> tuple[int, list[tuple[object, ...]]]:
    """The generation and every binding: 'nothing changed' means equal."""
    with Store.open(cli.store) as st:
        return st.generation(), list(st.execute("SELECT * FROM sslcert ORDER BY kind, key"))


def fields(out: str) -> dict[str, str]:
    """The ``label : value`` lines of a single-binding ``show sslcert``."""
    return {label.strip(): value for label, _, value in
            (line.partition(" : ") for line in out.splitlines() if " : " in line)}


def add(cli: Cli, thumb: str, key: str = "ipport=0.0.0.0:44307", *extra: str) -> None:
    out = cli.ok("http", "add", "sslcert", key, f"certhash={thumb}", f"appid={APPID}", *extra)
    assert out == "SSL Certificate successfully added\n"


# --------------------------------------------------------------------------------------------
# add / show


def test_add_then_show_prints_netsh_layout(cli: Cli, thumb: str) -> None:
    assert cli.ok("http", "show", "sslcert") == HEADER  # nothing bound yet
    before, _ = state(cli)
    add(cli, thumb)
    assert state(cli)[0] == before + 1  # one change, one generation
    block = golden("0.0.0.0:44307", thumb)
    assert cli.ok("http", "show", "sslcert") == HEADER + block + "\n"
    assert cli.ok("http", "show", "sslcert", "ipport=0.0.0.0:44307") == HEADER + block + "\n"
    # A key with no binding: the header alone, like netsh.
    assert cli.ok("http", "show", "sslcert", "ipport=0.0.0.0:1") == HEADER
    # The certificate now names its binding.
    assert "ipport=0.0.0.0:44307" in cli.ok("cert", "show", thumb)


def test_add_imported_certificate_hostnameport_and_ipv6(cli: Cli, pki: PKI) -> None:
    path = write(cli.tmp / "leaf.pem", pki.leaf.chain_pem + pki.leaf.key_pem)
    (thumb,) = cli.ok("cert", "import", path).split()
    # netsh's spellings: upper-case thumbprint, GUID without braces, keys in any case.
    out = cli.ok("http", "add", "sslcert", "HostNamePort=WWW.Example.test:443",
                 f"CERTHASH={thumb.upper()}", f"appid={OTHER_APPID[1:-1]}")
    assert out == "SSL Certificate successfully added\n"
    add(cli, thumb, "ipport=[::]:8443")
    shown = cli.ok("http", "show", "sslcert")
    # ipport bindings first, then hostnameport, as netsh lists them.
    assert shown == (HEADER + golden("[::]:8443", thumb) + "\n"
                     + golden("www.example.test:443", thumb, OTHER_APPID, "Hostname:port") + "\n")


def test_add_every_parameter(cli: Cli, thumb: str) -> None:
    add(cli, thumb, "ipport=10.0.0.1:443",
        "certstorename=My", "verifyclientcertrevocation=disable",
        "verifyrevocationwithcachedclientcertonly=enable", "usagecheck=disable",
        "revocationfreshnesstime=0x40", "urlretrievaltimeout=15000",
        "sslctlidentifier=Trusted", 'sslctlstorename="CA"', "dsmapperusage=enable",
        "clientcertnegotiation=enable", "reject=enable", "disablehttp2=enable",
        "disablequic=enable", "disabletls12=enable", "disabletls13=enable",
        "disableocspstapling=enable", "enabletokenbinding=enable", "logextendedevents=enable",
        "disablelegacytls=enable", "enablesessionticket=enable", "disablesessionid=enable")
    f = fields(cli.ok("http", "show", "sslcert", "ipport=10.0.0.1:443"))
    assert f["Certificate Store Name"] == "My"
    assert f["Verify Client Certificate Revocation"] == "Disabled"
    assert f["Verify Revocation Using Cached Client Certificate Only"] == "Enabled"
    assert f["Usage Check"] == "Disabled"
    assert f["Revocation Freshness Time"] == "64"
    assert f["URL Retrieval Timeout"] == "15000"
    assert f["Ctl Identifier"] == "Trusted"
    assert f["Ctl Store Name"] == "CA"
    for label in ("DS Mapper Usage", "Negotiate Client Certificate", "Reject Connections"):
        assert f[label] == "Enabled", label
    for label in ("Disable HTTP2", "Disable QUIC", "Disable TLS1.2", "Disable TLS1.3",
                  "Disable OCSP Stapling", "Enable Token Binding", "Log Extended Events",
                  "Disable Legacy TLS Versions", "Enable Session Ticket", "Disable Session ID"):
        assert f[label] == "Set", label
    assert f["Enable Caching Client Hello"] == "Not Set"  # no netsh parameter sets it


# --------------------------------------------------------------------------------------------
# Refusals: each names its parameter and changes nothing


def test_add_existing_key_fails_with_183(cli: Cli, thumb: str) -> None:
    add(cli, thumb)
    before = state(cli)
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:44307", f"certhash={thumb}",
            f"appid={OTHER_APPID}")
    assert r.rc == 1, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[:2] == ["SSL Certificate add failed, Error: 183",
                         "Cannot create a file when that file already exists."], r
    assert "ipport=0.0.0.0:44307" in lines[2] and "update sslcert" in lines[2]
    assert state(cli) == before
    # The binding is the first one, untouched.
    assert fields(cli.ok("http", "show", "sslcert"))["Application ID"] == APPID


@pytest.mark.parametrize(
    "args, param, why",
    [
        (["ipport=0.0.0:443"], "ipport", "is not an IPv4 address"),
        (["ipport=0.0.0.0"], "ipport", "IP:PORT"),
        (["ipport=::1:443"], "ipport", "brackets"),
        (["ipport=0.0.0.0:99999"], "ipport", "port"),
        (["hostnameport=bad_name:443"], "hostnameport", "not a valid host name"),
        (["ipport=0.0.0.0:443", "appid={1234}"], "appid", "GUID"),
        (["ipport=0.0.0.0:443", "appid=214124cd-d05b-4309-9af9-9caa44b2b74a}"], "appid", "GUID"),
        (["ipport=0.0.0.0:443", "certhash=abc"], "certhash", "40 hexadecimal digits"),
        (["ipport=0.0.0.0:443", "reject=maybe"], "reject", "enable or disable"),
        (["ipport=0.0.0.0:443", "revocationfreshnesstime=-1"], "revocationfreshnesstime",
         "integer"),
        (["ipport=0.0.0.0:443", "nosuchparam=1"], "nosuchparam", "not a parameter"),
        (["ipport=0.0.0.0:443", "hostnameport=a.test:443"], "hostnameport", "only one"),
        ([], "ipport", "ipport= or hostnameport="),
    ],
)
def test_add_malformed_parameter_names_it(cli: Cli, thumb: str, args: list[str], param: str,
                                          why: str) -> None:
    # Fill in good values for whatever the case does not spoil.
    given = {a.partition("=")[0] for a in args}
    full = list(args)
    if "certhash" not in given:
        full.append(f"certhash={thumb}")
    if "appid" not in given:
        full.append(f"appid={APPID}")
    before = state(cli)
    r = cli("http", "add", "sslcert", *full)
    assert r.rc == 2, r
    assert r.out == ""
    assert r.err.startswith("The parameter is incorrect.\n"), r
    assert f"{param}" in r.err.splitlines()[1] and why in r.err, r
    assert state(cli) == before


def test_add_requires_certhash_and_appid(cli: Cli, thumb: str) -> None:
    before = state(cli)
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"appid={APPID}")
    assert r.rc == 2 and "certhash=" in r.err, r
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={thumb}")
    assert r.rc == 2 and "appid=" in r.err, r
    assert state(cli) == before


def test_add_certificate_not_in_store(cli: Cli, thumb: str, pki: PKI) -> None:
    before = state(cli)
    missing = "ab" * 20
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={missing}",
            f"appid={APPID}")
    assert r.rc == 2, r
    lines = r.err.splitlines()
    assert lines[0] == "SSL Certificate add failed, Error: 1312", r
    assert lines[1] == ("A specified logon session does not exist. It may already have been "
                        "terminated.")
    assert f"certhash={missing}" in lines[2] and "no certificate" in lines[2]
    assert "MY certificate store" in lines[2]

    # In MY, but looked for in another certificate store.
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={thumb}",
            f"appid={APPID}", "certstorename=CA")
    assert r.rc == 2 and "certhash=" in r.err and "CA certificate store" in r.err, r

    # A trusted root (no key) named as the server certificate, default store MY.
    ca = write(cli.tmp / "ca.pem", pki.ca_pem)
    (root,) = cli.ok("cert", "import", ca, "--store", "ROOT").split()
    before = state(cli)
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={root}", f"appid={APPID}")
    assert r.rc == 2 and f"certhash={root}" in r.err and "it is in ROOT" in r.err, r
    assert state(cli) == before


def test_add_certificate_without_private_key(cli: Cli, thumb: str, pki: PKI) -> None:
    ca = write(cli.tmp / "ca.pem", pki.ca_pem)
    (root,) = cli.ok("cert", "import", ca, "--store", "ROOT").split()
    before = state(cli)
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={root}",
            f"appid={APPID}", "certstorename=ROOT")
    assert r.rc == 2, r
    lines = r.err.splitlines()
    assert lines[0] == "SSL Certificate add failed, Error: 1312", r
    assert f"certhash={root}" in lines[2] and "no private key" in lines[2], r
    assert state(cli) == before

    # A MY entry whose key is gone (a damaged store) is refused the same way.
    with Store.open(cli.store) as st, st.transaction() as c:
        c.execute("DELETE FROM private_keys WHERE thumbprint = ?", (thumb,))
    before = state(cli)
    r = cli("http", "add", "sslcert", "ipport=0.0.0.0:443", f"certhash={thumb}", f"appid={APPID}")
    assert r.rc == 2 and f"certhash={thumb}" in r.err and "no private key" in r.err, r
    assert state(cli) == before


# --------------------------------------------------------------------------------------------
# update / delete


def test_update_changes_only_the_given_parameter(cli: Cli, thumb: str, pki: PKI) -> None:
    add(cli, thumb, "ipport=0.0.0.0:44307", "clientcertnegotiation=enable")
    before_show = cli.ok("http", "show", "sslcert")
    generation = state(cli)[0]
    out = cli.ok("http", "update", "sslcert", "ipport=0.0.0.0:44307", "disabletls13=enable")
    assert out == "SSL Certificate successfully updated\n"
    assert state(cli)[0] == generation + 1
    after_show = cli.ok("http", "show", "sslcert")
    changed = [(a, b) for a, b in zip(before_show.splitlines(), after_show.splitlines()) if a != b]
    assert changed == [("    Disable TLS1.3               : Not Set",
                        "    Disable TLS1.3               : Set")]

    # A new certificate: only the hash changes; the new one is checked like add checks it.
    path = write(cli.tmp / "leaf.pem", pki.leaf.chain_pem + pki.leaf.key_pem)
    (other,) = cli.ok("cert", "import", path).split()
    cli.ok("http", "update", "sslcert", "ipport=0.0.0.0:44307", f"certhash={other}")
    f = fields(cli.ok("http", "show", "sslcert"))
    assert f["Certificate Hash"] == other
    assert f["Negotiate Client Certificate"] == "Enabled"
    assert f["Disable TLS1.3"] == "Set"

    before = state(cli)
    r = cli("http", "update", "sslcert", "ipport=0.0.0.0:44307", "certhash=" + "cd" * 20)
    assert r.rc == 2 and r.err.startswith("SSL Certificate update failed, Error: 1312\n"), r
    assert "certhash=" in r.err
    r = cli("http", "update", "sslcert", "ipport=0.0.0.0:44307", "appid=nope")
    assert r.rc == 2 and r.err.startswith("The parameter is incorrect.\n") and "appid" in r.err
    assert state(cli) == before


def test_update_missing_binding_fails(cli: Cli, thumb: str) -> None:
    before = state(cli)
    r = cli("http", "update", "sslcert", "hostnameport=nobody.test:443", "reject=enable")
    assert r.rc == 1, r
    assert r.err.splitlines()[:2] == ["SSL Certificate update failed, Error: 2",
                                      "The system cannot find the file specified."], r
    assert "hostnameport=nobody.test:443" in r.err
    assert state(cli) == before


def test_delete_then_show_is_empty(cli: Cli, thumb: str) -> None:
    add(cli, thumb)
    add(cli, thumb, "hostnameport=localhost:44307")
    out = cli.ok("http", "delete", "sslcert", "ipport=0.0.0.0:44307")
    assert out == "SSL Certificate successfully deleted\n"
    assert cli.ok("http", "show", "sslcert") == (
        HEADER + golden("localhost:44307", thumb, label="Hostname:port") + "\n")
    cli.ok("http", "delete", "sslcert", "hostnameport=LOCALHOST:44307")
    assert cli.ok("http", "show", "sslcert") == HEADER
    # The certificate is free again: cert delete is no longer refused.
    cli.ok("cert", "delete", thumb)

    before = state(cli)
    r = cli("http", "delete", "sslcert", "ipport=0.0.0.0:44307")
    assert r.rc == 1, r
    assert r.err.splitlines()[:2] == ["SSL Certificate deletion failed, Error: 2",
                                      "The system cannot find the file specified."], r
    assert state(cli) == before


def test_cert_delete_refused_while_bound(cli: Cli, thumb: str) -> None:
    add(cli, thumb)
    r = cli("cert", "delete", thumb)
    assert r.rc != 0 and "ipport=0.0.0.0:44307" in r.err, r


# --------------------------------------------------------------------------------------------
# Dispatch


@pytest.mark.parametrize(
    "args, hint",
    [
        (["shwo", "sslcert"], "did you mean 'show'?"),
        (["show", "sslcrt"], "did you mean 'sslcert'?"),
        (["add", "urlacls"], "did you mean 'urlacl'?"),
        (["update", "urlacl", "url=http://+:80/x/"], "urlacl has no 'update' command"),
    ],
)
def test_unknown_verb_or_noun_suggests(cli: Cli, args: list[str], hint: str) -> None:
    r = cli("http", *args)
    assert r.rc == 2, r
    assert hint in r.err and r.out == "", r


def test_http_without_arguments_prints_usage(cli: Cli) -> None:
    r = cli("http")
    assert r.rc == 2 and "usage: httpsys [--store PATH] http" in r.err, r
    r = cli("http", "--help")
    assert r.rc == 0 and "usage: httpsys [--store PATH] http" in r.out, r


def test_verbs_and_nouns_are_case_insensitive(cli: Cli, thumb: str) -> None:
    cli.ok("http", "ADD", "SslCert", "ipport=0.0.0.0:44307", f"certhash={thumb}", f"appid={APPID}")
    assert "0.0.0.0:44307" in cli.ok("http", "Show", "SSLCERT")


def test_http_uses_the_env_store_without_store_option(cli: Cli, thumb: str) -> None:
    # HTTPSYS_STORE (set by Cli) is used when --store is not given.
    r = cli("http", "show", "sslcert", store=False)
    assert r.rc == 0 and r.out == HEADER, r
    assert (cli.tmp / "env-store" / "store.db").exists()
