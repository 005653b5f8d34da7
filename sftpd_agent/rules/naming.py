"""The provider's file names: ``KIND-SERVICEID-YYYYMMDD-HHMM-CAMPAIGNID.ext``.

The name is the only link between a campaign we send (``SEND-``) and what the provider
gives back (``ACK-``, ``STOP-``, ``SMSMO-`` with the same middle part), and the extension
is the only signal of the remote file's progress (``.tmp -> .csv -> .lock -> .done |
.reject``). Pure: building and reading names, nothing else.

A *dropped* file's name is read more leniently than the provider reads its own, but never
more loosely about time (:func:`read_dropped_name`): a name that starts like the provider's
(``SEND-``, any case) is read as one, and a part that cannot be read is a reason to hold the
file, never a licence to send it now.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

MAX_CAMPAIGN_ID = 20
SERVICE_ID_LENGTH = 5
EXTENSIONS = (".tmp", ".csv", ".lock", ".done", ".reject")

GRAMMAR = "SEND-<service_id>-YYYYMMDD-HHMM-<CAMPAIGNID>.csv"
SEND_PREFIX = "SEND-"

_ALNUM = re.compile(r"[A-Za-z0-9]+")
_DIGITS_8 = re.compile(r"[0-9]{8}")
_DIGITS_4 = re.compile(r"[0-9]{4}")
# SEND_12345_20270105..., "send 12345 20270105 ...": the provider's parts, other separators.
_LOOKALIKE = re.compile(r"send[^A-Za-z0-9]+[A-Za-z0-9]{5}[^A-Za-z0-9]+[0-9]{8}",
                        re.IGNORECASE)
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_NAME = re.compile(
    r"(SEND|ACK|STOP|SMSMO)-([A-Za-z0-9]{5})-([0-9]{8})-([0-9]{4})-([A-Za-z0-9]{1,20})"
    r"(\.tmp|\.csv|\.lock|\.done|\.reject)"
)


class Kind(StrEnum):
    """The prefix of a provider file: what we send, and the three reports we get back."""

    SEND = "SEND"
    ACK = "ACK"
    STOP = "STOP"
    SMSMO = "SMSMO"

    @property
    def word(self) -> str:
        """The kind in the journal (``report_cursors.kind``) and as an ``inbox/`` folder:
        ``send``, ``ack``, ``stop``, ``mo``."""
        return "mo" if self is Kind.SMSMO else self.value.lower()

    @classmethod
    def from_word(cls, word: str) -> Kind:
        """The kind a journal ``word`` stands for (the inverse of :attr:`word`)."""
        return cls.SMSMO if word == "mo" else cls(word.upper())


@dataclass(frozen=True, slots=True)
class ProviderName:
    """One provider file name; invalid parts are refused here, not at the provider."""

    kind: Kind
    service_id: str
    when: datetime.datetime  # naive French local wall-clock time, whole minute
    campaign_id: str
    extension: str = ".csv"  # with the dot

    def __post_init__(self) -> None:
        if len(self.service_id) != SERVICE_ID_LENGTH or not _is_alnum(self.service_id):
            raise ValueError(f"service id must be 5 letters or digits, got {self.service_id!r}")
        _check_campaign_id(self.campaign_id)
        if self.when.tzinfo is not None:
            raise ValueError(f"file name times are naive local times, got {self.when.isoformat()}")
        if self.when.second or self.when.microsecond:
            raise ValueError(f"file name times are whole minutes, got {self.when.isoformat()}")
        _check_extension(self.extension)

    @property
    def middle(self) -> str:
        """``12345-20160728-1827-testpushsftp``: what a campaign and its reports share."""
        w = self.when  # explicit zero padding: strftime's %Y does not pad years below 1000
        return (f"{self.service_id}-{w.year:04d}{w.month:02d}{w.day:02d}"
                f"-{w.hour:02d}{w.minute:02d}-{self.campaign_id}")

    @property
    def stem(self) -> str:
        """``SEND-12345-20160728-1827-testpushsftp``: the name without its extension."""
        return f"{self.kind}-{self.middle}"

    def filename(self, extension: str | None = None) -> str:
        """The full name, with this name's extension or the one given."""
        if extension is None:
            extension = self.extension
        _check_extension(extension)
        return self.stem + extension

    def with_kind(self, kind: Kind) -> ProviderName:
        """The same campaign under another prefix, e.g. its ACK report."""
        return dataclasses.replace(self, kind=kind)


