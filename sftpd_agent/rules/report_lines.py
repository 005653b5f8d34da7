"""The provider's report files, read as text: their names and their lines. Pure.

- Names: ``ACK|STOP|SMSMO-<5 letters or digits>-<YYYYMMDD>-<HHMM>-<1..20 letters or
  digits>.csv``, ASCII only, with a real date and time (:func:`report_kind`). Only such a
  name is ever joined into a local path. A report shares its middle with the campaign part
  it is about (:func:`send_name`, :func:`ack_name`).
- ``ACK-``: ``IDREMOTE;MSISDN;OADC;MSG;IDSTATUS;STATUS;ACKOPERATOR``, unquoted, so MSG may
  hold ``;``: three fields from the left, three from the right (:func:`parse_ack`).
- ``STOP-`` and ``SMSMO-``: ``MSISDN;DATE;HOUR;MESSAGE;IDREMOTE`` (MESSAGE may hold ``;``,
  :func:`parse_report_line`). A line's identity is its text (:func:`line_key`) and its
  occurrence; a reply is a stop when its message, :func:`fold`-ed, is a stop keyword.

The kinds are :class:`~sftpd_agent.rules.naming.Kind` (``Kind.word`` is the journal's and
the ``inbox/`` folder's name for one).
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import xxhash

from .naming import Kind, parse_name

REPORT_KINDS = (Kind.ACK, Kind.STOP, Kind.SMSMO)
"""The reports the provider writes, in the order of their prefixes."""
GRAMMAR = "ACK|STOP|SMSMO-SERVICEID-YYYYMMDD-HHMM-ID.csv"

_REPORT_NAME = re.compile(
    r"(?:ACK|STOP|SMSMO)-[A-Za-z0-9]{5}-[0-9]{8}-[0-9]{4}-[A-Za-z0-9]{1,20}\.csv", re.ASCII)
_LOOKS_LIKE = re.compile(r"(?:ACK|STOP|SMSMO)-|.*\.csv\Z", re.IGNORECASE | re.DOTALL)
MAX_NAME_BYTES = 200
"""A longer name that looks like a report is said to be too long, not merely wrong."""


def report_kind(name: str) -> Kind | None:
    """The kind of a report file by its name; None for anything not of the provider's grammar
    (with a real date and time)."""
    if _REPORT_NAME.fullmatch(name) is None or parse_name(name) is None:
        return None
    kind = Kind(name.split("-", 1)[0])
    return kind if kind in REPORT_KINDS else None


def name_problem(name: str) -> str | None:
    """Why ``name`` is not read as a report when it looks like one (a report prefix or
    ``.csv``, any case); None for a report, or a name that is none of our business."""
    if report_kind(name) is not None or _LOOKS_LIKE.match(name) is None:
        return None
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return "name too long for a report name"
    return f"name is not a report name ({GRAMMAR})"


def send_name(report: str) -> str:
    """``ACK-12345-20261123-1000-promo.csv`` -> ``SEND-12345-20261123-1000-promo.csv``."""
    return "SEND-" + report.split("-", 1)[1]


def ack_name(part: str) -> str:
    """``SEND-12345-20261123-1000-promo.csv`` -> ``ACK-12345-20261123-1000-promo.csv``."""
    return "ACK-" + part.split("-", 1)[1]


class AckLine(NamedTuple):
    idremote: str
    msisdn: str
    oadc: str
    msg: str
    idstatus: str
    status: str
    operator: str


def parse_ack(line: str) -> AckLine | None:
    """An ACK line, or None when it has fewer than the seven fields."""
    fields = line.split(";")
    if len(fields) < 7:
        return None
    # Positional: built once per line of a million-line ACK.
    return AckLine(fields[0].strip(), fields[1].strip(), fields[2].strip(),
                   ";".join(fields[3:-3]).strip(), fields[-3].strip(), fields[-2].strip(),
                   fields[-1].strip())


@dataclass(frozen=True, slots=True)
class ReportLine:
    msisdn: str
    date: str
    hour: str
    message: str
    idremote: str


def parse_report_line(line: str) -> ReportLine | None:
    """A STOP or SMS-MO line (MESSAGE may hold ``;``), or None with fewer than five fields."""
    fields = line.split(";")
    if len(fields) < 5:
        return None
    return ReportLine(
        msisdn=fields[0].strip(), date=fields[1].strip(), hour=fields[2].strip(),
        message=";".join(fields[3:-1]).strip(), idremote=fields[-1].strip(),
    )


def fold(text: str) -> str:
    """``text`` trimmed, without case or accents: " Arrêt " -> "arret"."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


BLAKE2B, XXH3 = 0, 1
"""The line-key schemes (a report cursor's ``line_hash``): BLAKE2b-64 (0), the journal's
until migration 9, kept by the files read before it (their recorded lines' keys); XXH3-64
shifted to 63 bits (1), every file since (a million keys in 0.08 s instead of 0.75 s)."""
LINE_HASH = XXH3
"""The scheme of a report file first seen now."""
_ENCODED = operator.methodcaller("encode", "utf-8", "surrogatepass")
"""A line's text as hashed (both schemes, one line or a batch)."""


def line_key(line: str, scheme: int = LINE_HASH) -> int:
    """A line's identity in the journal: a 64-bit hash of its text (a SQLite integer)."""
    data = _ENCODED(line)
    if scheme == XXH3:
        return xxhash.xxh3_64_intdigest(data) >> 1
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def line_keys(lines: Iterable[str], scheme: int = LINE_HASH) -> list[int]:
    """:func:`line_key` of each of ``lines``, hashed in C, not line by line."""
    if scheme == XXH3:
        encoded = map(_ENCODED, lines)
        return list(map(operator.rshift, map(xxhash.xxh3_64_intdigest, encoded),
                        itertools.repeat(1)))
    return [line_key(line, scheme) for line in lines]
