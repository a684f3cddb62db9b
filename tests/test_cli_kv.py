"""httpsys.cli._kv and httpsys.sslcert_params, pure: netsh key=value parsing and output layouts.

Golden strings are copied from HTTPSYS_REFERENCE.md 1.4/1.5 (netsh transcripts, S6).
"""

from __future__ import annotations

import pytest

from httpsys.cli import _kv
from httpsys.errors import InvalidParameterError
from httpsys.sslcert_params import SslCertParams

HASH = "61d34f532da121bbab64723c4871e72c92f03735"
APPID = "{214124cd-d05b-4309-9af9-9caa44b2b74a}"

# Reference 1.4, verbatim.
SHOW_SSLCERT_BLOCK = """\
    IP:port                      : 0.0.0.0:44307
    Certificate Hash             : 61d34f532da121bbab64723c4871e72c92f03735
    Application ID               : {214124cd-d05b-4309-9af9-9caa44b2b74a}
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
# Reference 1.4: "\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n" (CRLF -> LF).
SHOW_SSLCERT_HEADER = "\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n".replace(
    "\r\n", "\n")


def parse(verb: str, noun: str, *args: str) -> dict[str, object]:
    return _kv.parse(list(args), _kv.spec_for(verb, noun))


def add_sslcert(*extra: str) -> dict[str, object]:
    return parse("add", "sslcert", "ipport=0.0.0.0:44307", f"certhash={HASH}", f"appid={APPID}",
                 *extra)


# --- parsing --------------------------------------------------------------------------------

def test_add_sslcert_minimal() -> None:
    assert add_sslcert() == {"ipport": "0.0.0.0:44307", "certhash": HASH, "appid": APPID}


def test_keys_are_case_insensitive_and_values_normalized() -> None:
    kv = parse("add", "sslcert", "IPPORT=0.0.0.0:443", f"CertHash={HASH.upper()}",
               "AppId=214124CD-D05B-4309-9AF9-9CAA44B2B74A", "ClientCertNegotiation=Enable")
    assert kv == {"ipport": "0.0.0.0:443", "certhash": HASH, "appid": APPID,
                  "clientcertnegotiation": True}


def test_appid_braces_kept_and_added() -> None:
    assert add_sslcert()["appid"] == APPID
    kv = parse("add", "sslcert", "ipport=0.0.0.0:1", f"certhash={HASH}", f"appid={APPID[1:-1]}")
    assert kv["appid"] == APPID


def test_quoted_values() -> None:
    kv = parse("add", "urlacl", 'url="http://+:80/MyUri/"', 'user="NT AUTHORITY\\NETWORK SERVICE"')
    assert kv == {"url": "http://+:80/MyUri/", "user": "NT AUTHORITY\\NETWORK SERVICE",
                  "listen": True, "delegate": False}
    assert add_sslcert('sslctlstorename="CA"')["sslctlstorename"] == "CA"


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:443", "0.0.0.0:443"),
    ("10.1.2.3:8443", "10.1.2.3:8443"),
    ("[::]:443", "[::]:443"),
    ("[FE80:0::1]:443", "[fe80::1]:443"),
])
def test_ipport_forms(text: str, expected: str) -> None:
    assert parse("delete", "sslcert", f"ipport={text}") == {"ipport": expected}


def test_hostnameport_lowercased() -> None:
    assert parse("show", "sslcert", "hostnameport=WWW.Contoso.com:443") == {
        "hostnameport": "www.contoso.com:443"}


def test_every_flag_is_enable_disable_and_update_takes_only_given_keys() -> None:
    for flag in ("clientcertnegotiation", "verifyclientcertrevocation",
                 "verifyrevocationwithcachedclientcertonly", "usagecheck", "dsmapperusage",
                 "reject", "disablehttp2", "disablequic", "disabletls12", "disabletls13",
                 "disableocspstapling", "enabletokenbinding", "logextendedevents",
                 "disablelegacytls", "enablesessionticket", "disablesessionid"):
        assert parse("update", "sslcert", "ipport=0.0.0.0:1", f"{flag}=enable") == {
            "ipport": "0.0.0.0:1", flag: True}
        assert parse("update", "sslcert", "ipport=0.0.0.0:1", f"{flag}=DISABLE")[flag] is False


def test_integers_decimal_and_hex() -> None:
    assert add_sslcert("revocationfreshnesstime=0x40")["revocationfreshnesstime"] == 64
    assert parse("add", "timeout", "timeouttype=headerwaittimeout", "value=0x40") == {
        "timeouttype": "headerwaittimeout", "value": 64}
    assert parse("add", "timeout", "IdleConnectionTimeout", "120") == {
        "timeouttype": "idleconnectiontimeout", "value": 120}


def test_positional_tags_and_iplisten() -> None:
    assert parse("add", "iplisten", "fe80::1") == {"ipaddress": "fe80::1"}
    assert parse("delete", "iplisten", "ipaddress=0.0.0.0") == {"ipaddress": "0.0.0.0"}
    assert parse("add", "urlacl", "http://+:80/x/", "sddl=D:(A;;GX;;;WD)") == {
        "url": "http://+:80/x/", "sddl": "D:(A;;GX;;;WD)"}
    assert parse("show", "urlacl") == {}


# Every bad argument: (verb, noun, args, the parameter the error must name, a word of the reason)
BAD = [
    ("add", "sslcert", ["ipport=1.2.3:443", f"certhash={HASH}", f"appid={APPID}"], "ipport", "IPv4"),
    ("add", "sslcert", ["ipport=::1:443", f"certhash={HASH}", f"appid={APPID}"], "ipport", "brackets"),
    ("add", "sslcert", ["ipport=0.0.0.0", f"certhash={HASH}", f"appid={APPID}"], "ipport", "IP:PORT"),
    ("add", "sslcert", ["ipport=0.0.0.0:70000", f"certhash={HASH}", f"appid={APPID}"], "ipport",
     "65535"),
    ("add", "sslcert", ["ipport=[zz]:443", f"certhash={HASH}", f"appid={APPID}"], "ipport", "IPv6"),
    ("add", "sslcert", ["hostnameport=bad_name:443", f"certhash={HASH}", f"appid={APPID}"],
     "hostnameport", "host name"),
    ("add", "sslcert", ["hostnameport=www.x.com", f"certhash={HASH}", f"appid={APPID}"],
     "hostnameport", "HOSTNAME:PORT"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", "certhash=abc", f"appid={APPID}"], "certhash", "40"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", "certhash=" + "g" * 40, f"appid={APPID}"], "certhash",
     "hex"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", "appid={1234}"], "appid", "GUID"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", "appid=" + APPID[:-1]], "appid",
     "GUID"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"appid={APPID}"], "certhash", "required"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}"], "appid", "required"),
    ("add", "sslcert", [f"certhash={HASH}", f"appid={APPID}"], "ipport", "hostnameport"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", "hostnameport=a:1", f"certhash={HASH}",
                        f"appid={APPID}"], "hostnameport", "only one"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", f"appid={APPID}", "reject=yes"],
     "reject", "enable or disable"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", f"appid={APPID}",
                        "urlretrievaltimeout=-1"], "urlretrievaltimeout", "integer"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", f"appid={APPID}",
                        "certstorename="], "certstorename", "value"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}", f"appid={APPID}",
                        'certstorename="MY'], "certstorename", "quote"),
    ("add", "sslcert", ["ipport=0.0.0.0:1", "ipport=0.0.0.0:2", f"certhash={HASH}",
                        f"appid={APPID}"], "ipport", "more than once"),
    ("add", "sslcert", ["IPPORT=0.0.0.0:1", "ipport=0.0.0.0:1", f"certhash={HASH}",
                        f"appid={APPID}"], "ipport", "more than once"),
    ("delete", "sslcert", ["ipport=0.0.0.0:1", f"certhash={HASH}"], "certhash", "not a parameter"),
    ("delete", "sslcert", ["0.0.0.0:1"], "0.0.0.0:1", "key=value"),
    ("add", "urlacl", ["url=http://+:80/x", "user=a"], "url", "end with"),
    ("add", "urlacl", ["url=http://+:80/x/"], "user", "sddl"),
    ("add", "urlacl", ["url=http://+:80/x/", "sddl=D:", "listen=yes"], "listen", "user"),
    ("add", "urlacl", ["url=http://+:80/x/", "user=a", "delegate=maybe"], "delegate", "yes or no"),
    ("add", "iplisten", ["ipaddress=1.2.3.4:80"], "ipaddress", "without a port"),
    ("add", "iplisten", [], "ipaddress", "required"),
    ("add", "timeout", ["timeouttype=idle", "value=1"], "timeouttype", "idleconnectiontimeout"),
    ("add", "timeout", ["timeouttype=headerwaittimeout", "value=65536"], "value", "65535"),
    ("add", "timeout", ["timeouttype=headerwaittimeout", "value=0xZZ"], "value", "hexadecimal"),
    ("show", "timeout", ["x=1"], "x", "no parameters"),
]


@pytest.mark.parametrize("verb, noun, args, param, reason", BAD,
                         ids=[f"{b[0]}-{b[1]}-{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_errors_name_the_parameter(verb: str, noun: str, args: list[str], param: str,
                                   reason: str) -> None:
    with pytest.raises(_kv.KvError) as info:
        _kv.parse(args, _kv.spec_for(verb, noun))
    error = info.value
    assert isinstance(error, InvalidParameterError)
    assert error.param == param
    assert param in error.reason
    assert reason.lower() in error.reason.lower()
    assert str(error).startswith("The parameter is incorrect. ")
    assert error.winerror == 87 and error.exit_code == 2
    assert _kv.format_param_error(error) == f"The parameter is incorrect.\n{error.reason}\n"


def test_unknown_key_did_you_mean() -> None:
    with pytest.raises(_kv.KvError, match="did you mean 'certhash'") as info:
        add_sslcert("certhsh=x")
    assert info.value.param == "certhsh"
    with pytest.raises(_kv.KvError, match="expected ipport=, hostnameport="):
        add_sslcert("zzzz=1")


def test_unknown_noun_and_verb() -> None:
    with pytest.raises(_kv.KvError, match="did you mean 'sslcert'"):
        _kv.spec_for("show", "sslcrt")
    with pytest.raises(_kv.KvError, match="no 'update' command"):
        _kv.spec_for("update", "urlacl")


# --- SslCertParams ----------------------------------------------------------------------------

def test_params_defaults_match_netsh() -> None:
    params = SslCertParams.from_kv(add_sslcert())
    assert params.to_dict() == {
        "certhash": HASH, "appid": APPID, "certstorename": "MY",
        "verifyclientcertrevocation": True, "verifyrevocationwithcachedclientcertonly": False,
        "usagecheck": True, "revocationfreshnesstime": 0, "urlretrievaltimeout": 0,
        "sslctlidentifier": None, "sslctlstorename": None, "dsmapperusage": False,
        "clientcertnegotiation": False, "reject": False, "disablehttp2": False,
        "disablequic": False, "disabletls12": False, "disabletls13": False,
        "disableocspstapling": False, "enabletokenbinding": False, "logextendedevents": False,
        "disablelegacytls": False, "enablesessionticket": False, "disablesessionid": False,
    }
    assert params.flags == 0 and params.cert_check_mode == 0


def test_params_update_changes_only_given_keys() -> None:
    params = SslCertParams.from_kv(add_sslcert("disabletls13=enable", "certstorename=My"))
    kv = parse("update", "sslcert", "ipport=0.0.0.0:44307", "reject=enable",
               "usagecheck=disable")
    updated = params.update(kv)
    assert updated.reject and not updated.usagecheck
    assert updated.disabletls13 and updated.certstorename == "My"  # kept
    assert updated.to_dict() == {**params.to_dict(), "reject": True, "usagecheck": False}
    assert params.reject is False  # frozen: the original is unchanged
    assert updated.flags == 0x8 | 0x40 and updated.cert_check_mode == 0x10000


def test_params_round_trip_and_netsh_strings() -> None:
    params = SslCertParams.from_kv({"certhash": HASH.upper(), "appid": APPID[1:-1],
                                    "reject": "enable", "urlretrievaltimeout": "0x10"})
    assert params.reject and params.urlretrievaltimeout == 16 and params.certhash == HASH
    assert SslCertParams.from_kv(params.to_dict()) == params


@pytest.mark.parametrize("kv, param", [
    ({"appid": APPID}, "certhash"),
    ({"certhash": HASH}, "appid"),
    ({"certhash": HASH, "appid": APPID, "bogus": 1}, "bogus"),
    ({"certhash": HASH, "appid": APPID, "reject": "yes"}, "reject"),
    ({"certhash": HASH, "appid": APPID, "revocationfreshnesstime": 2**32}, "revocationfreshnesstime"),
    ({"certhash": "12", "appid": APPID}, "certhash"),
])
def test_params_errors_name_the_parameter(kv: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        SslCertParams.from_kv(kv)
    assert info.value.param == param


# --- output layouts ---------------------------------------------------------------------------

def test_show_sslcert_golden() -> None:
    binding = {"ipport": "0.0.0.0:44307", **SslCertParams.from_kv(add_sslcert()).to_dict()}
    assert _kv.format_sslcert_binding(binding) == SHOW_SSLCERT_BLOCK
    assert _kv.format_sslcert(binding) == SHOW_SSLCERT_HEADER + SHOW_SSLCERT_BLOCK + "\n"
    assert _kv.format_sslcert([binding, binding]) == (
        SHOW_SSLCERT_HEADER + SHOW_SSLCERT_BLOCK + "\n" + SHOW_SSLCERT_BLOCK + "\n")
    assert _kv.format_sslcert([]) == SHOW_SSLCERT_HEADER


def test_show_sslcert_padding_rule() -> None:
    for line in SHOW_SSLCERT_BLOCK.splitlines():
        label, value = line.strip().split(" : ", 1) if " : " in line else (line, "")
        if line.startswith("    "):
            assert line == "    " + label.strip().ljust(28) + " : " + value


def test_show_sslcert_variants() -> None:
    params = SslCertParams.from_kv(add_sslcert(
        "reject=enable", "disablehttp2=enable", "enablesessionticket=enable",
        "certstorename=My", "sslctlidentifier=MyCtl", "revocationfreshnesstime=30"))
    out = _kv.format_sslcert_binding({"hostnameport": "www.contoso.com:443", **params.to_dict()})
    lines = out.splitlines()
    assert lines[0] == "    Hostname:port                : www.contoso.com:443"
    assert "    Certificate Store Name       : My" in lines
    assert "    Ctl Identifier               : MyCtl" in lines
    assert "    Revocation Freshness Time    : 30" in lines
    assert "    Reject Connections           : Enabled" in lines
    assert "    Disable HTTP2                : Set" in lines
    assert "    Enable Session Ticket        : Set" in lines
    assert "    Disable TLS1.3               : Not Set" in lines
    stored_null = _kv.format_sslcert_binding({"ipport": "[::]:443", **params.to_dict(),
                                              "certstorename": None})
    assert "    Certificate Store Name       : (null)" in stored_null.splitlines()
    with pytest.raises(InvalidParameterError):
        _kv.format_sslcert_binding(params.to_dict())


def test_show_urlacl_layout() -> None:
    # Reference 1.5: "    Reserved URL            : <url>" / "        User: ..." / Listen /
    # Delegate / SDDL.
    out = _kv.format_urlacl([
        {"url": "http://+:80/MyUri/", "user": "NT AUTHORITY\\NETWORK SERVICE", "listen": True,
         "delegate": False, "sddl": "D:(A;;GX;;;NS)"},
        {"url": "http://+:80/Temporary_Listen_Addresses/", "sddl": "D:(A;;GX;;;WD)"},
    ])
    assert out == (
        "\nURL Reservations:\n-----------------\n\n"
        "    Reserved URL            : http://+:80/MyUri/\n"
        "        User: NT AUTHORITY\\NETWORK SERVICE\n"
        "            Listen: Yes\n"
        "            Delegate: No\n"
        "            SDDL: D:(A;;GX;;;NS)\n"
        "\n"
        "    Reserved URL            : http://+:80/Temporary_Listen_Addresses/\n"
        "        User: WD\n"
        "            Listen: Yes\n"
        "            Delegate: No\n"
        "            SDDL: D:(A;;GX;;;WD)\n"
        "\n")
    one = _kv.format_urlacl({"url": "https://+:8443/api/", "user": "alice", "delegate": True})
    assert "            Delegate: Yes\n            SDDL: D:(A;;GXGW;;;alice)\n" in one


def test_show_iplisten_and_timeout_layout() -> None:
    assert _kv.format_iplisten(["0.0.0.0", "::"]) == (
        "\nIP addresses present in the IP listen list:\n"
        "-------------------------------------------\n\n"
        "    0.0.0.0\n    ::\n\n")
    out = _kv.format_timeout({"headerwaittimeout": 64})
    assert "    Idle Connection Timeout (secs) : 120\n" in out
    assert "    Header Wait Timeout (secs)     : 64\n" in out


def test_netsh_messages() -> None:
    # Reference 1.3 / 1.4 / 1.5 transcripts.
    assert _kv.format_failure("sslcert", "add", 183) == (
        "SSL Certificate add failed, Error: 183\n"
        "Cannot create a file when that file already exists.\n")
    assert _kv.format_failure("sslcert", "delete", 2) == (
        "SSL Certificate deletion failed, Error: 2\n"
        "The system cannot find the file specified.\n")
    assert _kv.format_failure("urlacl", "add", 183) == (
        "Url reservation add failed, Error: 183\n"
        "Cannot create a file when that file already exists.\n")
    assert _kv.format_success("sslcert", "add") == "SSL Certificate successfully added\n"
    assert _kv.format_success("sslcert", "delete") == "SSL Certificate successfully deleted\n"
    assert _kv.format_success("urlacl", "add") == "URL reservation successfully added\n"
    assert _kv.format_success("urlacl", "delete") == "URL reservation successfully deleted\n"
    assert _kv.WIN32_MESSAGES[87] == "The parameter is incorrect."
    assert _kv.WIN32_MESSAGES[5] == "Access is denied."
    assert _kv.WIN32_MESSAGES[1168] == "Element not found."


def test_failure_from_exception_with_detail() -> None:
    from httpsys.errors import AlreadyExistsError
    out = _kv.format_failure("sslcert", "add", AlreadyExistsError("exists"),
                             detail="ipport=0.0.0.0:443 already has a binding")
    assert out.splitlines() == ["SSL Certificate add failed, Error: 183",
                                "Cannot create a file when that file already exists.",
                                "ipport=0.0.0.0:443 already has a binding"]