def parse_name(filename: str) -> ProviderName | None:
    """Read a provider file name of any kind and known extension; None if it is not one."""
    match = _NAME.fullmatch(filename)
    if match is None:
        return None
    kind, service_id, date, hour, campaign_id, extension = match.groups()
    try:
        when = datetime.datetime(
            int(date[:4]), int(date[4:6]), int(date[6:]), int(hour[:2]), int(hour[2:])
        )
    except ValueError:  # 20261332, 2560 and the like
        return None
    return ProviderName(Kind(kind), service_id, when, campaign_id, extension)


def campaign_id_from_stem(stem: str) -> str:
    """The campaign id of a file not named the provider's way: its ASCII letters and digits.

    Raises ValueError when the stem has none, since a campaign needs an id.
    """
    campaign_id = _NOT_ALNUM.sub("", stem)[:MAX_CAMPAIGN_ID]
    if not campaign_id:
        raise ValueError(f"no ASCII letter or digit in {stem!r} to name the campaign")
    return campaign_id


@dataclass(frozen=True, slots=True)
class DroppedName:
    """How the name of a file dropped in the outbox was read (before any time zone)."""

    campaign_id: str                        # "" when none could be made
    when: datetime.datetime | None = None   # the naive local time written in the name
    provider_like: bool = False             # starts like the provider's: read as one
    service_id: str | None = None           # the service id written in the name
    notes: tuple[str, ...] = ()             # what was changed in reading it
    problem: str | None = None              # why the file must be held


def read_dropped_name(filename: str) -> DroppedName:
    """Read a dropped file's name the way the agent decides campaign and time from it.

    A name starting with ``SEND-`` (any case) is the provider's grammar, :data:`GRAMMAR`:
    its service id, date and time must all be readable, else ``problem`` names the part.
    The campaign id after the time is made safe without touching the time: characters
    other than ASCII letters and digits are dropped, and it is cut to 20 (both in
    ``notes``). A name that spells the provider's parts with other separators
    (``SEND_12345_20270105_...``) is held too, since it carries a time that would be lost.
    Any other name carries no time: its id is the letters and digits of its stem.
    """
    name = PurePath(filename).name
    stem = PurePath(name).stem
    if stem[:len(SEND_PREFIX)].upper() != SEND_PREFIX:
        if _LOOKALIKE.match(stem):
            return DroppedName(
                _NOT_ALNUM.sub("", stem)[:MAX_CAMPAIGN_ID], provider_like=True,
                problem=f"the name looks like the provider's but its parts are not separated "
                        f"by '-' (expected {GRAMMAR})")
        try:
            return DroppedName(campaign_id_from_stem(stem))
        except ValueError:
            return DroppedName(
                "", problem="the file name has no letter or digit to make a campaign id from")
    return _read_provider_like(stem[len(SEND_PREFIX):])


def _read_provider_like(rest: str) -> DroppedName:
    """The part of a ``SEND-`` name after its prefix: service, date, time, campaign id."""
    service_id, date, hour, raw_id = [*rest.split("-", 3), "", "", ""][:4]
    problems: list[str] = []
    if not service_id:
        problems.append("no service id after SEND-")
    elif len(service_id) != SERVICE_ID_LENGTH or not _is_alnum(service_id):
        problems.append(f"the service id {service_id!r} is not "
                        f"{SERVICE_ID_LENGTH} letters or digits")
    day = _read_date(date, problems) if date else None
    minute = _read_hour(hour, problems) if hour else None
    campaign_id, notes = safe_campaign_id(raw_id)
    missing = next((what for what, value in (
        ("no date after the service id", date), ("no time after the date", hour),
        ("no campaign id after the time", campaign_id)) if not value), None)
    if missing and service_id:
        problems.append(missing)
    when = None
    if day is not None and minute is not None:
        when = datetime.datetime.combine(day, minute)
    problem = None
    if problems:
        problem = "; ".join(problems) + f" (expected {GRAMMAR})"
    return DroppedName(campaign_id, when, provider_like=True,
                       service_id=service_id or None, notes=notes, problem=problem)


def _read_date(text: str, problems: list[str]) -> datetime.date | None:
    if _DIGITS_8.fullmatch(text):
        try:
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    problems.append(f"the date {text} is not a date (YYYYMMDD)")
    return None


