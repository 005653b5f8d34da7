"""French commercial-SMS duties that one row can be checked for: the opt-out mention, the sender.

Pure functions and one small class, no I/O. The row rules (:mod:`.validation`) and ``count``
use the same code.

The opt-out mention. Every marketing SMS must say how to opt out for free: in France a
``STOP`` reply to a short code ("STOP au 36111"), or, under the operators' 2026 charter, an
unsubscribe link. A text *has a mention* when it holds

- the word STOP (any case, accents ignored, not glued to a letter before or after it, nor
  after a hyphen: "non-stop" is not one) followed by a number of at least 4 digits, with
  only punctuation, spaces and the short words people put between them ("STOP au 36111",
  "Stop 36111", "STOP : 36 111", "STOP SMS au 36111", "stop à 36111");
- or, when the configured text holds a link, that link: scheme and ``www.`` optional, any
  case, and it may go on after a ``/``, ``?`` or ``#`` (a personal link "https://ex.co/u/Xy12"
  for "https://ex.co/u"; "ex.co/unsub" is another link). Any other link does not count: a
  promotion's own link is no way to opt out;
- or the configured text itself (accents, case and runs of spaces ignored), when it is
  neither of the above (the configuration refuses such a text; this is for direct callers).

Senders (OADC). For marketing SMS a French mobile number as sender is forbidden (since 2019:
replies would reach a person's phone, and operators block such traffic), and operators block
generic words that phishing uses ("INFO", "BANQUE", ...), matched as the whole sender.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

OptoutPolicy = Literal["append", "require", "off"]
OPTOUT_POLICIES: tuple[OptoutPolicy, ...] = ("append", "require", "off")

DEFAULT_SENDER_BLOCKLIST = ("INFO", "ALERTE", "RDV", "BANQUE", "COLIS", "PAIEMENT",
                            "LIVRAISON")
"""Generic senders operators block (matched case-insensitively as the whole sender)."""


def _fold_classes() -> dict[str, str]:
    """For each ASCII letter, itself and its accented forms (Latin-1 and Latin Extended-A),
    both cases: what "accents ignored" means here."""
    classes: dict[str, set[str]] = {}
    for code in [*range(0x41, 0x5B), *range(0x61, 0x7B), *range(0xC0, 0x180)]:
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[0].lower()
        if base.isascii() and base.isalpha():
            classes.setdefault(base, set()).update({char, char.lower(), char.upper()})
    return {base: "".join(sorted(chars)) for base, chars in classes.items()}


_FOLD = _fold_classes()
ACCENTED_STOP_LETTERS = frozenset("".join(_FOLD[c] for c in "stop")) - frozenset("sStToOpP")
"""The accented forms of S, T, O and P: a text without any of them and without the ASCII
letters "stop" in some case cannot hold the word STOP."""


def _letter(base: str) -> str:
    return "[" + _FOLD[base] + "]"


_NOT_LETTER = r"(?![^\W\d_])"  # not followed by a letter
# Short words between STOP and the number ("STOP SMS au 36111", "STOP par SMS au ...").
_CONNECTOR = r"(?:sms|par|au|aux|a|à|al|at|to|on|vers|n°|no|num[eé]ro)"
_NUMBER = r"\+?\d(?:[\s.]?\d){3,}"
# The S is matched first and the lookbehind checked after it: a pattern that starts with a
# character class is scanned for in C, one that starts with a lookbehind is not.
_STOP = re.compile(
    _letter("s") + r"(?<![\w-].)" + _letter("t") + _letter("o") + _letter("p") + _NOT_LETTER
    + r"[\W_]{0,5}(?:" + _CONNECTOR + _NOT_LETTER + r"[\W_]{0,5}){0,3}" + _NUMBER,
    re.IGNORECASE,
)
_LINK = re.compile(r"(?:https?://|www\.)[^\s]+", re.IGNORECASE)
STOP_REACH = 64
"""Characters from the S of STOP that decide whether a mention starts there (STOP, up to 5
separators, 3 short words with theirs, 4 digits with theirs: at most 56), so that a verdict
can be kept per such stretch of text."""
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 bytes that do not start a character
KEPT_VERDICTS = 65_536


def stop_with_number(text: str) -> bool:
    """Whether ``text`` holds the word STOP followed by a number."""
    return _STOP.search(text) is not None


def mention_link(mention: str) -> str | None:
    """The link in ``mention`` as it is matched (no scheme, no ``www.``, no trailing
    punctuation or slash, lower case), or None."""
    found = _LINK.search(mention)
    if found is None:
        return None
    link = re.sub(r"^(?:https?://)?(?:www\.)?", "", found.group(), flags=re.IGNORECASE)
    link = link.rstrip(".,;:!?)»\"'").rstrip("/").lower()
    return link if "." in link.split("/", 1)[0] else None


def _folded_literal(text: str) -> str:
    """A pattern for ``text`` with accents, case and runs of white space ignored."""
    return r"\s+".join("".join(_fold_char(c) for c in word) for word in text.split())


def _fold_char(char: str) -> str:
    base = unicodedata.normalize("NFKD", char)[0].lower()
    if base in _FOLD and char.isalpha():
        return _letter(base)
    return re.escape(char)


class OptoutMention:
    """Finds an opt-out mention in a text, for one configured ``mention`` (may be "").

    :meth:`in_text` is the rule. :meth:`in_row` gives the same answer from what the row loop
    has at hand (the text's UTF-8 and whether it holds an accented S, T, O or P) at a
    fraction of the cost: C-level scans for "STOP" and "stop", and the regex only where one
    is found, once per distinct stretch of text there (:meth:`starts_at`).
    """

    __slots__ = ("_host", "_not_starting", "_other", "mention", "starting")

    def __init__(self, mention: str = "") -> None:
        self.mention = mention.strip()
        # The stretches of text (from the character before the S of a "stop", STOP_REACH
        # long) where a mention starts, and where none does: most campaigns end every
        # message with the same words. Bounded; the row loop looks in ``starting`` itself.
        self.starting: set[str] = set()
        self._not_starting: set[str] = set()
        self._other: re.Pattern[str] | None = None
        self._host: bytes | None = None  # a byte string any text with the link holds
        link = mention_link(self.mention)
        if link is not None:
            self._host = link.split("/", 1)[0].encode()
            self._other = re.compile(
                r"(?<![\w.-])(?:https?://)?(?:www\.)?" + re.escape(link) + r"(?![\w-]|\.\w)",
                re.IGNORECASE)
        elif self.mention and not stop_with_number(self.mention):
            self._other = re.compile(_folded_literal(self.mention), re.IGNORECASE)

    @property
    def other_forms(self) -> bool:
        """Whether a mention may be something else than STOP and a number (a link)."""
        return self._other is not None

    def in_text(self, text: str) -> bool:
        """Whether ``text`` holds an opt-out mention."""
        if _STOP.search(text):
            return True
        return self._other is not None and self._other.search(text) is not None

    def in_row(self, text: str, encoded: bytes, accented: bool) -> bool:
        """:meth:`in_text`, given ``encoded`` = ``text.encode()`` and ``accented`` = whether
        ``text`` holds any of :data:`ACCENTED_STOP_LETTERS`."""
        at = text.rfind("STOP")  # as it is usually written, and usually last
        if at >= 0 and self.starts_at(text, at):
            return True
        lowered = encoded.lower()  # ASCII letters only: the byte offsets stay those of encoded
        at = lowered.find(b"stop")
        if at >= 0:
            if len(text) != len(encoded):  # the character index of that byte
                at = len(encoded[:at].translate(None, _CONTINUATION))
            if self.starts_at(text, at) or _STOP.search(text, at + 1):
                return True
        if accented and _STOP.search(text):
            return True
        if self._other is None:
            return False
        if self._host is not None and self._host not in lowered:
            return False
        return self._other.search(text) is not None

    def starts_at(self, text: str, at: int) -> bool:
        """Whether a STOP mention starts at character ``at`` of ``text``."""
        stretch = text[at - 1:at + STOP_REACH] if at else "\n" + text[:STOP_REACH]
        if stretch in self.starting:
            return True
        if stretch in self._not_starting:
            return False
        starts = _STOP.match(stretch, 1) is not None
        if len(self.starting) + len(self._not_starting) >= KEPT_VERDICTS:
            self.starting.clear()
            self._not_starting.clear()
        (self.starting if starts else self._not_starting).add(stretch)
        return starts


@functools.lru_cache(maxsize=16)
def optout_mention(mention: str = "") -> OptoutMention:
    """The (cached) finder for ``mention``."""
    return OptoutMention(mention)


def has_optout_mention(text: str, mention: str = "") -> bool:
    """Whether ``text`` tells how to opt out: STOP and a number, or ``mention``'s link, or
    ``mention`` itself (see the module's docstring)."""
    return optout_mention(mention).in_text(text)


def mention_separator(text: str) -> str:
    """What goes between a message and an appended mention: a space, unless the message
    already ends with white space."""
    return "" if text[-1:].isspace() else " "


def with_mention(text: str, mention: str) -> str:
    """``text`` as sent under ``stop_mention_policy = "append"``: with a space and ``mention``
    added when it holds no mention. A blank text or an empty ``mention`` is left as it is
    (an empty message stays empty, and is reported as such)."""
    mention = mention.strip()
    if not mention or not text.strip() or has_optout_mention(text, mention):
        return text
    return text + mention_separator(text) + mention


MentionEffect = Literal["present", "appended", "missing", "empty"]


def mention_effect(text: str, mention: str) -> tuple[str, MentionEffect]:
    """What ``stop_mention_policy`` does to ``text`` (for ``count --stop-mention``): the text
    as it would be counted and sent, and

    - "present": it holds a mention, unchanged;
    - "appended": it did not, ``mention`` is appended (as under "append");
    - "missing": it does not and there is no ``mention`` to append (a row under "require"
      would be ``msg_no_optout``);
    - "empty": a blank text, unchanged (``msg_empty``).
    """
    if not text.strip():
        return text, "empty"
    if has_optout_mention(text, mention):
        return text, "present"
    if not mention.strip():
        return text, "missing"
    return with_mention(text, mention), "appended"


def mention_problem(mention: str) -> str | None:
    """Why ``mention`` cannot be the account's opt-out text, or None."""
    if not mention.strip():
        return None
    if any(unicodedata.category(c) == "Cc" for c in mention):
        return "must be one line of text (no control characters)"
    if not stop_with_number(mention) and mention_link(mention) is None:
        return ('must hold STOP followed by the number to text (e.g. "STOP au 36111") '
                "or an unsubscribe link (https://...)")
    return None


def resolve_policy(policy: OptoutPolicy | None, mention: str, marketing: bool) -> OptoutPolicy:
    """The policy in force: the one set, else append when there is a mention to append, else
    require for marketing campaigns and off for transactional ones."""
    if policy is not None:
        return policy
    if mention.strip():
        return "append"
    return "require" if marketing else "off"


# Senders -------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s.\-()/]")
# French mobile numbers: 06/07 in metropolitan France and, in E.164, the overseas
# departments' mobile ranges (Réunion and Mayotte 639/692/693, Guadeloupe and the northern
# islands 690/691, Guyane 694, Martinique 696/697), written nationally, with + or 00, or
# without either.
_MOBILE = re.compile(
    r"0[67]\d{8}"
    r"|(?:\+|00)?(?:33[67]\d{8}|262(?:639|69[23])\d{6}|590(?:69[01])\d{6}|594694\d{6}"
    r"|596(?:69[67])\d{6})"
)


def is_mobile_sender(sender: str) -> bool:
    """Whether ``sender`` is a French mobile number (separators ignored)."""
    return _MOBILE.fullmatch(_SEPARATORS.sub("", sender)) is not None


def blocklist_key(words: Iterable[str]) -> frozenset[str]:
    """The blocklist as compared: stripped, upper case."""
    return frozenset(word.strip().upper() for word in words if word.strip())


def sender_problem(sender: str, blocked: frozenset[str]) -> tuple[str, str] | None:
    """For a marketing campaign: the code and detail for ``sender``, or None.

    ``blocked`` is :func:`blocklist_key`'s. The characters themselves are the ``oadc`` rule's
    (checked apart, for every campaign).
    """
    if is_mobile_sender(sender):
        return ("oadc_mobile", "a French mobile number cannot be the sender of marketing SMS "
                               "(forbidden since 2019): use the account's alphanumeric sender")
    if sender.strip().upper() in blocked:
        return ("oadc_blocked", "a generic sender that operators block (sender_blocklist)")
    return None
