"""``httpsys crl``: certificate revocation lists in the config store.

    httpsys crl add FILE                  PEM (one or more CRLs) or DER; prints each thumbprint
    httpsys crl show [ISSUER|THUMBPRINT]  every CRL, or one
    httpsys crl delete ISSUER|THUMBPRINT

A CRL is accepted only when a certificate of the ROOT or CA store with the CRL's issuer as its
subject verifies its signature. One CRL per issuer: a newer one replaces it, an older one is
refused. ISSUER is an RFC 4514 string as ``show`` prints it (``CN=Root CA,O=Example``);
THUMBPRINT the SHA-1 of the CRL's DER (40 hex digits, any case). Running servers use the
change for their next handshakes.
"""

from __future__ import annotations

import argparse
import sys

from ..crlstore import CrlEntry, CrlStore
from ..errors import HttpsysError
from ..store import Store

#: How the API's parameter names are spelled on this command line, for error messages.
CLI_NAMES = {"file": "FILE", "crl": "ISSUER|THUMBPRINT"}

HEADER = "\nCertificate Revocation Lists:\n-----------------------------\n\n"
LABEL_WIDTH = 24
NULL = "(null)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="httpsys crl",
                                     description="Certificate revocation lists (CRLs).")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("add", help="add the CRLs of a PEM or DER file; prints their thumbprints")
    p.add_argument("file", metavar="FILE")
    p = sub.add_parser("show", help="show every CRL, or the one of an issuer or thumbprint")
    p.add_argument("crl", nargs="?", metavar="ISSUER|THUMBPRINT")
    p = sub.add_parser("delete", help="delete the CRL of an issuer, or with a thumbprint")
    p.add_argument("crl", metavar="ISSUER|THUMBPRINT")
    return parser


def format_crls(entries: list[CrlEntry]) -> str:
    """The output of ``crl show``: the header, then one block per CRL and a blank line."""
    out = [HEADER]
    for e in entries:
        for label, value in (("Issuer", e.issuer), ("Thumbprint", e.thumbprint),
                             ("This Update", e.this_update),
                             ("Next Update", e.next_update or NULL),
                             ("Revoked Certificates", e.entries), ("Status", e.status())):
            out.append(f"    {label.ljust(LABEL_WIDTH)} : {value}\n")
        out.append("\n")
    return "".join(out)


def _run(args: argparse.Namespace, crls: CrlStore) -> int:
    if args.verb == "add":
        for r in crls.add_file(args.file):
            if r.outcome == "already":
                print(f"{r.thumbprint} is already in the store (issuer {r.issuer})")
            elif r.outcome == "replaced":
                print(f"{r.thumbprint} replaces {r.old} (issuer {r.issuer})")
            else:
                print(r.thumbprint)
    elif args.verb == "show":
        sys.stdout.write(format_crls([crls.find(args.crl)] if args.crl else crls.list()))
    elif args.verb == "delete":
        entry = crls.delete(args.crl)
        print(f"CRL {entry.thumbprint} of {entry.issuer} deleted.")
    return 0


def _rename(error: HttpsysError) -> HttpsysError:
    """Respells the parameter an error names (``file: ...``) as on this command line."""
    param = error.param
    text = str(error)
    if param in CLI_NAMES and text.startswith(f"{param}:"):
        error.args = (CLI_NAMES[param] + text[len(param):],)
    return error


def main(argv: list[str], store_path: str | None = None) -> int:
    """Runs ``httpsys crl ...``; returns the exit code. Raises HttpsysError (the caller prints
    it), with the parameter named as on the command line."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage error (exit 2) or the help (0)
        return int(e.code or 0)
    try:
        with Store.open(store_path) as store:
            return _run(args, CrlStore(store))
    except HttpsysError as e:
        raise _rename(e) from None
