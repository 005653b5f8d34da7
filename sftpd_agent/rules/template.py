"""Message templates: ``{Column}`` placeholders filled from a contact row, nothing more.

``Bonjour {Prénom}, -20 % à {Ville|votre magasin} ce week-end`` names columns of the contacts
file by their header. Pure: parsing checks the whole template against the headers once, before
any row is read (a placeholder naming no column is an error then, with the columns available);
rendering is plain substitution over a prebuilt list, the hot loop of a 1,000,000-row campaign.

Syntax:

- ``{Column Header}``: the value of that column, stripped of surrounding white space. The
  exact header text is looked for first; else the header that matches when case, accents and
  surrounding or repeated white space are ignored, if exactly one does (two: an error naming
  both). A row whose value is empty is :class:`Missing`.
- ``{Column|default}``: ``default`` (stripped) when the value is empty; ``{Column|}`` means the
  value may be empty.
- ``{{`` and ``}}``: a literal ``{`` and ``}``. A ``{`` never closed, a ``}`` alone, a brace
  inside a placeholder or an empty one are errors naming the character's position.

Nothing from a value is interpreted: a value holding ``{Ville}`` is sent as those characters.
There are no expressions, no attribute access, no format specifications.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SHOWN_HEADERS = 12
"""Headers listed in an error, at most."""


class TemplateError(ValueError):
    """A template that cannot be used with these columns; the message is one line."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One placeholder: the column it reads, and what an empty value becomes.

    ``default`` None: the value is required (an empty one is :class:`Missing`); ``""``: the
    value may be empty.
    """

    index: int
    header: str
    default: str | None = None
    written: str = ""
    """The placeholder as written in the template, braces included."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A row whose value for ``header`` is empty, in a placeholder without a default."""

    header: str


