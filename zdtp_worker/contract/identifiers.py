"""Table names as users write them and as zdtp prints them: PostgreSQL's own quoting rules.

A qualified name is ``schema.table`` (or ``table``, schema ``public``). Each part is either
*unquoted* — letters, digits, ``_`` and ``$``, not starting with a digit, folded to lower case
exactly as PostgreSQL folds it (``Public.Orders`` is ``public.orders``) — or *double-quoted*,
taken literally with ``""`` standing for one ``"``: ``sales."Order Items"``, ``"a.b"."x-y"``.

The *canonical* form (``render_qualified``) quotes a part only when it needs it, so plain names
look as before (``public.orders``) and every name round-trips: ``parse(render(s, n)) == (s, n)``.
That string is what configs, plans, checkpoints, queue items, logs and result summaries carry;
SQL always uses :func:`sql_qualified` (both parts quoted). Parts longer than PostgreSQL's 63-byte
limit are refused rather than truncated the way the server would silently truncate them.

Patterns (``include``/``exclude``) use the same syntax; ``*``, ``?`` and ``[...]`` glob within one
part, so ``sales.*`` matches every table of ``sales`` whatever characters its name holds.
Pure standard library: the provider and the worker both import it.
"""

from __future__ import annotations

import fnmatch
import re

MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1
DEFAULT_SCHEMA = "public"
# A part printed without quotes: what PostgreSQL would read back unchanged (lower case only).
_BARE = re.compile(r"^[a-z_][a-z0-9_$]*$")
# Characters allowed in an unquoted part (PostgreSQL's lexer also allows bytes >= 0x80).
_UNQUOTED_START = re.compile(r"[A-Za-z_\u0080-\U0010ffff]")
_UNQUOTED_CONT = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]")
_GLOB = re.compile(r"[*?\[\]]")


class IdentifierError(ValueError):
    """A name that is not a valid (optionally schema-qualified) PostgreSQL identifier."""


def _fold(text: str) -> str:
    # PostgreSQL downcases only ASCII letters in multi-byte encodings (UTF-8).
    return text.translate(_LOWER)


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _split(text: str, *, glob: bool) -> list[str]:
    """Split on dots outside double quotes; unquoted parts folded, quoted ones unescaped."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise IdentifierError(f"{text!r}: unterminated double quote")
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            part = "".join(buf)
            if not part:
                raise IdentifierError(f"{text!r}: empty quoted identifier")
        else:
            j = i
            while j < n and text[j] not in '."':
                ch = text[j]
                ok = _UNQUOTED_START.match(ch) if j == i else _UNQUOTED_CONT.match(ch)
                if not ok and not (glob and _GLOB.match(ch)):
                    raise IdentifierError(
                        f'{text!r}: character {ch!r} needs double quotes, e.g. schema."Order Items"'
                    )
                j += 1
            if j == i:
                raise IdentifierError(f"{text!r}: empty name part")
            part = _fold(text[i:j])
            i = j
        _check_part(part, text)
        parts.append(part)
        if i == n:
            return parts
        if text[i] != ".":
            raise IdentifierError(f"{text!r}: expected '.' after a quoted identifier")
        i += 1


def _check_part(part: str, text: str) -> None:
    if "\x00" in part:
        raise IdentifierError(f"{text!r}: identifiers cannot contain NUL")
    size = len(part.encode())
    if size > MAX_IDENT_BYTES:
        raise IdentifierError(
            f"{text!r}: {part[:20]!r}… is {size} bytes; PostgreSQL identifiers have at most {MAX_IDENT_BYTES}"
        )


def _two(text: str, *, glob: bool, default_schema: str) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise IdentifierError(f"{text!r}: empty table name")
    parts = _split(text.strip(), glob=glob)
    if len(parts) == 1:
        return default_schema, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise IdentifierError(
        f"{text!r} has {len(parts)} dot-separated parts; write 'schema.table' "
        f'and quote names that contain dots, e.g. schema."a.b"'
    )


def parse_qualified(text: str, *, default_schema: str = DEFAULT_SCHEMA) -> tuple[str, str]:
    """``(schema, table)`` of ``schema.table`` / ``table`` written with SQL quoting rules."""
    return _two(text, glob=False, default_schema=default_schema)


def quote_part(name: str) -> str:
    """One part in canonical form: bare when PostgreSQL would read it back unchanged."""
    return name if _BARE.match(name) else '"' + name.replace('"', '""') + '"'


def render_qualified(schema: str, name: str) -> str:
    """Canonical ``schema.table`` text (quotes only where needed); parses back to the same pair."""
    return f"{quote_part(schema)}.{quote_part(name)}"


def canonical(text: str) -> str:
    """Canonical form of a user-written name (``Public."Order Items"`` → ``public."Order Items"``)."""
    return render_qualified(*parse_qualified(text))


def sql_ident(name: str) -> str:
    """An identifier for SQL text: always quoted, so reserved words and any character work."""
    return '"' + name.replace('"', '""') + '"'


def sql_qualified(schema: str, name: str) -> str:
    return f"{sql_ident(schema)}.{sql_ident(name)}"


class TablePattern:
    """One ``include``/``exclude`` glob: per-part ``fnmatch`` on the real (unquoted) names."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.schema, self.name = _two(text, glob=True, default_schema=DEFAULT_SCHEMA)

    def matches(self, schema: str, name: str) -> bool:
        return fnmatch.fnmatchcase(schema, self.schema) and fnmatch.fnmatchcase(name, self.name)

    def __repr__(self) -> str:
        return f"TablePattern({self.text!r})"


__all__ = [
    "DEFAULT_SCHEMA",
    "MAX_IDENT_BYTES",
    "IdentifierError",
    "TablePattern",
    "canonical",
    "parse_qualified",
    "quote_part",
    "render_qualified",
    "sql_ident",
    "sql_qualified",
]
