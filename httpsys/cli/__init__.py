"""The store-backed ``httpsys`` commands: ``httpsys [--store PATH] cert ...`` (and, later,
``httpsys [--store PATH] http <verb> <noun> key=value ...``).

``--store PATH`` before the command chooses the config store's file (default: ``HTTPSYS_STORE``,
else the per-user or root default, see ``httpsys.store.default_path``). Each command module is
imported only when used and exports ``main(argv, store_path) -> int``.

Exit codes: 0 success, 2 bad usage or a bad parameter (the message names it), 1 an operational
failure (store refused or busy, certificate in use). Messages go to stderr, and a failing
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
}

#: ``httpsys http`` nouns (netsh's): filled in as their modules land.
NOUNS: dict[str, str] = {}

USAGE = "usage: httpsys [--store PATH] {cert} ..."


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
    module = importlib.import_module(COMMANDS[command])
    try:
        return int(module.main(rest[1:], store_path))
    except HttpsysError as e:
        print(f"httpsys {command}: error: {e}", file=sys.stderr)
        return exit_code(e)