def header_key(text: str) -> str:
    """``text`` as headers and placeholders are compared when not exactly equal: case and
    accents ignored, white space runs as one space, none around.

    >>> header_key("  Prénom   Client ") == header_key("PRENOM client")
    True
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


def find_column(name: str, headers: Sequence[str]) -> int:
    """The index of the header ``name`` designates (the rule of placeholders, also used for
    ``[columns]`` in a manifest). Raises :class:`LookupError` with a one-line reason when no
    header or several match."""
    stripped = name.strip()
    exact = [i for i, header in enumerate(headers) if header in (name, stripped)]
    if len(exact) == 1:
        return exact[0]
    key = header_key(name)
    loose = exact or [i for i, header in enumerate(headers) if header_key(header) == key]
    if len(loose) == 1:
        return loose[0]
    if loose:
        both = " and ".join(f"{headers[i]!r} (column {i + 1})" for i in loose)
        raise LookupError(f"matches several columns: {both}")
    close = difflib.get_close_matches(key, [header_key(h) for h in headers], n=1, cutoff=0.75)
    hint = ""
    if close:
        suggestion = next(h for h in headers if header_key(h) == close[0])
        hint = f"; did you mean {suggestion!r}?"
    raise LookupError(f"no such column (columns: {shown_headers(headers)}){hint}")


def shown_headers(headers: Sequence[str]) -> str:
    """The headers as an error lists them: comma-separated, the first :data:`SHOWN_HEADERS`."""
    listed = [header or f"(column {i + 1} has no header)" for i, header in
              enumerate(headers[:SHOWN_HEADERS])]
    more = len(headers) - SHOWN_HEADERS
    return ", ".join(listed) + (f", ... ({more} more)" if more > 0 else "")


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and slots, in order (adjacent literals merged)."""

    text: str
    pieces: tuple[str | Slot, ...]
    _parts: list[str] = field(init=False, repr=False, compare=False)
    _slots: tuple[tuple[int, int, str | None, str], ...] = field(
        init=False, repr=False, compare=False)
    _width: int = field(init=False, repr=False, compare=False)
    fill: Callable[[Sequence[str]], str | Missing] = field(init=False, repr=False, compare=False)
    """:meth:`render` for values that cover every column the template reads (as
    :func:`.contacts.read_contacts` gives them): the hot loop's form, without the check."""

    def __post_init__(self) -> None:
        # The prebuilt list: literals in place, each slot's position filled per row.
        parts: list[str] = []
        slots: list[tuple[int, int, str | None, str]] = []
        for piece in self.pieces:
            if isinstance(piece, Slot):
                slots.append((len(parts), piece.index, piece.default, piece.header))
            parts.append(piece if isinstance(piece, str) else "")
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_slots", tuple(slots))
        object.__setattr__(self, "_width", max((s[1] for s in slots), default=-1) + 1)
        object.__setattr__(self, "fill", _specialised(self.pieces) or self._fill)

    @classmethod
    def parse(cls, text: str, headers: Sequence[str]) -> Template:
        """Resolve every placeholder of ``text`` to a column of ``headers``, or raise
        :class:`TemplateError`."""
        pieces: list[str | Slot] = []
        literal: list[str] = []
        at, end = 0, len(text)
        while at < end:
            brace = _next_brace(text, at)
            if brace < 0:
                literal.append(text[at:])
                break
            literal.append(text[at:brace])
            char = text[brace]
            if text.startswith(char * 2, brace):  # {{ or }}: a literal brace
                literal.append(char)
                at = brace + 2
                continue
            if char == "}":
                raise TemplateError(
                    f"'}}' alone at character {brace + 1} ({_around(text, brace)}): write "
                    "'}}' for a literal brace")
            close = _next_brace(text, brace + 1)
            if close < 0:
                raise TemplateError(
                    f"'{{' at character {brace + 1} is never closed ({_around(text, brace)}): "
                    "write '{{' for a literal brace")
            if text[close] == "{":
                raise TemplateError(
                    f"'{{' inside the placeholder opened at character {brace + 1} "
                    f"({_around(text, brace)})")
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(_slot(text[brace:close + 1], brace, headers))
            at = close + 1
        if literal and "".join(literal):
            pieces.append("".join(literal))
        return cls(text, tuple(pieces))

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The distinct column headers the template uses, in order of first use."""
        return tuple(dict.fromkeys(p.header for p in self.pieces if isinstance(p, Slot)))

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(p for p in self.pieces if isinstance(p, Slot))

    def render(self, values: Sequence[str]) -> str | Missing:
        """The message for one row's ``values`` (indexed like the headers), or
        :class:`Missing` naming the first required column whose value is empty."""
        if len(values) < self._width:
            values = [*values, *[""] * (self._width - len(values))]
        return self.fill(values)

    def _fill(self, values: Sequence[str]) -> str | Missing:
        parts = self._parts.copy()
        for position, index, default, header in self._slots:
            value = values[index].strip()
            if not value:
                if default is None:
                    return Missing(header)
                value = default
            parts[position] = value
        return "".join(parts)


def _specialised(pieces: tuple[str | Slot, ...]) -> Callable[[Sequence[str]], str | Missing] | None:
    """A render function for a template of one or two slots, written out (an f-string of
    locals instead of a list filled and joined): most templates; None for the others."""
    literals = [""]
    slots: list[Slot] = []
    for piece in pieces:
        if isinstance(piece, Slot):
            slots.append(piece)
            literals.append("")
        else:
            literals[-1] += piece
    if len(slots) == 1:
        (l0, l1), (s1,) = literals, slots
        i1, d1, m1 = s1.index, s1.default, Missing(s1.header)

        def one(values: Sequence[str]) -> str | Missing:
            v1 = values[i1].strip()
            if not v1:
                if d1 is None:
                    return m1
                v1 = d1
            return f"{l0}{v1}{l1}"
        return one
    if len(slots) == 2:
        (l0, l1, l2), (s1, s2) = literals, slots
        i1, d1, m1 = s1.index, s1.default, Missing(s1.header)
        i2, d2, m2 = s2.index, s2.default, Missing(s2.header)

        def two(values: Sequence[str]) -> str | Missing:
            v1, v2 = values[i1].strip(), values[i2].strip()
            if not (v1 and v2):
                if not v1:
                    if d1 is None:
                        return m1
                    v1 = d1
                if not v2:
                    if d2 is None:
                        return m2
                    v2 = d2
            return f"{l0}{v1}{l1}{v2}{l2}"
        return two
    return None


def _next_brace(text: str, start: int) -> int:
    opening, closing = text.find("{", start), text.find("}", start)
    if opening < 0:
        return closing
    return opening if closing < 0 else min(opening, closing)


def _around(text: str, position: int) -> str:
    """A short one-line excerpt of ``text`` from ``position``, to show where."""
    excerpt = " ".join(text[position:position + 24].split())
    return repr(excerpt + ("..." if len(text) > position + 24 else ""))


def _slot(written: str, position: int, headers: Sequence[str]) -> Slot:
    """The slot for ``written`` (``{Name}`` or ``{Name|default}``), found at ``position``."""
    inside = written[1:-1]
    name, bar, default = inside.partition("|")
    if not name.strip():
        raise TemplateError(
            f"empty placeholder {written} at character {position + 1}: put a column name "
            "between the braces, or write '{{' and '}}' for literal braces")
    try:
        index = find_column(name, headers)
    except LookupError as exc:
        raise TemplateError(f"placeholder {written}: {exc}") from None
    return Slot(index, headers[index], default.strip() if bar else None, written)
