"""``httpsys cert``: the certificate store, like certutil and New-SelfSignedCertificate.

    httpsys cert new --dns NAME [--dns NAME ...] [--ip IP ...] [--days N] [--signer THUMBPRINT]
                     [--rsa 2048]                    prints the new certificate's thumbprint
    httpsys cert import FILE [--password P] [--store MY|ROOT|CA]
                                                     prints the thumbprints imported
    httpsys cert request --dns NAME [--dns NAME ...] [--ip IP ...] [--rsa 2048] [--subject DN]
                         [--out FILE.csr]            a key into the store, its CSR (PEM) out
    httpsys cert complete FILE                       the CA's answer (PEM chain or PKCS#7) into
                                                     MY with its pending key; prints the thumbprint
    httpsys cert list [--store MY|ROOT|CA]
    httpsys cert list --pending                      the requests waiting for an answer
    httpsys cert show THUMBPRINT                     with its source and next renewal
    httpsys cert export THUMBPRINT [--with-key]     PEM chain on stdout; the key only if asked
    httpsys cert delete THUMBPRINT                   refused while a binding or trust list uses it
    httpsys cert acme --dns NAME [--dns NAME ...] --directory URL [--email ADDR]
                     [--ca-bundle FILE] [--eab-kid ID --eab-hmac KEY]
                     [--challenge tls-alpn-01|http-01] [--http-port PORT]
                     [--bind ipport=IP:PORT appid={GUID}]
                                                     ACME issuance; prints the thumbprint
    httpsys cert renew THUMBPRINT                    renews an ACME certificate now
    httpsys cert ctl add IDENTIFIER THUMBPRINT [THUMBPRINT ...]
                                                     ROOT/CA certificates into a trust list
    httpsys cert ctl show [IDENTIFIER]               every list, or one, with its members
    httpsys cert ctl delete IDENTIFIER [THUMBPRINT ...]
                                                     the whole list, or some members

``--store`` here is the certificate store's name; the database is chosen by the global
``httpsys --store PATH cert ...``. A trust list is what a binding's ``sslctlidentifier`` names.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..certrequest import CertRequests, PendingRequest
from ..certstore import CertEntry, CertStore
from ..ctlstore import CtlStore
from ..errors import HttpsysError, InvalidParameterError
from ..store import CERT_STORES, Store

#: How the API's parameter names are spelled on this command line, for error messages.
CLI_NAMES = {
    "thumbprint": "THUMBPRINT",
    "identifier": "IDENTIFIER",
    "file": "FILE",
    "password": "--password",
    "store": "--store",
    "dns": "--dns",
    "ip": "--ip",
    "days": "--days",
    "signer": "--signer",
    "rsa_bits": "--rsa",
    "with_key": "--with-key",
    "subject": "--subject",
    "out": "--out",
    "directory": "--directory",
    "challenge": "--challenge",
    "bind": "--bind",
}


def _store_name(value: str) -> str:
    name = value.upper()
    if name not in CERT_STORES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a certificate store (MY, ROOT or CA)")
    return name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="httpsys cert",
                                     description="The certificate store (MY, ROOT, CA).")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("new", help="make a server certificate into MY; prints its thumbprint")
    p.add_argument("--dns", action="append", required=True, metavar="NAME",
                   help="DNS name (repeat for more; the first is the subject CN)")
    p.add_argument("--ip", action="append", metavar="IP", help="IP address (repeatable)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--signer", metavar="THUMBPRINT",
                   help="issue it from this MY CA certificate instead of self-signing")
    p.add_argument("--rsa", type=int, metavar="BITS", help="RSA key of BITS (2048) instead of "
                   "ECDSA P-256")
    p = sub.add_parser("import", help="import a PEM (chain + key) or PKCS#12 file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--password", help="password of the PKCS#12 file or encrypted key")
    p.add_argument("--store", type=_store_name, default="MY", metavar="MY|ROOT|CA",
                   help="certificate store (default MY)")
    p = sub.add_parser("request", help="make a key in the store and a certificate request "
                       "(PKCS#10) for a CA")
    p.add_argument("--dns", action="append", required=True, metavar="NAME",
                   help="DNS name (repeat for more; the first is the subject CN by default)")
    p.add_argument("--ip", action="append", metavar="IP", help="IP address (repeatable)")
    p.add_argument("--rsa", type=int, metavar="BITS", help="RSA key of BITS (2048) instead of "
                   "ECDSA P-256")
    p.add_argument("--subject", metavar="DN", help="subject, like CN=www.example.com,O=Example "
                   "(default CN=the first --dns)")
    p.add_argument("--out", metavar="FILE.csr", help="write the request there (default stdout)")
    p = sub.add_parser("complete", help="store the CA's answer to a request; prints the "
                       "thumbprint")
    p.add_argument("file", metavar="FILE")
    p = sub.add_parser("list", help="list certificates (or pending requests)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--store", type=_store_name, metavar="MY|ROOT|CA",
                       help="only this certificate store")
    group.add_argument("--pending", action="store_true",
                       help="the certificate requests waiting for the CA's answer")
    p = sub.add_parser("show", help="show one certificate")
    p.add_argument("thumbprint", metavar="THUMBPRINT")
    p = sub.add_parser("export", help="print a certificate chain as PEM")
    p.add_argument("thumbprint", metavar="THUMBPRINT")
    p.add_argument("--with-key", action="store_true", help="append the private key too")
    p = sub.add_parser("delete", help="delete a certificate (and its key)")
    p.add_argument("thumbprint", metavar="THUMBPRINT")
    p = sub.add_parser("acme", help="get a certificate from an ACME CA (RFC 8555) into MY; "
                       "prints its thumbprint")
    p.add_argument("--dns", action="append", required=True, metavar="NAME",
                   help="DNS name (repeat for more; the first is the subject CN)")
    p.add_argument("--directory", required=True, metavar="URL", help="the CA's directory URL")
    p.add_argument("--email", metavar="ADDR", help="contact address of the account")
    p.add_argument("--ca-bundle", metavar="FILE", help="CA certificates that verify the ACME "
                   "server's HTTPS (default: the system's)")
    p.add_argument("--eab-kid", metavar="ID", help="external account binding key id")
    p.add_argument("--eab-hmac", metavar="KEY", help="external account binding HMAC key "
                   "(base64url)")
    p.add_argument("--challenge", choices=("tls-alpn-01", "http-01"), default="tls-alpn-01",
                   help="challenge the running server answers (default tls-alpn-01)")
    p.add_argument("--http-port", type=int, default=80, metavar="PORT",
                   help="port the CA connects to for http-01 (default 80)")
    p.add_argument("--bind", nargs="+", metavar="KEY=VALUE",
                   help="ipport=IP:PORT (or hostnameport=NAME:PORT) appid={GUID}: add the "
                   "binding, or point it at the new certificate, live")
    p = sub.add_parser("renew", help="renew an ACME certificate now")
    p.add_argument("thumbprint", metavar="THUMBPRINT")
    p = sub.add_parser("ctl", help="certificate trust lists (sslctlidentifier)")
    ctl = p.add_subparsers(dest="ctl_verb", required=True, metavar="VERB")
    p = ctl.add_parser("add", help="add ROOT or CA certificates to a trust list (creates it)")
    p.add_argument("identifier", metavar="IDENTIFIER")
    p.add_argument("thumbprints", nargs="+", metavar="THUMBPRINT")
    p = ctl.add_parser("show", help="show every trust list, or one")
    p.add_argument("identifier", nargs="?", metavar="IDENTIFIER")
    p = ctl.add_parser("delete", help="delete a trust list, or some of its certificates")
    p.add_argument("identifier", metavar="IDENTIFIER")
    p.add_argument("thumbprints", nargs="*", metavar="THUMBPRINT")
    return parser


def _show(entry: CertEntry, bindings: list[str], renewal: str) -> str:
    cert = entry.certificate
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = ", ".join(san.get_values_for_type(x509.DNSName)) or "(none)"
        ips = ", ".join(str(a) for a in san.get_values_for_type(x509.IPAddress)) or "(none)"
    except x509.ExtensionNotFound:
        dns = ips = "(none)"
    rows = [
        ("Thumbprint", entry.thumbprint),
        ("Store", entry.store),
        ("Subject", entry.subject),
        ("Issuer", entry.issuer),
        ("Serial Number", format(cert.serial_number, "x")),
        ("Not Before", entry.not_before),
        ("Not After", entry.not_after),
        ("Source", entry.source),
        ("Next Renewal", renewal),
        ("DNS Names", dns),
        ("IP Addresses", ips),
        ("Public Key", entry.key_description()),
        ("Has Private Key", "Yes" if entry.has_key else "No"),
        ("Chain Length", str(1 + len(entry.chain))),
        ("Bindings", ", ".join(bindings) or "(none)"),
    ]
    return "\n".join(f"{label:<20} : {value}" for label, value in rows)


def _list(entries: list[CertEntry]) -> str:
    lines = [f"{'Store':<5} {'Thumbprint':<40} {'Key':<3} {'Not After':<20} Subject"]
    for e in entries:
        lines.append(f"{e.store:<5} {e.thumbprint} {'yes' if e.has_key else 'no':<3} "
                     f"{e.not_after:<20} {e.subject}")
    return "\n".join(lines)


def _list_pending(requests: list[PendingRequest]) -> str:
    if not requests:
        return "No pending certificate requests."
    lines = [f"{'Id':<4} {'Created':<20} {'Key':<11} {'Subject':<30} Names"]
    for r in requests:
        lines.append(f"{r.id:<4} {r.created:<20} {r.key:<11} {r.subject:<30} "
                     f"{', '.join(r.dns + r.ip)}")
    return "\n".join(lines)


def _request(args: argparse.Namespace, requests: CertRequests) -> None:
    """``cert request``: the --out file is opened first, so that a request whose CSR cannot
    be written is not left pending."""
    out = None
    if args.out is not None:
        try:
            out = open(args.out, "w", encoding="ascii")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise InvalidParameterError(f"out: cannot write {args.out!r}: {e.strerror}",
                                        param="out") from None
    try:
        request = requests.create(args.dns, args.ip, rsa_bits=args.rsa, subject=args.subject)
    except BaseException:
        if out is not None:
            out.close()
            os.unlink(args.out)
        raise
    if out is None:
        sys.stdout.write(request.csr_pem)
        return
    with out:
        out.write(request.csr_pem)
    print(f"Certificate request {request.id} ({request.subject}) written to {args.out}; "
          "give it to the CA, then: httpsys cert complete RESPONSE")


def _complete(path: str, requests: CertRequests) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidParameterError(f"file: cannot read {path!r}: {e.strerror}",
                                    param="file") from None
    return requests.complete(data, name=repr(path))


def _show_ctl(ctls: CtlStore, identifier: str | None) -> str:
    names = ctls.identifiers() if identifier is None else [identifier]
    if not names:
        return "No trust lists."
    blocks = []
    for name in names:
        members = ctls.members(name)
        lines = [f"{'Trust List':<20} : {ctls.identifier_of(name)}"]
        for m in members:
            lines += [f"    {'Thumbprint':<16} : {m.thumbprint}",
                      f"    {'Store':<16} : {m.store}",
                      f"    {'Subject':<16} : {m.subject}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _run_ctl(args: argparse.Namespace, ctls: CtlStore) -> int:
    if args.ctl_verb == "add":
        added = ctls.add(args.identifier, args.thumbprints)
        name = ctls.identifier_of(args.identifier)
        for thumb in added:
            print(thumb)
        print(f"Trust list {name}: {len(added)} certificate(s) added, "
              f"{len(ctls.members(name))} in the list.")
    elif args.ctl_verb == "show":
        print(_show_ctl(ctls, args.identifier))
    else:
        name = ctls.identifier_of(args.identifier)
        removed = ctls.delete(args.identifier, args.thumbprints)
        if args.thumbprints:
            print(f"{len(removed)} certificate(s) removed from trust list {name}.")
        else:
            print(f"Trust list {name} deleted ({len(removed)} certificate(s)).")
    return 0


def _run(args: argparse.Namespace, certs: CertStore) -> int:
    if args.verb == "ctl":
        return _run_ctl(args, CtlStore(certs.store))
    if args.verb == "new":
        print(certs.new_self_signed(args.dns, args.ip, days=args.days, signer=args.signer,
                                    rsa_bits=args.rsa))
    elif args.verb == "import":
        for thumb in certs.import_file(args.file, password=args.password, store=args.store):
            print(thumb)
    elif args.verb == "request":
        _request(args, CertRequests(certs.store))
    elif args.verb == "complete":
        print(_complete(args.file, CertRequests(certs.store)))
    elif args.verb == "list" and args.pending:
        print(_list_pending(CertRequests(certs.store).pending()))
    elif args.verb == "list":
        print(_list(certs.list(args.store)))
    elif args.verb == "show":
        entry = certs.get(args.thumbprint)
        print(_show(entry, certs.store.bindings_using(entry.thumbprint), _renewal(certs, entry)))
    elif args.verb == "export":
        sys.stdout.write(certs.export(args.thumbprint, with_key=args.with_key).decode())
    elif args.verb == "acme":
        return _acme(args, certs)
    elif args.verb == "renew":
        from ..acmeclient import renew

        print(renew(certs.store, certs.get(args.thumbprint).thumbprint).thumbprint)
    elif args.verb == "delete":
        entry = certs.delete(args.thumbprint)
        print(f"Certificate {entry.thumbprint} deleted from store {entry.store}.")
    return 0


def _renewal(certs: CertStore, entry: CertEntry) -> str:
    """Cert show's Next Renewal: when, and the last failure if the renewal is retrying."""
    from ..acmestore import AcmeStore

    if entry.renew_at is None:
        return "-"  # not renewed by httpsys (imported, self-signed or from a request)
    acme = AcmeStore(certs.store).get(entry.thumbprint)
    if acme is not None and acme.failures and acme.next_attempt:
        return (f"{acme.next_attempt} (retrying: {acme.failures} failure(s), last: "
                f"{acme.last_error})")
    return entry.renew_at


