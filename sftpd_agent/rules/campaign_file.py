"""Reading campaign files as real exports write them.

UTF-8 with or without a BOM, else CP1252 (spreadsheets); CRLF, LF or CR line ends; ``;``
between fields with RFC 4180 quoting. What cannot be read is refused with an
:class:`InputError` naming the line: NUL bytes and other binary content, bytes that are neither
UTF-8 nor CP1252, a quoted field that never closes (it must not swallow the rest of the file),
a line longer than :data:`MAX_LINE`.

The reader streams: memory does not grow with the file. It reads blocks of :data:`CHUNK`
bytes and cuts each at its last line end, so that lines are split and decoded a block at a
time (CR and LF are single bytes in both encodings: a line never ends inside a character).
Rows without a double quote, nearly all of them, are then split with ``str.split``; only rows
holding a quote go through :mod:`csv`.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from itertools import chain, islice
from typing import BinaryIO

from ..errors import InputError

MAX_LINE = 16_384
"""Characters in one physical line, its line end included: a five-part message fits many
times over."""
MAX_RECORD_LINES = 12
"""Physical lines one record may span (a quoted message may hold a few line breaks)."""
CHUNK = 1 << 20

ENCODINGS = ("utf-8-sig", "cp1252")
"""Tried in this order: a strict UTF-8 decode that fails means CP1252."""

BOM = b"\xef\xbb\xbf"

Record = tuple[int, list[str]]
"""The physical line a record starts on, and its fields."""


class WrongEncoding(InputError):
    """The bytes are not in the encoding tried; the caller tries the next one."""


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


def read_lines(
    stream: BinaryIO, encoding: str, *, limit: int | None = None, first_line: int = 1,
    at_start: bool = True,
) -> Iterator[str]:
    """Every physical line of ``stream`` decoded as ``encoding``, without its line end.

    Blank lines included, so that the caller can number lines; CRLF, CR and LF all end a
    line. Reads from the stream's position, ``limit`` bytes at most (a slice of a file read in
    parallel); ``first_line`` is the number of the first line, for errors. A UTF-8 BOM is
    dropped only ``at_start`` (of the file). Raises :class:`WrongEncoding` when a block of
    :data:`CHUNK` bytes does not decode (before any of its lines is returned: the caller
    rewinds and tries the next of :data:`ENCODINGS`), :class:`InputError` for anything else
    unreadable.
    """
    return chain.from_iterable(_blocks(stream, encoding, limit, first_line, at_start))


def _blocks(
    stream: BinaryIO, encoding: str, limit: int | None, first_line: int, at_start: bool
) -> Iterator[list[str]]:
    """The decoded lines of ``stream``, a block at a time, checked as they are read: no NUL
    byte, no runaway line.

    Lines are bounded here, on bytes, so that a file without line breaks is refused before it
    is decoded into one giant string; the exact limit (:data:`MAX_LINE` characters) is then
    checked on each decoded line (:func:`_marked`).
    """
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    left = limit  # bytes still to read, None: to the end
    number = first_line  # of the line that ``carry`` starts
    carry = b""  # the start of a line whose end is in a later block
    bom = encoding == "utf-8-sig" and at_start
    while True:
        data = _read(stream, left)
        if left is not None:
            left -= len(data)
        if bom:
            while len(data) < len(BOM) and (more := _read(stream, left)):
                data += more
                left = None if left is None else left - len(more)
            data, bom = data.removeprefix(BOM), False
        if b"\0" in data:
            before = carry + data[: data.index(b"\0")]
            raise InputError("NUL byte: this is binary data, not a CSV export",
                             line=number + _line_ends(before))
        if not data:  # the end: what is left is the last line, without its line end
            if len(carry) > 4 * MAX_LINE:
                raise InputError(f"line longer than {MAX_LINE} characters", line=number)
            if carry:
                yield _decoded(carry, codec, encoding, ended=False)
            return
        block = carry + data
        # Cut after the last line end: an LF, or a CR that is not the block's last byte (an
        # LF may follow it in the next block, and CRLF is one line end).
        last_lf = block.rfind(b"\n")
        cut = max(last_lf, block.rfind(b"\r", last_lf + 1, len(block) - 1)) + 1
        if not cut:
            if len(block) > 4 * MAX_LINE and not block.endswith(b"\r"):
                raise InputError(f"line longer than {MAX_LINE} characters", line=number)
            carry = block
            continue
        body, carry = block[:cut], block[cut:]
        if carry:  # its bytes were read with the block's: a wrong byte there counts too
            _check_decodes(carry, codec, encoding)
        lines = _decoded(body, codec, encoding, ended=True)
        yield lines
        number += len(lines)


def as_read(rows: list[str], *, breaks: bool) -> list[str]:
    """The lines :func:`read_lines` gives for ``rows`` written as UTF-8 lines ending with
    CRLF, ``breaks`` saying whether a row may hold a line break: ``rows`` itself when none
    does and none may be too long (the usual case, nothing copied), else split and marked
    exactly as a file of them would be read. For rows rendered in memory and checked without
    being written. Raises :class:`InputError` for a NUL character, as the reader does."""
    if not breaks and max(map(len, rows), default=0) * 4 < MAX_LINE:
        return rows
    body = ("\r\n".join(rows) + "\r\n").encode()
    if b"\0" in body:
        raise InputError("NUL byte: this is binary data, not a CSV export",
                         line=1 + _line_ends(body[: body.index(b"\0")]))
    return _decoded(body, "utf-8", "utf-8", ended=True)


def _read(stream: BinaryIO, left: int | None) -> bytes:
    if left is None:
        return stream.read(CHUNK)
    return stream.read(min(CHUNK, left)) if left > 0 else b""


def _line_ends(data: bytes) -> int:
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _check_decodes(partial: bytes, codec: str, encoding: str) -> None:
    """Raise :class:`WrongEncoding` if ``partial`` (maybe cut inside a character) holds a
    byte that ``codec`` cannot decode."""
    try:
        codecs.getincrementaldecoder(codec)().decode(partial)
    except UnicodeDecodeError as exc:
        raise WrongEncoding(f"not valid {encoding}: {exc.reason}") from None


def _decoded(body: bytes, codec: str, encoding: str, *, ended: bool) -> list[str]:
    """The decoded lines of ``body``: whole lines, the last with its line end if ``ended``."""
    raw_lines = body.splitlines()  # for bytes: at LF, CR and CRLF only
    try:
        if codec == "utf-8":
            lines = list(map(bytes.decode, raw_lines))
        else:
            lines = [line.decode(codec) for line in raw_lines]
    except UnicodeDecodeError as exc:
        raise WrongEncoding(f"not valid {encoding}: {exc.reason}") from None
    if max(map(len, raw_lines), default=0) >= MAX_LINE:  # bytes >= characters: maybe too long
        return _marked(lines, ended=ended)
    return lines


class _LongLine(str):
    """A line longer than :data:`MAX_LINE`. It claims to hold a double quote, so that the
    record loop (which checks every line for one) hands it to :func:`quoted_record`, which
    refuses it; as the continuation of a quoted field, csv reads it like any line."""

    __slots__ = ()

    def __contains__(self, part: object) -> bool:
        return True


def _marked(lines: list[str], *, ended: bool) -> list[str]:
    """``lines`` with those longer than :data:`MAX_LINE` characters, their line end included,
    made :class:`_LongLine`."""
    last = len(lines) - 1
    return [
        _LongLine(line) if len(line) + (ended or index < last) > MAX_LINE else line
        for index, line in enumerate(lines)
    ]


def quoted_record(first: str, lines: Iterator[str], number: int) -> tuple[list[str], int]:
    """The fields of the record that starts with ``first``, a line holding a double quote.

    RFC 4180 quoting, possibly over a few more lines: csv reads exactly the lines the record
    needs from ``lines``, and no more than :data:`MAX_RECORD_LINES` in all. Returns the
    fields and how many more lines were read; ``number`` (the line of ``first``) is the line
    an :class:`InputError` names. A line too long to be read arrives here too, and is refused.
    """
    if type(first) is _LongLine:
        raise InputError(f"line longer than {MAX_LINE} characters", line=number)
    if first.count('"') == 2 and first[-1] == '"':
        # The usual quoted record: its last field quoted whole, on one line. csv would read
        # the fields before it as they are and the quoted one without its quotes.
        opening = first.index('"')
        if opening == 0 or first[opening - 1] == ";":
            return [*first[:opening].split(";")[:-1], first[opening + 1:-1]], 0
    quoted = csv.reader(
        chain((first + "\n",), (line + "\n" for line in islice(lines, MAX_RECORD_LINES - 1))),
        delimiter=";", quotechar='"', strict=True,
    )
    try:
        fields = next(quoted)
    except csv.Error as exc:
        raise InputError(_csv_reason(exc, quoted.line_num), line=number) from None
    return fields, quoted.line_num - 1


def read_records(
    stream: BinaryIO, encoding: str, *, limit: int | None = None, first_line: int = 1
) -> Iterator[Record]:
    """Yield ``(line, fields)`` for every non-blank record of ``stream`` decoded as ``encoding``.

    The arguments and errors are those of :func:`read_lines`. (Validation reads lines
    itself, with the same two steps inlined: this is their plain form.)
    """
    lines = read_lines(stream, encoding, limit=limit, first_line=first_line)
    shift = 0  # lines taken by quoted records beyond their first
    for number, line in enumerate(lines, first_line):
        if '"' in line:
            fields, more = quoted_record(line, lines, number + shift)
            yield number + shift, fields
            shift += more
        elif line.strip():
            yield number + shift, line.split(";")


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
