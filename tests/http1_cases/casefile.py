"""Reader for the data-driven cases in this directory (the format is in README.md).

Shared by tests/test_http1_parser.py and tests/test_chunked.py, which load it by path so that it
works whether or not tests/ is a package.
"""

from __future__ import annotations

import dataclasses
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

_SIMPLE_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}


def unescape(text: str) -> bytes:
    """Decodes \\r, \\n, \\t, \\\\, \\xHH and \\{N:text} (text repeated N times)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("latin-1")
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[nxt]
            i += 2
        elif nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt == "{":
            close = text.index("}", i)
            count, part = text[i + 2 : close].split(":", 1)
            out += unescape(part) * int(count)
            i = close + 1
        else:
            raise ValueError(f"bad escape at {i} in {text!r}")
    return bytes(out)


@dataclasses.dataclass(frozen=True)
class Case:
    """One case: where it is, and its key lines in order with unescaped values."""

    file: str
    line: int
    pairs: tuple[tuple[str, bytes], ...]

    @property
    def name(self) -> str:
        return (self.first("name") or b"").decode()

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"

    def first(self, key: str, default: bytes | None = None) -> bytes | None:
        return next((v for k, v in self.pairs if k == key), default)

    def all(self, key: str) -> list[bytes]:
        return [v for k, v in self.pairs if k == key]

    def joined(self, key: str) -> bytes:
        return b"".join(self.all(key))


def _parse_block(path: pathlib.Path, line: int, lines: list[str]) -> Case | None:
    comments = sum(1 for text in lines if text.startswith("#"))
    pairs = []
    for text in lines:
        if text.startswith("#"):
            continue
        key, sep, value = text.partition(":")
        if not sep:
            raise ValueError(f"{path.name}:{line}: line without a key: {text!r}")
        pairs.append((key, unescape(value.removeprefix(" "))))
    case = Case(path.name, line, tuple(pairs))
    if case.first("name") is None:
        return None  # a preamble
    if comments != 1:
        raise ValueError(f"{path.name}:{line}: a case needs exactly one # comment line")
    return case


def load(chunked: bool) -> list[Case]:
    """Returns the cases of the chunked*.txt files (chunked) or of the other files."""
    cases = []
    for path in sorted(HERE.glob("*.txt")):
        if path.name.startswith("chunked") != chunked:
            continue
        block: list[str] = []
        start = 0
        for lineno, text in enumerate(path.read_text("ascii").splitlines() + [""], 1):
            if text:
                start = start or lineno
                block.append(text)
                continue
            if block:
                case = _parse_block(path, start, block)
                if case is not None:
                    cases.append(case)
            block, start = [], 0
    names = [c.id for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names: {sorted(duplicates)}")
    return cases
