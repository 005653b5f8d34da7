"""The row rules: one campaign file in, a summary and the surviving rows out.

The same code runs in ``check`` and in the daemon. It streams: what grows with the file is
only the set of numbers already seen (for duplicates). Errors and surviving rows are handed to
sinks as they are found, so a million invalid rows never sit in memory.

Codes (the contract's): ``field_count``, ``idremote``, ``msisdn``, ``oadc``, ``oadc_mobile``,
``oadc_blocked``, ``msg_empty``, ``msg_no_optout``, ``msg_non_gsm``, ``msg_too_long``;
``duplicate`` drops a later row without being an error.
Given the suppression list, validation also counts the valid rows it would drop at upload
(``suppressed``: not an error, and those rows stay counted as valid).

Speed: a million rows must take a couple of seconds, so the row loop calls as little Python
as it can. The usual number is decided by one regex from a table of number heads
(:meth:`NumberNormalizer.shortcuts`), the usual message by two C calls (its characters
outside the basic table's ASCII, usually none) or by a verdict kept per such sequence of
characters (:func:`gsm.specials`): the exact full paths remain for everything else. The
opt-out mention (:mod:`.compliance`) is looked for with two byte scans and, from the first
"stop" on, one regex match; it is appended before the message is counted, so segments and
``msg_too_long`` are those of the text sent.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..errors import InputError
from .campaign_file import (
    ENCODINGS,
    WrongEncoding,
    is_header,
    quoted_record,
    read_lines,
    undecodable,
)
from .compliance import (
    ACCENTED_STOP_LETTERS,
    STOP_REACH,
    OptoutMention,
    OptoutPolicy,
    blocklist_key,
    sender_problem,
)
from .gsm import BASIC, BASIC_ASCII, Policy, Specials, count, specials
from .numbers import NumberNormalizer, Shortcut

CODES = ("field_count", "idremote", "msisdn", "oadc", "oadc_mobile", "oadc_blocked", "msg_empty",
         "msg_no_optout", "msg_non_gsm", "msg_too_long")
FIELDS = ("IDREMOTE", "MSISDN", "OADC", "MSG")
EXAMPLES_PER_CODE = 3
MESSAGE_CACHE = 65_536
"""Verdicts remembered, per message text or per sequence of special characters (bounded)."""

_IDREMOTE = re.compile(r"[A-Za-z0-9]{1,40}")
_OADC = re.compile(r"[A-Za-z0-9]{1,11}|[0-9]{1,15}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NO_SHORTCUT: Shortcut = (re.compile("(?!)").fullmatch, 0, 0)  # a check that always fails


@dataclass(frozen=True, slots=True)
class Rules:
    """The campaign settings the row rules depend on.

    ``optout`` is the opt-out policy in force (``compliance.resolve_policy``: the settings'
    default is resolved by whoever builds this); ``marketing`` turns on the senders' rules
    (``oadc_mobile``, and ``oadc_blocked`` with ``sender_blocklist``). The defaults are the
    rules without them.
    """

    default_sender: str = ""
    default_region: str = "FR"
    max_segments: int = 5
    policy: Policy = Policy.TRANSLITERATE
    max_invalid_percent: float = 5.0
    marketing: bool = False
    stop_mention: str = ""
    optout: OptoutPolicy = "off"
    sender_blocklist: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    code: str
    field: str
    value: str
    detail: str

    def as_csv_row(self) -> list[str]:
        return [str(self.line), self.code, self.field, self.value, self.detail]


@dataclass(frozen=True, slots=True)
class Row:
    """A row that survives validation, in the form it will be uploaded."""

    line: int
    idremote: str
    msisdn: str
    oadc: str
    text: str
    segments: int


@dataclass(slots=True)
class Summary:
    """What validation found; ``unreadable`` is set when the file could not be read at all.

    ``suppressed`` is None unless a suppression list was given: then the valid rows (counted
    in ``valid``, duplicates not) whose number is on it. ``optout_appended``: the valid rows
    (duplicates not) whose message got the opt-out mention appended.
    """

    file: str
    encoding: str = ""
    header: bool = False
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    segments: int = 0
    per_row: Counter[int] = field(default_factory=Counter)
    """Valid rows by their number of SMS (segments): how many take 1, 2, 3..."""
    invalid_by_code: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[RowError]] = field(default_factory=dict)
    replaced: Counter[str] = field(default_factory=Counter)
    unreadable: str | None = None
    suppressed: int | None = None
    optout_appended: int = 0

    def hold_reason(self, rules: Rules) -> str | None:
        """Why the whole file must be held back, or None."""
        if self.unreadable:
            return f"cannot be read: {self.unreadable}"
        if self.valid == 0:
            return "no row survives validation" if self.rows else "no rows"
        percent = 100.0 * self.invalid / self.rows
        if percent > rules.max_invalid_percent:
            return (
                f"{self.invalid} of {self.rows} rows invalid ({percent:.1f}%), "
                f"more than max_invalid_percent = {rules.max_invalid_percent:g}"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON data; "suppressed" only when a suppression list was given."""
        suppressed = {} if self.suppressed is None else {"suppressed": self.suppressed}
        return {
            "file": self.file,
            "encoding": self.encoding,
            "header": self.header,
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            **suppressed,
            "segments": self.segments,
            "segments_per_row": {str(n): self.per_row[n] for n in sorted(self.per_row)
                                 if self.per_row[n]},
            "optout_appended": self.optout_appended,
            "invalid_by_code": dict(self.invalid_by_code),
            "examples": {
                code: [
                    {"line": e.line, "field": e.field, "value": e.value, "detail": e.detail}
                    for e in errors
                ]
                for code, errors in self.examples.items()
            },
            "transliterated": dict(self.replaced),
            "unreadable": self.unreadable,
        }


