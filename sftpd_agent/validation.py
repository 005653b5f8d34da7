"""The row rules: one campaign file in, a summary and the surviving rows out.

The same code runs in ``check`` and in the daemon. It streams: what grows with the file is
only the set of numbers already seen (for duplicates). Errors and surviving rows are handed to
sinks as they are found, so a million invalid rows never sit in memory.

Codes (the contract's): ``field_count``, ``idremote``, ``msisdn``, ``oadc``, ``msg_empty``,
``msg_non_gsm``, ``msg_too_long``; ``duplicate`` drops a later row without being an error.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, BinaryIO, NamedTuple

from .errors import InputError
from .gsm import Policy, basic_segments, count
from .numbers import NumberNormalizer
from .reader import ENCODINGS, Record, WrongEncoding, is_header, read_records, undecodable

CODES = ("field_count", "idremote", "msisdn", "oadc", "msg_empty", "msg_non_gsm", "msg_too_long")
FIELDS = ("IDREMOTE", "MSISDN", "OADC", "MSG")
EXAMPLES_PER_CODE = 3
MESSAGE_CACHE = 65_536
"""Distinct message texts remembered with their verdict (templates repeat; bounded)."""

_IDREMOTE = re.compile(r"[A-Za-z0-9]{1,40}")
_OADC = re.compile(r"[A-Za-z0-9]{1,11}|[0-9]{1,15}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Rules:
    """The campaign settings the row rules depend on."""

    default_sender: str = ""
    default_region: str = "FR"
    max_segments: int = 5
    policy: Policy = Policy.TRANSLITERATE
    max_invalid_percent: float = 5.0


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
    """What validation found; ``unreadable`` is set when the file could not be read at all."""

    file: str
    encoding: str = ""
    header: bool = False
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    segments: int = 0
    invalid_by_code: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[RowError]] = field(default_factory=dict)
    replaced: Counter[str] = field(default_factory=Counter)
    unreadable: str | None = None

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
        return {
            "file": self.file,
            "encoding": self.encoding,
            "header": self.header,
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "segments": self.segments,
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


class _Verdict(NamedTuple):
    """The cached outcome of one message text (a tuple: built once per distinct text)."""

    text: str
    segments: int
    code: str | None
    detail: str
    replaced: tuple[str, ...]


class Tracker:
    """The valid rows of a slice, kept compactly, so that duplicates across slices can be
    found and taken off exactly when the slices' summaries are merged."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.parts = array("H")
        self.replaced: dict[int, tuple[str, ...]] = {}

    def add(self, key: int, parts: int, replaced: tuple[str, ...]) -> None:
        if replaced:
            self.replaced[len(self.keys)] = replaced
        self.keys.append(key)
        self.parts.append(parts)


