"""The row rules: one campaign file in, a summary and the surviving rows out.

The same code runs in ``check`` and in the daemon. It streams: what grows with the file is
only the set of numbers already seen (for duplicates). Errors and surviving rows are handed to
sinks as they are found, so a million invalid rows never sit in memory.

Codes (the contract's): ``field_count``, ``idremote``, ``msisdn``, ``oadc``, ``msg_empty``,
``msg_non_gsm``, ``msg_too_long``; ``duplicate`` drops a later row without being an error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .errors import InputError
from .gsm import Policy, count
from .numbers import NumberNormalizer
from .reader import ENCODINGS, WrongEncoding, is_header, read_records, undecodable

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


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The cached outcome of one message text."""

    text: str
    segments: int
    code: str | None
    detail: str
    replaced: tuple[str, ...]


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
                self._run(stream, summary, on_row, on_error)
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

    def _run(
        self,
        stream: BinaryIO,
        summary: Summary,
        on_row: RowSink | None,
        on_error: ErrorSink | None,
    ) -> None:
        rules = self.rules
        normalize = self._normalize
        messages = self._messages
        seen: set[int] = set()
        by_code = summary.invalid_by_code
        examples = summary.examples
        sender = rules.default_sender
        max_segments = rules.max_segments
        rows = valid = invalid = duplicates = segments = 0
        first = True
        idremote_ok = _IDREMOTE.fullmatch
        oadc_ok = _OADC.fullmatch
        errors: list[RowError] = []

        for line, fields in read_records(stream, self._encoding_of(summary)):
            if first:
                first = False
                if is_header(fields):
                    summary.header = True
                    continue
            rows += 1
            if len(fields) != 4:
                errors.append(RowError(
                    line, "field_count", "row", ";".join(fields)[:80],
                    f"{len(fields)} field{'s' if len(fields) != 1 else ''}, expected 4 "
                    "(IDREMOTE;MSISDN;OADC;MSG)",
                ))
            else:
                idremote, raw_number, oadc, message = fields
                idremote = idremote.strip()
                if not idremote_ok(idremote):
                    errors.append(RowError(
                        line, "idremote", "IDREMOTE", idremote, "1 to 40 letters or digits"
                    ))
                raw_number = raw_number.strip()
                msisdn = normalize(raw_number) if raw_number else None
                if msisdn is None:
                    errors.append(RowError(
                        line, "msisdn", "MSISDN", raw_number,
                        "empty" if not raw_number else "not a valid phone number",
                    ))
                oadc = oadc.strip() or sender
                if oadc and not oadc_ok(oadc):
                    errors.append(RowError(
                        line, "oadc", "OADC", oadc, "1 to 11 letters or digits, or up to 15 digits"
                    ))
                verdict = messages.get(message)
                if verdict is None:
                    verdict = self._judge(message)
                if verdict.code is not None:
                    errors.append(RowError(
                        line, verdict.code, "MSG", message[:40], verdict.detail
                    ))
                elif verdict.segments > max_segments:
                    errors.append(RowError(
                        line, "msg_too_long", "MSG", message[:40],
                        f"{verdict.segments} segments, max_segments = {max_segments}",
                    ))
                if not errors and msisdn is not None:
                    key = int(msisdn[1:])
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    valid += 1
                    segments += verdict.segments
                    if verdict.replaced:
                        summary.replaced.update(verdict.replaced)
                    if on_row is not None:
                        on_row(Row(line, idremote, msisdn, oadc, verdict.text, verdict.segments))
                    continue
            invalid += 1
            if _CONTROL.search(";".join(fields)):
                raise InputError("binary data: a control character in a field", line=line)
            for error in errors:
                by_code[error.code] += 1
                shown = examples.setdefault(error.code, [])
                if len(shown) < EXAMPLES_PER_CODE:
                    shown.append(error)
                if on_error is not None:
                    on_error(error)
            errors.clear()

        summary.rows, summary.valid, summary.invalid = rows, valid, invalid
        summary.duplicates, summary.segments = duplicates, segments

    @staticmethod
    def _encoding_of(summary: Summary) -> str:
        return "utf-8-sig" if summary.encoding == "utf-8" else summary.encoding

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