def _read_hour(text: str, problems: list[str]) -> datetime.time | None:
    if _DIGITS_4.fullmatch(text):
        try:
            return datetime.time(int(text[:2]), int(text[2:]))
        except ValueError:
            pass
    problems.append(f"the hour {text} is not a time (HHMM)")
    return None


def safe_campaign_id(text: str) -> tuple[str, tuple[str, ...]]:
    """``text`` as a campaign id: only ASCII letters and digits, at most 20; and what changed.

    ``"promo (1)"`` -> ``("promo1", (<a note saying so>,))``; ``""`` when nothing is left.
    """
    notes = []
    kept = _NOT_ALNUM.sub("", text)
    if kept != text and kept:
        notes.append(f"campaign id {text!r} made safe as {kept!r}: only letters and digits "
                     "are kept")
    if len(kept) > MAX_CAMPAIGN_ID:
        notes.append(f"campaign id {kept!r} is longer than {MAX_CAMPAIGN_ID} characters: "
                     f"cut to {kept[:MAX_CAMPAIGN_ID]!r}")
        kept = kept[:MAX_CAMPAIGN_ID]
    return kept, tuple(notes)


MAX_SUFFIX = 9999
"""How far :func:`distinct_part_ids` counts before giving up."""


def distinct_part_ids(
    campaign_id: str, parts: int, taken: Callable[[list[str]], bool]
) -> list[str]:
    """Part ids for a campaign whose ids ``taken`` does not already know.

    First :func:`part_ids` itself; when ``taken`` says those are in use (by another
    campaign at the same time), the id gets a suffix ``2``, ``3``, ... placed before the
    part number and cut so that every id stays within 20 characters: ``promo`` -> ``promo2``,
    ``abcdefghijklmnopqrst`` in 3 parts -> ``abcdefghijklmnopq2P1``... Raises ValueError
    when :data:`MAX_SUFFIX` suffixes are all taken.
    """
    ids = part_ids(campaign_id, parts)
    if not taken(ids):
        return ids
    tried = {ids[0]}
    numbering = len(f"P{parts}") if parts > 1 else 0
    for number in range(2, MAX_SUFFIX + 1):
        suffix = str(number)
        keep = MAX_CAMPAIGN_ID - len(suffix) - numbering
        if keep < 1:
            break
        base = campaign_id[:keep] + suffix
        ids = [base] if parts == 1 else [f"{base}P{n}" for n in range(1, parts + 1)]
        if ids[0] in tried:  # "...0002" cut and suffixed "2" is itself again
            continue
        tried.add(ids[0])
        if not taken(ids):
            return ids
    raise ValueError(f"no free campaign id left for {campaign_id!r} in {parts} part(s)")


def part_ids(campaign_id: str, parts: int) -> list[str]:
    """Ids for a campaign split into ``parts`` files: ``<id>P1`` .. ``<id>Pn``, each <= 20.

    The id is cut once, for the longest suffix, so that every part shares one prefix.
    """
    _check_campaign_id(campaign_id)
    if parts < 1:
        raise ValueError(f"a campaign has at least one part, got {parts}")
    if parts == 1:
        return [campaign_id]
    keep = MAX_CAMPAIGN_ID - len(f"P{parts}")
    if keep < 1:
        raise ValueError(f"{parts} parts cannot be numbered within {MAX_CAMPAIGN_ID} characters")
    prefix = campaign_id[:keep]
    return [f"{prefix}P{number}" for number in range(1, parts + 1)]


def parts_needed(rows: int, max_rows_per_file: int) -> int:
    """How many provider files ``rows`` rows need; at least one."""
    if max_rows_per_file < 1:
        raise ValueError(f"max_rows_per_file must be at least 1, got {max_rows_per_file}")
    if rows < 0:
        raise ValueError(f"a row count cannot be negative, got {rows}")
    return max(1, -(-rows // max_rows_per_file))


def _is_alnum(text: str) -> bool:
    return _ALNUM.fullmatch(text) is not None


def _check_campaign_id(campaign_id: str) -> None:
    if len(campaign_id) > MAX_CAMPAIGN_ID or not _is_alnum(campaign_id):
        raise ValueError(f"campaign id must be 1 to 20 letters or digits, got {campaign_id!r}")


def _check_extension(extension: str) -> None:
    if extension not in EXTENSIONS:
        raise ValueError(f"unknown provider file extension {extension!r}; one of {EXTENSIONS}")
