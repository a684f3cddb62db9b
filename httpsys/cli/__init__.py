"""The store-backed ``httpsys`` commands: ``httpsys [--store PATH] cert ...``, ``crl ...`` and
``httpsys [--store PATH] http <verb> <noun> key=value ...`` (netsh's syntax and output).

``--store PATH`` before the command chooses the config store's file (default: ``HTTPSYS_STORE``,
else the per-user or root default, see ``httpsys.store.default_path``). Each command module is
imported only when used and exports ``main(argv, store_path) -> int``.

``http`` nouns live one per module (``NOUNS``); each exports ``VERBS`` and, for each verb, a
function ``verb(store, values) -> int`` that gets the open store and the ``key=value``
arguments parsed by ``_kv.parse``; a module that sets ``NEEDS_STORE = False`` gets None
instead (the store is neither opened nor created). The dispatcher here prints netsh's lines
for their errors.

Exit codes: 0 success, 2 bad usage or a bad parameter (the message names it), 1 an operational
failure (store refused or busy, certificate in use, netsh's 183 for an existing key or 2 for a
missing one). Messages go to stderr, and a failing
command changes nothing in the store.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from ..errors import HttpsysError, InvalidParameterError, NotFoundError

#: Top-level commands handled here, imported lazily (pip's commands_dict).
COMMANDS = {
    "cert": "httpsys.cli.cert",
    "crl": "httpsys.cli.crl",
    "http": __name__,  # dispatched by http_main below
}

#: ``httpsys http`` nouns (netsh's), imported lazily.
NOUNS: dict[str, str] = {
    "sslcert": "httpsys.cli.sslcert",
    "urlacl": "httpsys.cli.urlacl",
    "iplisten": "httpsys.cli.iplisten",
    "timeout": "httpsys.cli.timeout",
    "servicestate": "httpsys.cli.servicestate",  # show only; asks the running servers
    "certmapping": "httpsys.cli.certmapping",
}

USAGE = "usage: httpsys [--store PATH] {cert,crl,http} ..."
HTTP_USAGE = ("usage: httpsys [--store PATH] http <add|update|delete|show> "
              "<sslcert|urlacl|iplisten|timeout|servicestate|certmapping> [key=value ...]")


class HttpFailure(HttpsysError):
    """An ``httpsys http`` change netsh would refuse with a Win32 error (183, 2, 1312, ...).

    Printed as netsh's ``<what> <verb> failed, Error: N`` line and the error's text, then this
    message, which names the parameter. Exit code 1, or 2 where a parameter is to blame.
    """

    def __init__(self, winerror: int, message: str, *, param: str | None = None,
                 exit_code: int = 1) -> None:
        super().__init__(message, param=param)
        self.winerror = winerror
        self.exit_code = exit_code


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def http_main(argv: list[str], store_path: str | None) -> int:
    """Runs ``httpsys http VERB NOUN key=value ...``; returns the exit code."""
    from ..store import Store, StoreError
    from . import _kv

    if not argv or argv[0] in ("-h", "--help"):
        print(HTTP_USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    verb = argv[0].lower()
    noun = argv[1].lower() if len(argv) > 1 else ""
    if noun not in NOUNS:
        what = f"unknown object {noun!r}{_did_you_mean(noun, list(NOUNS))}" if noun else \
            "give the object"
        print(f"httpsys http: error: {what}; expected one of {', '.join(NOUNS)}\n{HTTP_USAGE}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(NOUNS[noun])
    verbs: tuple[str, ...] = module.VERBS
    if verb not in verbs:
        print(f"httpsys http: error: {noun} has no {verb!r} command"
              f"{_did_you_mean(verb, list(verbs))}; expected one of {', '.join(verbs)}",
              file=sys.stderr)
        return 2
    try:
        values = _kv.parse(argv[2:], _kv.spec_for(verb, noun))
        if not getattr(module, "NEEDS_STORE", True):
            # servicestate asks the running servers: no store is opened, none is created.
            return int(getattr(module, verb)(None, values))
        with Store.open(store_path) as store:
            return int(getattr(module, verb)(store, values))
    except InvalidParameterError as e:
        sys.stderr.write(_kv.format_param_error(e))
        return 2
    except StoreError as e:
        print(f"httpsys http: error: {e}", file=sys.stderr)
        return exit_code(e)
    except HttpsysError as e:
        sys.stderr.write(_kv.format_failure(noun, verb, e, detail=str(e) or None))
        return exit_code(e)


def exit_code(error: BaseException) -> int:
    """2 for a bad parameter, the error's own ``exit_code`` if it has one, else 1."""
    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(error, (InvalidParameterError, NotFoundError)):
        return 2
    return 1


def split_global(argv: list[str]) -> tuple[str | None, list[str]]:
    """Takes the global ``--store PATH`` / ``--store=PATH`` off the front of ``argv``.
    Raises InvalidParameterError if ``--store`` has no value."""
    store_path = None
    rest = list(argv)
    while rest and rest[0].startswith("--store"):
        opt = rest.pop(0)
        if opt == "--store":
            if not rest or not rest[0]:
                raise InvalidParameterError("--store: give the path of the store", param="store")
            store_path = rest.pop(0)
        elif opt.startswith("--store="):
            store_path = opt.split("=", 1)[1]
        else:
            rest.insert(0, opt)
            break
    return store_path, rest


def handles(argv: list[str]) -> bool:
    """True if ``argv`` is a command for this package (``httpsys __main__`` dispatches on it)."""
    try:
        _, rest = split_global(argv)
    except InvalidParameterError:
        return True
    return bool(rest) and rest[0] in COMMANDS or len(rest) != len(argv)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        store_path, rest = split_global(args)
    except InvalidParameterError as e:
        print(f"httpsys: error: {e}", file=sys.stderr)
        return 2
    if not rest or rest[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not rest else sys.stdout)
        return 2 if not rest else 0
    command = rest[0]
    if command in ("demo", "serve"):
        print(f"httpsys: error: --store: not an option of {command!r}", file=sys.stderr)
        return 2
    if command not in COMMANDS:
        hint = difflib.get_close_matches(command, list(COMMANDS) + ["demo", "serve"], n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        print(f"httpsys: error: unknown command {command!r}{extra}\n{USAGE}", file=sys.stderr)
        return 2
    if command == "http":
        return http_main(rest[1:], store_path)
    module = importlib.import_module(COMMANDS[command])
    try:
        return int(module.main(rest[1:], store_path))
    except HttpsysError as e:
        print(f"httpsys {command}: error: {e}", file=sys.stderr)
        return exit_code(e)
