"""Master files (RFC 1035 §5) -> a flat list of records with their file:line.

Directives: ``$ORIGIN``, ``$TTL`` (RFC 2308 §4) and ``$INCLUDE``.  Included text
comes from a callback the caller gives (``include(filename) -> text``) so that
the caller decides what a file name may reach (the DNS appliance confines it to
the zone's directory in its data device); nesting is bounded.  As RFC 1035 §5.1
says, an included file does not change the origin of the file that includes it.

Errors do not stop the parse: every bad line is reported (up to ``MAX_ERRORS``),
each as ``file:line: message``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import names, rdata
from .errors import Problem
from .lexer import LexError, Line, tokenize

__all__ = ["MAX_ERRORS", "MAX_INCLUDE_DEPTH", "Include", "Record", "decode_text", "parse", "records"]

#: Nesting bound for $INCLUDE; it also ends include cycles.  BIND has no documented
#: limit; eight levels is far past any real use.
MAX_INCLUDE_DEPTH = 8
#: Stop listing errors after this many (a wrong file would otherwise give one per line).
MAX_ERRORS = 100

Include = Callable[[str], "str | bytes"]

_CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4}


@dataclass(frozen=True, slots=True)
class Record:
    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    file: str
    line: int


@dataclass(slots=True)
class _State:
    errors: list[Problem] = field(default_factory=list)
    ttl: int | None = None  # from $TTL
    last_ttl: int | None = None  # the last explicit TTL (RFC 1035 §5.1 default)


class _Stop(Exception):
    """Too many errors: stop parsing."""


def decode_text(data: str | bytes, filename: str) -> str:
    """Zone text as str; bytes must be UTF-8 (ASCII in practice).  Raises ``LexError``."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LexError(data[: e.start].count(b"\n") + 1, "not valid UTF-8") from None


def parse(
    text: str | bytes,
    *,
    origin: bytes | None,
    filename: str = "<zone>",
    include: Include | None = None,
    default_ttl: int | None = None,
) -> tuple[list[Record], list[Problem]]:
    """Parse a master file; returns the records and the errors (empty if none)."""
    errors: list[Problem] = []
    stream = records(
        text, origin=origin, filename=filename, include=include, default_ttl=default_ttl, errors=errors
    )
    found = list(stream)
    return found, errors


def records(
    text: str | bytes,
    *,
    origin: bytes | None,
    filename: str = "<zone>",
    include: Include | None = None,
    default_ttl: int | None = None,
    errors: list[Problem],
) -> Iterator[Record]:
    """Yield records as they are parsed (a big zone never exists as one list);
    errors are appended to ``errors``."""
    state = _State(errors=errors, ttl=default_ttl)
    try:
        yield from _parse_file(state, text, origin, filename, include, 0)
    except _Stop:
        pass


def _error(state: _State, filename: str, line: int, message: str) -> None:
    state.errors.append(Problem(filename, line, message))
    if len(state.errors) >= MAX_ERRORS:
        state.errors.append(Problem(filename, line, f"stopped after {MAX_ERRORS} errors"))
        raise _Stop


def _parse_file(
    state: _State, data: str | bytes, origin: bytes | None, filename: str, include: Include | None, depth: int
) -> Iterator[Record]:
    try:
        text = decode_text(data, filename)
    except LexError as e:
        _error(state, filename, e.line, e.message)
        return
    owner: bytes | None = None
    lines = tokenize(text)
    while True:
        try:
            entry = next(lines)
        except StopIteration:
            return
        except LexError as e:
            _error(state, filename, e.line, e.message)
            return
        try:
            if entry.tokens[0].startswith("$") and not entry.blank_owner:
                if entry.tokens[0].upper() == "$INCLUDE":
                    yield from _include(state, entry, origin, include, depth)
                else:
                    origin = _directive(state, entry, origin)
                continue
            record = _record(state, entry, owner, origin, filename)
        except ValueError as e:
            _error(state, filename, entry.line, str(e))
            continue
        owner = record.owner
        yield record


def _directive(state: _State, entry: Line, origin: bytes | None) -> bytes | None:
    word, args = entry.tokens[0].upper(), entry.tokens[1:]
    if word == "$ORIGIN":
        if len(args) != 1:
            raise ValueError("$ORIGIN takes one name")
        return names.from_text(args[0], origin)
    if word == "$TTL":
        if len(args) != 1:
            raise ValueError("$TTL takes one TTL")
        state.ttl = rdata.parse_ttl(args[0])
        return origin
    raise ValueError(f"unsupported directive {entry.tokens[0]} (supported: $ORIGIN, $TTL, $INCLUDE)")


def _include(
    state: _State, entry: Line, origin: bytes | None, include: Include | None, depth: int
) -> Iterator[Record]:
    """``$INCLUDE <file> [<origin>]``; the including file's origin is unchanged after (RFC 1035 §5.1)."""
    args = entry.tokens[1:]
    if not 1 <= len(args) <= 2:
        raise ValueError("$INCLUDE takes a file name and an optional origin")
    target = args[0][1:-1] if args[0].startswith('"') else args[0]
    sub_origin = names.from_text(args[1], origin) if len(args) == 2 else origin
    if include is None:
        raise ValueError("$INCLUDE is not allowed here (no include source given)")
    if depth + 1 > MAX_INCLUDE_DEPTH:
        raise ValueError(f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} levels (a cycle?)")
    try:
        sub_text = include(target)
    except (KeyError, OSError, ValueError) as e:
        raise ValueError(f"cannot include {target!r}: {e}") from None
    yield from _parse_file(state, sub_text, sub_origin, target, include, depth + 1)


def _record(state: _State, entry: Line, owner: bytes | None, origin: bytes | None, filename: str) -> Record:
    tokens = entry.tokens
    i = 0
    if entry.blank_owner:
        if owner is None:
            raise ValueError("line starts with a blank but no previous owner name to inherit")
    else:
        if tokens[0].startswith('"'):
            raise ValueError("an owner name cannot be quoted")
        owner = names.from_text(tokens[0], origin)
        i = 1
    ttl: int | None = None
    # RFC 1035 §5.1: [<TTL>] [<class>] or [<class>] [<TTL>] before the type.
    for _ in range(2):
        if i >= len(tokens):
            break
        token = tokens[i]
        if token[:1].isdigit():
            if ttl is not None:
                raise ValueError(f"two TTLs ({tokens[i - 1]} and {token})")
            ttl = rdata.parse_ttl(token)
            i += 1
            continue
        upper = token.upper()
        cls = _CLASSES.get(upper)
        if cls is None and upper.startswith("CLASS") and upper[5:].isdigit():
            cls = int(upper[5:])
        if cls is None:
            break
        if cls != 1:
            raise ValueError(f"class {token} not supported: only IN is served")
        i += 1
    if i >= len(tokens):
        raise ValueError("missing record type")
    rtype = rdata.type_code(tokens[i])
    if rtype is None:
        raise ValueError(
            f"unknown record type {tokens[i]!r} (use TYPEnnn and '\\# <len> <hex>', RFC 3597 §5)"
        )
    data = rdata.encode(rtype, tokens[i + 1 :], origin)
    if ttl is not None:
        state.last_ttl = ttl
    elif state.ttl is not None:
        ttl = state.ttl
    elif state.last_ttl is not None:
        ttl = state.last_ttl
    else:
        raise ValueError("no TTL on this record and no $TTL before it (RFC 2308 §4)")
    return Record(owner, rtype, ttl, data, filename, entry.line)
