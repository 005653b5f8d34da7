"""The uploaded form of a campaign: what the provider receives, byte for byte.

UTF-8 without a BOM, no header, ``;`` between fields, RFC 4180 quoting (a field holding ``;``,
a double quote or a line break is quoted, quotes doubled), CRLF after every row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from .validation import Row


class UploadWriter:
    """Writes rows to a binary stream in the provider's form, counting rows and bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
        self._csv = csv.writer(
            self._text, delimiter=";", quotechar='"', quoting=csv.QUOTE_MINIMAL,
            lineterminator="\r\n",
        )
        self.rows = 0

    def write(self, row: Row) -> None:
        self._csv.writerow((row.idremote, row.msisdn, row.oadc, row.text))
        self.rows += 1

    def write_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.write(row)

    def close(self) -> None:
        """Flush and detach, leaving ``stream`` open for the caller (to fsync it)."""
        self._text.flush()
        self._text.detach()


def upload_bytes(rows: Iterable[Row]) -> bytes:
    """The uploaded form of ``rows`` in memory (small campaigns, tests)."""
    buffer = io.BytesIO()
    writer = UploadWriter(buffer)
    writer.write_all(rows)
    writer.close()
    return buffer.getvalue()


def upload_records(stream: BinaryIO) -> Iterator[tuple[str, str, bytes]]:
    """The records of a file in the uploaded form, as written: (IDREMOTE, MSISDN, the
    record's exact bytes), without decoding or parsing the message.

    The first three fields are never quoted (letters and digits, ``+`` and digits, the
    sender's letters and digits): only the message may be, and may hold line breaks; a record
    ends at a line end outside quotes. ValueError when the last one ends inside quotes."""
    pending = b""
    for line in stream:
        record = pending + line if pending else line
        if (pending or b'"' in line) and record.count(b'"') % 2:
            pending = record  # inside a quoted message: the record goes on
            continue
        pending = b""
        idremote, msisdn, _ = record.split(b";", 2)
        yield idremote.decode("ascii"), msisdn.decode("ascii"), record
    if pending:
        raise ValueError("the last record ends inside quotes")


BLOCK = 1 << 20
"""About the bytes of one :func:`record_blocks` block."""


def record_blocks(stream: BinaryIO, size: int = BLOCK) -> Iterator[bytes]:
    """The bytes of a file in the uploaded form, in blocks of about ``size`` bytes holding
    whole records: each ends at a line end outside quotes (the count of double quotes from
    the block's start, a record's start, is even there: a doubled quote counts two). The
    blocks joined are the file; :func:`upload_records` reads each on its own."""
    rest = b""
    while True:
        data = stream.read(size)
        if not data:
            if rest:
                yield rest
            return
        data = rest + data if rest else data
        end = _records_end(data)
        if end:
            yield data[:end]
        rest = data[end:]


def _records_end(data: bytes) -> int:
    """Where the last whole record of ``data`` (starting with a record) ends; 0: none."""
    end = data.rfind(b"\n") + 1
    if b'"' not in data:
        return end
    quotes = data.count(b'"', 0, end)
    while end and quotes % 2:  # that line end is inside a quoted message: one line back
        start = data.rfind(b"\n", 0, end - 1) + 1
        quotes -= data.count(b'"', start, end)
        end = start
    return end


def plain_numbers(block: bytes) -> list[str] | None:
    """The MSISDNs of a block of whole records when every line of it is one record (no
    double quote: no message quoted, none over lines or holding a ``;``) and each is ``+``
    and digits, in order; None otherwise (read it with :func:`upload_records`). A few calls
    in C for thousands of records: a record is never handled alone in Python."""
    if b'"' in block:
        return None
    fields = block.split(b";")  # IDREMOTE;MSISDN;OADC;message CRLF IDREMOTE;...
    if len(fields) != 3 * block.count(b"\n") + 1 or not block.endswith(b"\n"):
        return None
    numbers = fields[1::3]
    joined = b";".join(numbers)
    if joined.translate(None, b"+0123456789;") or joined.count(b"+") != len(numbers):
        return None  # not "+digits" each: not what the writer writes, read record by record
    return joined.decode("ascii").split(";")