def _parse_bind(values: list[str] | None) -> tuple[str | None, str | None]:
    """--bind ipport=IP:PORT appid={GUID} -> ("ipport=IP:PORT", "{GUID}")."""
    if not values:
        return None, None
    from ..errors import InvalidParameterError

    fields: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key.lower() not in ("ipport", "hostnameport", "appid"):
            raise InvalidParameterError(f"bind: {item!r} is not ipport=IP:PORT, "
                                        "hostnameport=NAME:PORT or appid={GUID}", param="bind")
        fields[key.lower()] = value
    kinds = [k for k in ("ipport", "hostnameport") if k in fields]
    if len(kinds) != 1:
        raise InvalidParameterError("bind: give one ipport=IP:PORT or hostnameport=NAME:PORT",
                                    param="bind")
    from . import _kv

    try:
        validate = _kv.ipport if kinds[0] == "ipport" else _kv.hostnameport
        key = validate(kinds[0], fields[kinds[0]])
        appid = _kv.guid("appid", fields["appid"]) if "appid" in fields else None
    except HttpsysError as e:
        raise InvalidParameterError(f"bind: {getattr(e, 'reason', e)}", param="bind") from None
    return f"{kinds[0]}={key}", appid


def _acme(args: argparse.Namespace, certs: CertStore) -> int:
    from ..acmeclient import issue
    from ..errors import InvalidParameterError

    if bool(args.eab_kid) != bool(args.eab_hmac):
        raise InvalidParameterError("--eab-kid and --eab-hmac go together", param="eab")
    if not 1 <= args.http_port <= 65535:
        raise InvalidParameterError(f"--http-port: {args.http_port} is not a port (1-65535)",
                                    param="http_port")
    bind, appid = _parse_bind(args.bind)
    issued = issue(certs.store, args.dns, args.directory, challenge=args.challenge,
                   email=args.email, ca_bundle=args.ca_bundle, bind=bind, appid=appid,
                   http_port=args.http_port, eab_kid=args.eab_kid, eab_hmac=args.eab_hmac)
    print(issued.thumbprint)
    return 0


def _rename(error: HttpsysError) -> HttpsysError:
    """Respells the parameter an error names (``password: ...``) as on this command line."""
    param = error.param
    text = str(error)
    if param in CLI_NAMES and text.startswith(f"{param}:"):
        error.args = (CLI_NAMES[param] + text[len(param):],)
    return error


def main(argv: list[str], store_path: str | None = None) -> int:
    """Runs ``httpsys cert ...``; returns the exit code. Raises HttpsysError (the caller prints
    it), with the parameter named as on the command line."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage error (exit 2) or the help (0)
        return int(e.code or 0)
    try:
        with Store.open(store_path) as store:
            return _run(args, CertStore(store))
    except HttpsysError as e:
        raise _rename(e) from None
