"""GSM 03.38 character counting: encoding, length in septets or UTF-16 units, SMS segments.

Pure functions, no I/O and no caching: the caller counts one message per row of campaigns of
a million rows and may cache by text itself. The common message (every character in the
basic table) costs one C-level scan (``bytes.translate`` for Latin-1 text, else a regex) and a
``len``; extension characters are counted by a regex too, and only a long message holding
them is walked (match by match, not character by character) to place the escape pairs that
must not be split across two parts.

Segments: GSM-7 fits 160 septets in one SMS, else parts of at most 153; an extension
character is an escape pair (2 septets) never split, so a part may hold 152. UCS-2 fits 70
UTF-16 units in one SMS, else parts of at most 67; a character outside the BMP is a surrogate
pair (2 units) never split either. Empty text is 0 units and 0 segments: the caller reports it.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from enum import StrEnum

# The default alphabet, the standard's 128 code points in order (as on the Wikipedia
# "GSM 03.38" page). Position 0x1B is the escape to the extension table, not a character:
# it stands here as U+001B to keep the positions, and is left out of BASIC.
BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = "\x1b"
BASIC = frozenset(BASIC_TABLE) - {ESCAPE}
# Each of these is sent as ESC + a code: 2 septets.
EXTENSION = frozenset("\f^{}\\[~]|€")
GSM = BASIC | EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def _class(chars: frozenset[str], *, negate: bool = False) -> re.Pattern[str]:
    body = "".join(re.escape(c) for c in sorted(chars))
    return re.compile(f"[{'^' if negate else ''}{body}]")


_NON_BASIC = _class(BASIC, negate=True)
# The Latin-1 part of the basic table, for the byte-level check in _all_basic.
_BASIC_LATIN1 = bytes(sorted(ord(c) for c in BASIC if ord(c) < 256))
BASIC_ASCII = bytes(sorted(ord(c) for c in BASIC if c.isascii()))
"""The basic table's ASCII characters as bytes: ``text.encode().translate(None, BASIC_ASCII)``
leaves the UTF-8 of every other character, in order (empty for the common message)."""
_NON_GSM = _class(GSM, negate=True)
_EXTENSION = _class(EXTENSION)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

# Close GSM forms for characters outside GSM 03.38 (the keys are never GSM characters; a
# test checks it). Accented letters missing here fall back to their NFD base letter.
_TRANSLITERATIONS: dict[str, str] = {
    **dict.fromkeys("êë", "e"), **dict.fromkeys("ÊË", "E"),
    "â": "a", "Â": "A",
    **dict.fromkeys("îï", "i"), **dict.fromkeys("ÎÏ", "I"),
    "ô": "o", "Ô": "O", "û": "u", "Û": "U",
    "ç": "c", "œ": "oe", "Œ": "OE",
    # Latin letters without a decomposition.
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ħ": "h", "Ħ": "H",
    "\u0131": "i", "ŧ": "t", "Ŧ": "T", "þ": "th", "Þ": "TH",
    # Typography that word processors put in.
    **dict.fromkeys("’‘‚‛′´`‹›", "'"),  # noqa: RUF001 - these look-alikes are the point
    **dict.fromkeys("“”„‟″«»", '"'),
    "…": "...",
    **dict.fromkeys("‐‑‒–—―−", "-"),  # noqa: RUF001
    # Non-breaking, fixed-width and thin spaces, and the tab.
    **dict.fromkeys("\t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                    "\u2009\u200a\u202f\u205f\u3000", " "),
    # Invisible characters: zero-width spaces and joiners, the BOM, the soft hyphen.
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
}


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


_GSM7, _UCS2 = Encoding.GSM7, Encoding.UCS2  # a module global is cheaper than a member lookup


class Policy(StrEnum):
    """What to do with characters outside GSM 03.38 (the ``non_gsm`` setting)."""

    TRANSLITERATE = "transliterate"
    REJECT = "reject"
    UNICODE = "unicode"


@dataclass(frozen=True, slots=True)
class Counted:
    """A message as it would be sent, and what it costs.

    ``units`` are septets for gsm7 and UTF-16 code units for ucs2. A character that stays
    outside GSM in a gsm7 count (``unsendable``) is counted as 1 septet, so the length is
    still meaningful in the report. ``non_gsm`` lists the original text's characters outside
    GSM 03.38 whatever the policy; the row is sendable when ``unsendable`` is empty.
    """

    text: str
    encoding: Encoding
    characters: int
    units: int
    segments: int
    non_gsm: tuple[str, ...]
    replaced: tuple[tuple[str, str], ...]
    unsendable: tuple[str, ...]


def count(text: str, policy: Policy = Policy.TRANSLITERATE) -> Counted:
    """Count ``text`` as it would be sent under ``policy``.

    - transliterate: characters with a close GSM form are replaced (``replaced``), the result
      is counted as GSM-7; the rest (emoji, other scripts) are ``unsendable``. A decomposed
      accent (e + U+0301) is first composed (é), and dropped if that gives no GSM letter;
      either way the mark is reported as replaced by "".
    - reject: the text is unchanged and every character outside GSM is ``unsendable``.
    - unicode: the text is unchanged; GSM-7 if every character is GSM, else UCS-2.
    """
    if _all_basic(text):
        n = len(text)
        segments = -(-n // GSM7_PART) if n > GSM7_SINGLE else (1 if n else 0)
        return Counted(text, _GSM7, n, n, segments, (), (), ())
    specials = _NON_BASIC.findall(text)
    distinct = dict.fromkeys(specials)
    if EXTENSION.isdisjoint(distinct):
        non_gsm = tuple(distinct)
    else:
        non_gsm = tuple(c for c in distinct if c not in EXTENSION)
        if not non_gsm:  # GSM with extension characters: ``specials`` are the escape pairs
            return _gsm7(text, (), (), (), doubles=len(specials))
    if policy == Policy.UNICODE:
        return _ucs2(text, non_gsm)
    if policy == Policy.REJECT:
        return _gsm7(text, non_gsm, (), non_gsm)
    return _transliterated(text, non_gsm)


def basic_segments(text: str) -> int:
    """Segments of a text made only of basic-table characters, else 0 (and for empty text).

    The hot path of validation: a message that needs no escape, transliteration or UCS-2 is
    counted without building a :class:`Counted`.
    """
    if not text or not _all_basic(text):
        return 0
    n = len(text)
    return -(-n // GSM7_PART) if n > GSM7_SINGLE else 1


@dataclass(frozen=True, slots=True)
class Specials:
    """What the characters of a text outside the basic table make of it under a policy,
    whatever basic characters surround them.

    For a text whose characters outside the basic table are, in order, those given to
    :func:`specials`, ``count(text, policy)`` has this ``encoding``, ``non_gsm``,
    ``replaced`` and ``unsendable``, ``len(text) + extra`` units, the text ``sent(text)`` and
    ``segments(text)`` segments. Validation keeps one per such sequence of characters:
    campaigns repeat a few of them over a million messages.
    """

    encoding: Encoding
    extra: int  # units beyond len(text): escapes, longer replacements, surrogate pairs
    wide: int  # characters of the sent text that take 2 units and are never split
    non_gsm: tuple[str, ...]
    replaced: tuple[tuple[str, str], ...]
    unsendable: tuple[str, ...]

    @property
    def single(self) -> int:
        """The units that fit in one SMS."""
        return GSM7_SINGLE if self.encoding == _GSM7 else UCS2_SINGLE

    @property
    def part(self) -> int:
        """The units that fit in one part of a longer message."""
        return GSM7_PART if self.encoding == _GSM7 else UCS2_PART

    def sent(self, text: str) -> str:
        for old, new in self.replaced:
            text = text.replace(old, new)
        return text

    def segments(self, text: str) -> int:
        if self.encoding == _GSM7:
            return _measure(self.sent(text), _EXTENSION, GSM7_SINGLE, GSM7_PART, self.wide)[1]
        return _measure(text, _ASTRAL, UCS2_SINGLE, UCS2_PART, self.wide)[1]


def specials(chars: str, policy: Policy = Policy.TRANSLITERATE) -> Specials | None:
    """How :func:`count` treats a text whose characters outside the basic table are ``chars``
    (in order, repeats included), or None when that also depends on the characters around
    them: a combining mark to compose under transliterate."""
    ext = sum(char in EXTENSION for char in chars)
    non_gsm = tuple(char for char in dict.fromkeys(chars) if char not in EXTENSION)
    if not non_gsm:
        return Specials(_GSM7, ext, ext, (), (), ())
    if policy == Policy.UNICODE:
        astral = sum(char > "\uffff" for char in chars)
        return Specials(_UCS2, astral, astral, non_gsm, (), ())
    if policy == Policy.REJECT:
        return Specials(_GSM7, ext, ext, non_gsm, (), non_gsm)
    if any(unicodedata.combining(char) for char in non_gsm):
        return None
    replaced, unsendable = _replacements(non_gsm)
    extra = wide = ext
    table = dict(replaced)
    for char in chars:
        replacement = table.get(char)
        if replacement is not None:
            escapes = septets(replacement) - len(replacement)
            extra += len(replacement) - 1 + escapes
            wide += escapes
    return Specials(_GSM7, extra, wide, non_gsm, replaced, unsendable)


def is_gsm(text: str) -> bool:
    """Whether every character is in the basic or the extension table."""
    return _NON_GSM.search(text) is None


def septets(text: str) -> int:
    """GSM-7 length: 2 per extension character, 1 per other character (GSM or not)."""
    return len(text) + len(_EXTENSION.findall(text))


def gsm_parts(text: str) -> list[str]:
    """``text`` split into its SMS parts as GSM-7, escape pairs kept whole ([] when empty)."""
    return _split(text, _EXTENSION, GSM7_SINGLE, GSM7_PART)


def ucs2_parts(text: str) -> list[str]:
    """``text`` split into its SMS parts as UCS-2, surrogate pairs kept whole ([] when empty)."""
    return _split(text, _ASTRAL, UCS2_SINGLE, UCS2_PART)


def _all_basic(text: str) -> bool:
    """Whether every character is in the basic table: the fast path of ``count``.

    A Latin-1 text (the usual French message) is checked with ``bytes.translate``, about 3
    times faster than the regex search; any other text goes to the regex.
    """
    raw = text.encode("latin-1", "ignore")
    if len(raw) == len(text):
        return not raw.translate(None, _BASIC_LATIN1)
    return _NON_BASIC.search(text) is None


def _gsm7(text: str, non_gsm: tuple[str, ...], replaced: tuple[tuple[str, str], ...],
          unsendable: tuple[str, ...], doubles: int | None = None) -> Counted:
    units, segments = _measure(text, _EXTENSION, GSM7_SINGLE, GSM7_PART, doubles)
    return Counted(text, _GSM7, len(text), units, segments, non_gsm, replaced,
                   unsendable)


def _ucs2(text: str, non_gsm: tuple[str, ...]) -> Counted:
    units, segments = _measure(text, _ASTRAL, UCS2_SINGLE, UCS2_PART)
    return Counted(text, _UCS2, len(text), units, segments, non_gsm, (), ())


def _transliterated(text: str, non_gsm: tuple[str, ...]) -> Counted:
    """Replace what has a close GSM form; what has none is left in place and reported."""
    work, candidates = text, non_gsm
    absorbed: tuple[tuple[str, str], ...] = ()
    if any(unicodedata.combining(c) for c in non_gsm):
        work = unicodedata.normalize("NFC", text)
        candidates = tuple(dict.fromkeys(_NON_GSM.findall(work)))
        absorbed = tuple((c, "") for c in non_gsm
                         if unicodedata.combining(c) and c not in candidates)
    replaced, unsendable = _replacements(candidates)
    sent = work
    for char, replacement in replaced:
        sent = sent.replace(char, replacement)  # per distinct char: faster than translate
    return _gsm7(sent, non_gsm, (*replaced, *absorbed), unsendable)


def _replacements(chars: tuple[str, ...]) -> tuple[tuple[tuple[str, str], ...],
                                                     tuple[str, ...]]:
    """Of distinct characters outside GSM 03.38: (character, GSM form) for those that have
    one, and those that have none, each in the given order."""
    replaced: list[tuple[str, str]] = []
    unsendable: list[str] = []
    for char in chars:
        replacement = _replacement(char)
        if replacement is None:
            unsendable.append(char)
        else:
            replaced.append((char, replacement))
    return tuple(replaced), tuple(unsendable)


def _replacement(char: str) -> str | None:
    """The close GSM form of a non-GSM character, or None when it has none.

    Beyond the explicit table: the character's canonical form when that is GSM (U+212B
    ANGSTROM SIGN is Å), else its NFD base letter, keeping one accent where that gives a GSM
    letter (ǘ is ü, ờ is ò, á is a); never a base that is itself outside GSM.
    """
    explicit = _TRANSLITERATIONS.get(char)
    if explicit is not None:
        return explicit
    if unicodedata.combining(char):
        return ""  # a stray accent that composed with nothing
    composed = unicodedata.normalize("NFC", char)
    if is_gsm(composed):
        return composed
    decomposed = unicodedata.normalize("NFD", char)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if not base or not is_gsm(base):
        return None
    for mark in (c for c in decomposed if unicodedata.combining(c)):
        accented = unicodedata.normalize("NFC", base + mark)
        if is_gsm(accented):
            return accented
    return base


def _measure(text: str, wide: re.Pattern[str], single: int, part: int,
             doubles: int | None = None) -> tuple[int, int]:
    """(units, segments); ``wide`` matches the characters that take 2 units, ``doubles``
    is their number when the caller already knows it."""
    if doubles is None:
        doubles = len(wide.findall(text))
    units = len(text) + doubles
    if units <= single:
        return units, (1 if units else 0)
    fewest = -(-units // part)  # every part full
    if not doubles:
        return units, fewest
    # A part holds ``part`` units, or one less when a 2-unit character would straddle its
    # end: unless that could change the count, the characters need not be placed.
    if fewest == 1 - (-(units - part) // (part - 1)):
        return units, fewest
    return units, len(_part_ends(units, _wide_starts(wide, text), single, part))


def _wide_starts(wide: re.Pattern[str], text: str) -> list[int]:
    """Unit offsets of the 2-unit characters, ascending: each earlier one shifts by 1."""
    return [m.start() + i for i, m in enumerate(wide.finditer(text))]


def _part_ends(units: int, wide_starts: list[int], single: int, part: int) -> list[int]:
    """Unit offsets where each part ends: greedy, moved back by 1 to keep a pair whole."""
    if units <= single:
        return [units] if units else []
    starts = set(wide_starts)
    ends: list[int] = []
    start = 0
    while units - start > part:
        end = start + part
        if end - 1 in starts:
            end -= 1
        ends.append(end)
        start = end
    ends.append(units)
    return ends


def _split(text: str, wide: re.Pattern[str], single: int, part: int) -> list[str]:
    starts = _wide_starts(wide, text)
    parts: list[str] = []
    begin = 0
    for end_unit in _part_ends(len(text) + len(starts), starts, single, part):
        end = end_unit - bisect_left(starts, end_unit)  # back from units to characters
        parts.append(text[begin:end])
        begin = end
    return parts
