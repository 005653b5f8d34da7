"""Reading campaign files as real exports write them.

UTF-8 with or without a BOM, else CP1252 (spreadsheets); CRLF, LF or CR line ends; ``;``
between fields with RFC 4180 quoting. What cannot be read is refused with an
:class:`InputError` naming the line: NUL bytes and other binary content, bytes that are neither
UTF-8 nor CP1252, a quoted field that never closes (it must not swallow the rest of the file),
a line longer than :data:`MAX_LINE`.

The reader streams: memory does not grow with the file. Rows without a double quote, nearly
all of them, are split with ``str.split``; only rows holding a quote go through :mod:`csv`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import chain, islice
from typing import BinaryIO

from .errors import InputError

MAX_LINE = 16_384
"""Characters in one physical line: a five-part message fits many times over."""
MAX_RECORD_LINES = 12
"""Physical lines one record may span (a quoted message may hold a few line breaks)."""
CHUNK = 1 << 20

ENCODINGS = ("utf-8-sig", "cp1252")
"""Tried in this order: a strict UTF-8 decode that fails means CP1252."""

Record = tuple[int, list[str]]
"""The physical line a record starts on, and its fields."""


class WrongEncoding(InputError):
    """The bytes are not in the encoding tried; the caller tries the next one."""


class _CheckedStream(io.RawIOBase):
    """A binary stream checked as it is read: no NUL byte, no runaway line.

    Lines are bounded here, on bytes, so that a file without line breaks is refused before it
    is decoded into one giant string; the exact limit (:data:`MAX_LINE` characters) is then
    checked on each decoded line.
    """

    def __init__(self, raw: BinaryIO, limit: int | None = None, first_line: int = 1) -> None:
        self._raw = raw
        self._left = limit  # bytes still to read, None: to the end
        self._newlines = first_line - 1
        self._since_break = 0  # bytes since the last line break

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer) if self._left is None else min(len(buffer), self._left)
        data = self._raw.read(want)
        if self._left is not None:
            self._left -= len(data)
        if b"\0" in data:
            line = self._newlines + data.count(b"\n", 0, data.index(b"\0")) + 1
            raise InputError("NUL byte: this is binary data, not a CSV export", line=line)
        last_break = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last_break < 0:
            self._since_break += len(data)
            if self._since_break > 4 * MAX_LINE:
                raise InputError(
                    f"line longer than {MAX_LINE} characters", line=self._newlines + 1
                )
        else:
            self._since_break = len(data) - last_break - 1
        self._newlines += data.count(b"\n")
        buffer[: len(data)] = data
        return len(data)


def undecodable(stream: BinaryIO, encoding: str) -> tuple[int, int]:
    """The line and value of the first byte of ``stream`` that ``encoding`` cannot decode.

    Only called on the rare path, after a decode failed: one more pass is cheap then.
    """
    stream.seek(0)
    decoder_line = 1
    while chunk := stream.readline(CHUNK):
        try:
            chunk.decode(encoding)
        except UnicodeDecodeError as exc:
            return decoder_line, chunk[exc.start]
        decoder_line += chunk.count(b"\n")
    return decoder_line, 0


def read_records(
    stream: BinaryIO, encoding: str, *, limit: int | None = None, first_line: int = 1
) -> Iterator[Record]:
    """Yield ``(line, fields)`` for every non-blank record of ``stream`` decoded as ``encoding``.

    Reads from the stream's position, ``limit`` bytes at most (a slice of a file read in
    parallel), numbering lines from ``first_line``. Raises :class:`WrongEncoding` when the bytes
    do not decode (the caller rewinds and tries the next of :data:`ENCODINGS`),
    :class:`InputError` for anything else unreadable.
    """
    text = io.TextIOWrapper(
        io.BufferedReader(_CheckedStream(stream, limit, first_line), CHUNK),
        encoding=encoding,
        errors="strict",
        newline=None,
    )
    lines = iter(text)
    number = first_line - 1
    try:
        for line in lines:
            number += 1
            if len(line) > MAX_LINE:
                raise InputError(f"line longer than {MAX_LINE} characters", line=number)
            if '"' in line:
                # RFC 4180 quoting, possibly over a few more lines: csv reads exactly the lines
                # the record needs, and no more than MAX_RECORD_LINES in all.
                quoted = csv.reader(
                    chain((line,), islice(lines, MAX_RECORD_LINES - 1)),
                    delimiter=";", quotechar='"', strict=True,
                )
                try:
                    fields = next(quoted)
                except csv.Error as exc:
                    raise InputError(_csv_reason(exc, quoted.line_num), line=number) from None
                yield number, fields
                number += quoted.line_num - 1
            elif line.strip():
                yield number, line.rstrip("\n").split(";")
    except UnicodeDecodeError as exc:
        raise WrongEncoding(f"not valid {encoding}: {exc.reason}") from None


def _csv_reason(exc: csv.Error, lines_read: int) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        if lines_read >= MAX_RECORD_LINES:
            return (
                f"quoted field opened here is still open {MAX_RECORD_LINES} lines later: "
                "a quote is probably not closed"
            )
        return "quoted field opened here is never closed"
    return f"malformed quoting: {message}"


def is_header(fields: list[str]) -> bool:
    """A first row whose MSISDN column holds no digit is a header, not a recipient."""
    return len(fields) >= 2 and not any(char.isdigit() for char in fields[1])