RowSink = Callable[[Row], None]
ErrorSink = Callable[[RowError], None]

_Judged = tuple[str, int, str | None, str, tuple[str, ...]]
"""A message text's verdict, from :func:`gsm.count`: text sent, segments, code, detail,
replacements ("ê->e")."""

_Verdict = tuple[bool, str | None, str, tuple[str, ...], int, int, int, Specials | None]
"""The verdict for every message whose characters outside the basic table's ASCII are the
same (a plain tuple: the row loop unpacks it). Blankable (those characters are all white
space: the message itself must be looked at), code, detail, replacements, extra units, units
in one SMS, units per part when parts follow from the units alone (else 0), and the
:class:`gsm.Specials` (None: each message is judged whole)."""


class Tracker:
    """The valid rows of a slice, kept compactly, so that duplicates across slices can be
    found and taken off exactly when the slices' summaries are merged."""

    __slots__ = ("appended", "keys", "parts", "replaced")

    def __init__(self) -> None:
        self.keys = array("q")
        self.parts = array("H")
        self.replaced: dict[int, tuple[str, ...]] = {}
        self.appended = bytearray()
        """Under ``stop_mention_policy = "append"`` only (else empty): one byte per row, 1
        when the row's message got the mention appended."""

    def add(self, key: int, parts: int, replaced: tuple[str, ...],
            appended: bool | None = None) -> None:
        if replaced:
            self.replaced[len(self.keys)] = replaced
        self.keys.append(key)
        self.parts.append(parts)
        if appended is not None:
            self.appended.append(appended)