class Validator:
    """Applies the row rules; holds only per-run caches (numbers, message verdicts)."""

    def __init__(self, rules: Rules, normalizer: NumberNormalizer | None = None) -> None:
        self.rules = rules
        self._normalize = (normalizer or NumberNormalizer(rules.default_region)).normalize
        self._messages: dict[str, _Verdict] = {}

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
                self._run(read_records(stream, encoding), summary, on_row, on_error)
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

    def validate_slice(
        self,
        stream: BinaryIO,
        *,
        file: str,
        start: int,
        limit: int | None,
        first_line: int,
        on_error: ErrorSink | None = None,
        track: Tracker | None = None,
        seen: set[int] | None = None,
    ) -> Summary:
        """Check the UTF-8 rows of ``limit`` bytes of ``stream`` from byte ``start``.

        For validating a big file on several cores: ``start`` must be a line start and
        ``first_line`` its line number; a header is looked for only at the file's start.
        Raises :class:`WrongEncoding` (the caller falls back to :meth:`validate`); anything
        else unreadable is in ``unreadable``. ``seen`` receives the valid rows' number keys.
        """
        stream.seek(start)
        summary = Summary(file=file, encoding="utf-8")
        records = read_records(stream, ENCODINGS[0], limit=limit, first_line=first_line)
        try:
            self._run(records, summary, None, on_error, header=start == 0, track=track,
                      seen=seen)
        except WrongEncoding:
            raise
        except InputError as exc:
            summary.unreadable = f"line {exc.line}: {exc.reason}" if exc.line else exc.reason
        return summary

    def _run(
        self,
        records: Iterator[Record],
        summary: Summary,
        on_row: RowSink | None,
        on_error: ErrorSink | None,
        *,
        header: bool = True,
        track: Tracker | None = None,
        seen: set[int] | None = None,
    ) -> None:
        # The hot loop of the product: a million rows must take a couple of seconds, so
        # lookups are hoisted into locals and the common row (plain GSM text, a number on the
        # fast path) builds no object but its number key.
        normalize = self._normalize
        cached = self._messages.get
        judge = self._judge
        seen = set() if seen is None else seen
        add_seen = seen.add
        sender = self.rules.default_sender
        max_segments = self.rules.max_segments
        idremote_ok = _IDREMOTE.fullmatch
        oadc_ok = _OADC.fullmatch
        rows = valid = invalid = duplicates = segments = 0
        errors: list[RowError] = []
        replaced_rows: dict[tuple[str, ...], int] = {}  # counted per distinct tuple: cheaper

        for line, fields in records if header else ():
            if is_header(fields):
                summary.header = True
            else:
                records = chain([(line, fields)], records)
            break

        for line, fields in records:
            rows += 1
            if len(fields) != 4:
                errors.append(_field_count_error(line, fields))
            else:
                idremote, raw_number, oadc, message = fields
                # [A-Za-z0-9]{1,40}, with str methods: cheaper than a regex per row.
                if not (idremote.isalnum() and idremote.isascii() and len(idremote) <= 40):
                    idremote = idremote.strip()
                    if not idremote_ok(idremote):
                        errors.append(RowError(
                            line, "idremote", "IDREMOTE", idremote, "1 to 40 letters or digits"
                        ))
                msisdn = normalize(raw_number.strip())
                if msisdn is None:
                    errors.append(RowError(
                        line, "msisdn", "MSISDN", raw_number.strip(),
                        "not a valid phone number" if raw_number.strip() else "empty",
                    ))
                if not (oadc.isalnum() and oadc.isascii() and (
                        len(oadc) <= 11 or (oadc.isdigit() and len(oadc) <= 15))):
                    oadc = oadc.strip() or sender
                    if oadc and not oadc_ok(oadc):
                        errors.append(RowError(
                            line, "oadc", "OADC", oadc,
                            "1 to 11 letters or digits, or up to 15 digits",
                        ))
                parts = basic_segments(message)
                if parts and not message.isspace():
                    text = message
                    replaced: tuple[str, ...] = ()
                    if parts > max_segments:
                        errors.append(_too_long(line, message, parts, max_segments))
                else:
                    text, parts, code, detail, replaced = cached(message) or judge(message)
                    if code is not None:
                        errors.append(RowError(line, code, "MSG", message[:40], detail))
                    elif parts > max_segments:
                        errors.append(_too_long(line, message, parts, max_segments))
                if not errors and msisdn is not None:
                    key = int(msisdn[1:])
                    if key in seen:
                        duplicates += 1
                        continue
                    add_seen(key)
                    valid += 1
                    segments += parts
                    if replaced:
                        replaced_rows[replaced] = replaced_rows.get(replaced, 0) + 1
                    if on_row is not None:
                        on_row(Row(line, idremote, msisdn, oadc, text, parts))
                    if track is not None:
                        track.add(key, parts, replaced)
                    continue
            invalid += 1
            self._record_errors(summary, fields, errors, on_error)
            errors.clear()

        for replaced, times in replaced_rows.items():
            for change in replaced:
                summary.replaced[change] += times
        summary.rows, summary.valid, summary.invalid = rows, valid, invalid
        summary.duplicates, summary.segments = duplicates, segments

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

    def _judge(self, message: str) -> _Verdict:
        if not message.strip():
            verdict = _Verdict(message, 0, "msg_empty", "message is empty", ())
        else:
            counted = count(message, self.rules.policy)
            replaced = tuple(f"{old}->{new}" for old, new in counted.replaced)
            if counted.unsendable:
                shown = " ".join(f"{c!r} (U+{ord(c):04X})" for c in counted.unsendable[:5])
                verdict = _Verdict(
                    counted.text, counted.segments, "msg_non_gsm",
                    f"not in GSM 03.38 under non_gsm = {self.rules.policy}: {shown}", replaced,
                )
            else:
                verdict = _Verdict(counted.text, counted.segments, None, "", replaced)
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