class Validator:
    """Applies the row rules; holds only per-run caches (numbers, message verdicts).

    ``suppressed``: the suppression list, when the summary should count the valid rows it
    would drop at upload: numbers in E.164 as validation writes them ("+33612345678"; anything
    else matches no row). A set is used as it is, not copied: do not change it meanwhile.
    """

    def __init__(
        self,
        rules: Rules,
        normalizer: NumberNormalizer | None = None,
        *,
        suppressed: Collection[str] | None = None,
    ) -> None:
        self.rules = rules
        normalizer = normalizer or NumberNormalizer(rules.default_region)
        self._normalize = normalizer.normalize
        self._shortcuts = normalizer.shortcuts()
        self._messages: dict[str, _Judged] = {}
        self._verdicts: dict[bytes, _Verdict] = {}
        self._accented: dict[bytes, bool] = {}
        self._blocked = blocklist_key(rules.sender_blocklist)
        self._mention = OptoutMention(rules.stop_mention)
        self.suppressed: AbstractSet[str] | None = (
            suppressed if suppressed is None or isinstance(suppressed, AbstractSet)
            else frozenset(suppressed))

    def validate(
        self,
        stream: BinaryIO,
        *,
        file: str,
        on_row: RowSink | None = None,
        on_error: ErrorSink | None = None,
    ) -> Summary:
        """Check every row of ``stream``; sinks get rows and errors in input order.

        A file that cannot be read gives a summary with ``unreadable`` set (and the sinks may
        have received rows before the problem was found: the caller discards them).
        """
        for encoding in ENCODINGS:
            stream.seek(0)
            summary = Summary(file=file, encoding=encoding.removesuffix("-sig"))
            try:
                self._run(read_lines(stream, encoding), 1, summary, on_row, on_error)
            except WrongEncoding:
                if encoding == ENCODINGS[-1]:
                    line, byte = undecodable(stream, encoding)
                    summary.unreadable = (
                        f"line {line}: byte 0x{byte:02X} is neither UTF-8 nor CP1252"
                    )
                    return summary
                continue
            except InputError as exc:
                where = f"line {exc.line}: " if exc.line else ""
                summary.unreadable = where + exc.reason
            return summary
        raise AssertionError("unreachable")  # pragma: no cover

    def validate_lines(
        self,
        lines: Iterator[str],
        *,
        file: str,
        header: bool,
        on_row: RowSink | None = None,
        on_error: ErrorSink | None = None,
        track: Tracker | None = None,
        seen: set[int] | None = None,
    ) -> tuple[Summary, int]:
        """Check ``lines`` (physical lines without their line ends, as
        :func:`.campaign_file.read_lines` gives them), numbered from 1: a slice of a big file
        checked on one of several cores, or rows rendered in memory (checked without being
        written and read back). Return the summary and the number of physical lines read.

        A header is looked for only when ``header`` (the file's start). Raises
        :class:`WrongEncoding` from a reader's lines (the caller falls back to
        :meth:`validate`); anything else unreadable is in ``unreadable``. With ``track``,
        the valid rows are tracked for a later merge; ``seen`` receives the valid rows'
        number keys.
        """
        summary = Summary(file=file, encoding="utf-8")
        read = 0
        try:
            read = self._run(lines, 1, summary, on_row, on_error, header=header,
                             track=track, seen=seen)
        except WrongEncoding:
            raise
        except InputError as exc:
            summary.unreadable = f"line {exc.line}: {exc.reason}" if exc.line else exc.reason
        return summary, read

    def _run(
        self,
        lines: Iterator[str],
        first_line: int,
        summary: Summary,
        on_row: RowSink | None,
        on_error: ErrorSink | None,
        *,
        header: bool = True,
        track: Tracker | None = None,
        seen: set[int] | None = None,
    ) -> int:
        """Check the records of ``lines`` (numbered from ``first_line``) into ``summary``;
        return the number of lines read."""
        # The hot loop of the product: lookups are hoisted into locals, and the common row (a
        # number from the shortcut table, a message of basic characters or with a known
        # sequence of special ones) builds no object but its number key.
        shortcuts = self._shortcuts
        number_key = self._number_key
        verdicts = self._verdicts
        verdict_for = self._verdict_for
        judged = self._messages.get
        judge = self._judge
        seen = set() if seen is None else seen
        add_seen = seen.add
        known = len(seen)  # valid rows: len(seen) - known
        suppressed_numbers = self.suppressed
        sender = self.rules.default_sender
        max_segments = self.rules.max_segments
        marketing = self.rules.marketing
        blocked = self._blocked
        optout = self.rules.optout != "off"
        appending = self.rules.optout == "append"
        mention = self._mention.mention
        spaced_mention = " " + mention  # compliance.with_mention, inlined
        stop_only = not self._mention.other_forms
        mention_specials = mention.encode().translate(None, BASIC_ASCII)
        mention_in = self._mention_in
        accented_known = self._accented.get  # per special characters: an accented S, T, O, P
        starting = self._mention.starting  # stretches from before a "STOP" that start one
        reach = STOP_REACH
        optout_appended = 0
        idremote_ok = _IDREMOTE.fullmatch
        oadc_ok = _OADC.fullmatch
        basic_ascii = BASIC_ASCII
        ok_oadc = None  # the last OADC that passed as it is: most files have one
        tracking = track is not None
        tracker = track if track is not None else Tracker()  # (unused when not tracking)
        tracked, track_key, track_parts = tracker.keys, tracker.keys.append, tracker.parts.append
        track_appended = tracker.appended.append
        invalid = duplicates = segments = suppressed = 0
        per_row: dict[int, int] = {}
        per_row_get = per_row.get
        errors: list[RowError] = []
        replaced_rows: dict[tuple[str, ...], int] = {}  # counted per distinct tuple: cheaper
        shift = 0  # lines read by quoted records beyond their first: line = number + shift
        number = first_line - 1
        quoted_end = 0  # the last line of the last quoted record

        for number, line in enumerate(lines, first_line):
            if '"' in line:
                fields, more = quoted_record(line, lines, number + shift)
                quoted_end = number + shift + more
                shift += more
                number -= more  # noqa: PLW2901 - the record's line stays number + shift
            else:
                fields = line.split(";")
            if len(fields) != 4:
                if not line.strip():
                    continue  # a blank line
                errors.append(_field_count_error(number + shift, fields))
            else:
                idremote, raw_number, oadc, message = fields
                # [A-Za-z0-9]{1,40}, with str methods: cheaper than a regex per row.
                if not (idremote.isalnum() and idremote.isascii() and len(idremote) <= 40):
                    idremote = idremote.strip()
                    if not idremote_ok(idremote):
                        errors.append(RowError(
                            number + shift, "idremote", "IDREMOTE", idremote,
                            "1 to 40 letters or digits",
                        ))
                check, offset, base = shortcuts.get(raw_number[:4], _NO_SHORTCUT)
                if check(nsn := raw_number[offset:]):
                    key = base + int(nsn)
                else:
                    key = number_key(raw_number.strip())
                    if key < 0:
                        errors.append(RowError(
                            number + shift, "msisdn", "MSISDN", raw_number.strip(),
                            "not a valid phone number" if raw_number.strip() else "empty",
                        ))
                if oadc != ok_oadc:
                    if oadc.isalnum() and oadc.isascii() and (
                            len(oadc) <= 11 or (oadc.isdigit() and len(oadc) <= 15)):
                        problem = sender_problem(oadc, blocked) if marketing else None
                        if problem is None:
                            ok_oadc = oadc
                        else:
                            errors.append(RowError(number + shift, problem[0], "OADC", oadc,
                                                   problem[1]))
                    else:
                        oadc = oadc.strip() or sender
                        if oadc:
                            problem = sender_problem(oadc, blocked) if marketing else None
                            # "+33 6 12 34 56 78" is said to be a mobile number, not only bad
                            # characters.
                            if not oadc_ok(oadc) and (problem is None
                                                      or problem[0] != "oadc_mobile"):
                                errors.append(RowError(
                                    number + shift, "oadc", "OADC", oadc,
                                    "1 to 11 letters or digits, or up to 15 digits",
                                ))
                            if problem is not None:
                                errors.append(RowError(number + shift, problem[0], "OADC",
                                                       oadc, problem[1]))
                appended = False
                if optout:
                    encoded = message.encode()
                    specials_utf8 = encoded.translate(None, basic_ascii)
                    # The usual mention, "... STOP au 36111" as in earlier rows, is found
                    # here; OptoutMention.in_row decides the rest.
                    # Without "stop" in any case and without accented letters known to be
                    # in it, a message has none, unless the configured mention is a link.
                    stop_at = message.rfind("STOP")
                    if not (stop_at > 0 and message[stop_at - 1:stop_at + reach] in starting
                            ) and (message and not message.isspace()  # blank: msg_empty
                                   ) and ((stop_only and b"stop" not in encoded.lower() and (
                                               not specials_utf8
                                               or accented_known(specials_utf8) is False))
                                          or not mention_in(message, encoded, specials_utf8)):
                        if appending:  # before counting: what is counted is what is sent
                            message += mention if message[-1].isspace() else spaced_mention
                            specials_utf8 += mention_specials  # a space is basic ASCII
                            appended = True
                        else:
                            errors.append(RowError(
                                number + shift, "msg_no_optout", "MSG", message[:40],
                                "no opt-out mention (STOP and a number, e.g. STOP au 36111, or "
                                "the account's stop_mention) under stop_mention_policy = "
                                "require",
                            ))
                else:
                    specials_utf8 = message.encode().translate(None, basic_ascii)
                if not specials_utf8 and message and not message.isspace():
                    parts = len(message)
                    parts = 1 if parts <= 160 else -(-parts // 153)
                    replaced: tuple[str, ...] = ()
                    if parts > max_segments:
                        errors.append(_too_long(number + shift, message, parts, max_segments))
                else:
                    blankable, code, detail, replaced, extra, single, part, how = (
                        verdicts.get(specials_utf8) or verdict_for(specials_utf8))
                    if how is None or (blankable and not message.strip()):
                        _, parts, code, detail, replaced = judged(message) or judge(message)
                    elif code is None:
                        parts = len(message) + extra  # units
                        if 0 < parts <= single:
                            parts = 1
                        elif part:
                            parts = -(-parts // part)
                        else:  # an escape or surrogate pair to keep whole: placed one by one
                            parts = how.segments(message)
                    if code is not None:
                        errors.append(RowError(number + shift, code, "MSG", message[:40], detail))
                    elif parts > max_segments:
                        errors.append(_too_long(number + shift, message, parts, max_segments))
                if not errors:
                    if key in seen:
                        duplicates += 1
                        continue
                    add_seen(key)
                    segments += parts
                    per_row[parts] = per_row_get(parts, 0) + 1
                    if replaced:
                        replaced_rows[replaced] = replaced_rows.get(replaced, 0) + 1
                    if suppressed_numbers is not None and f"+{key}" in suppressed_numbers:
                        suppressed += 1
                    if appended:
                        optout_appended += 1
                    if on_row is not None:
                        on_row(Row(number + shift, idremote, f"+{key}", oadc,
                                   self._sent(message), parts))
                    if tracking:  # Tracker.add, inlined
                        if replaced:
                            tracker.replaced[len(tracked)] = replaced
                        track_key(key)
                        track_parts(parts)
                        if appending:
                            track_appended(appended)
                    continue
            if header and len(seen) == known and not (invalid or duplicates):  # the first
                header = False
                if is_header(fields):  # names, not values: skipped
                    summary.header = True
                    errors.clear()
                    continue
            invalid += 1
            self._record_errors(summary, fields, errors, on_error)
            errors.clear()

        valid = len(seen) - known
        for replaced, times in replaced_rows.items():
            for change in replaced:
                summary.replaced[change] += times
        summary.rows = valid + invalid + duplicates
        summary.valid, summary.invalid = valid, invalid
        summary.duplicates, summary.segments = duplicates, segments
        summary.per_row.update(per_row)
        summary.optout_appended = optout_appended
        if suppressed_numbers is not None:
            summary.suppressed = suppressed
        return max(number + shift, quoted_end) - first_line + 1

    def _number_key(self, raw: str) -> int:
        """The E.164 digits of ``raw`` as an int, or -1 if it is not a valid number."""
        msisdn = self._normalize(raw)
        return -1 if msisdn is None else int(msisdn[1:])

    @staticmethod
    def _record_errors(
        summary: Summary, fields: list[str], errors: list[RowError], on_error: ErrorSink | None
    ) -> None:
        if _CONTROL.search(";".join(fields)):
            raise InputError("binary data: a control character in a field", line=errors[0].line)
        for error in errors:
            summary.invalid_by_code[error.code] += 1
            shown = summary.examples.setdefault(error.code, [])
            if len(shown) < EXAMPLES_PER_CODE:
                shown.append(error)
            if on_error is not None:
                on_error(error)

    def _mention_in(self, message: str, encoded: bytes, specials_utf8: bytes) -> bool:
        """Whether ``message`` holds an opt-out mention (its UTF-8 and the part of it outside
        the basic table's ASCII given)."""
        accented = self._accented.get(specials_utf8) if specials_utf8 else False
        if accented is None:  # an accented S, T, O or P: looked for the slow way
            accented = not ACCENTED_STOP_LETTERS.isdisjoint(specials_utf8.decode())
            if len(self._accented) >= MESSAGE_CACHE:
                self._accented.clear()
            self._accented[specials_utf8] = accented
        return self._mention.in_row(message, encoded, accented)

    def _verdict_for(self, specials_utf8: bytes) -> _Verdict:
        """The verdict for messages whose characters outside the basic table's ASCII are
        ``specials_utf8`` (UTF-8), in order."""
        chars = specials_utf8.decode()
        blankable = chars.isspace() or not chars
        how = specials("".join(c for c in chars if c not in BASIC), self.rules.policy)
        verdict: _Verdict
        if how is None:
            verdict = (blankable, None, "", (), 0, 0, 0, None)
        else:
            replaced = tuple(f"{old}->{new}" for old, new in how.replaced)
            code, detail = None, ""
            if how.unsendable:
                code, detail = "msg_non_gsm", self._non_gsm_detail(how.unsendable)
            part = 0 if how.wide else how.part
            verdict = (blankable, code, detail, replaced, how.extra, how.single, part, how)
        if len(self._verdicts) >= MESSAGE_CACHE:
            self._verdicts.clear()
        self._verdicts[specials_utf8] = verdict
        return verdict

    def _sent(self, message: str) -> str:
        """The text of a valid row as it will be sent."""
        specials_utf8 = message.encode().translate(None, BASIC_ASCII)
        if not specials_utf8:
            return message
        how = (self._verdicts.get(specials_utf8) or self._verdict_for(specials_utf8))[-1]
        if how is None:
            return (self._messages.get(message) or self._judge(message))[0]
        return how.sent(message)

    def _non_gsm_detail(self, unsendable: tuple[str, ...]) -> str:
        shown = " ".join(f"{c!r} (U+{ord(c):04X})" for c in unsendable[:5])
        return f"not in GSM 03.38 under non_gsm = {self.rules.policy}: {shown}"

    def _judge(self, message: str) -> _Judged:
        """The exact verdict for one message text, from :func:`gsm.count`."""
        verdict: _Judged
        if not message.strip():
            verdict = (message, 0, "msg_empty", "message is empty", ())
        else:
            counted = count(message, self.rules.policy)
            replaced = tuple(f"{old}->{new}" for old, new in counted.replaced)
            if counted.unsendable:
                verdict = (counted.text, counted.segments, "msg_non_gsm",
                           self._non_gsm_detail(counted.unsendable), replaced)
            else:
                verdict = (counted.text, counted.segments, None, "", replaced)
        if len(self._messages) >= MESSAGE_CACHE:
            self._messages.clear()
        self._messages[message] = verdict
        return verdict


def _field_count_error(line: int, fields: list[str]) -> RowError:
    n = len(fields)
    return RowError(
        line, "field_count", "row", ";".join(fields)[:80],
        f"{n} field{'s' if n != 1 else ''}, expected 4 (IDREMOTE;MSISDN;OADC;MSG)",
    )


def _too_long(line: int, message: str, parts: int, max_segments: int) -> RowError:
    return RowError(
        line, "msg_too_long", "MSG", message[:40],
        f"{parts} segments, max_segments = {max_segments}",
    )
