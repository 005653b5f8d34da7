"""The provider's file names: ``KIND-SERVICEID-YYYYMMDD-HHMM-CAMPAIGNID.ext``.

The name is the only link between a campaign we send (``SEND-``) and what the provider
gives back (``ACK-``, ``STOP-``, ``SMSMO-`` with the same middle part), and the extension
is the only signal of the remote file's progress (``.tmp -> .csv -> .lock -> .done |
.reject``). Pure: building and reading names, nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CAMPAIGN_ID = 20
SERVICE_ID_LENGTH = 5
EXTENSIONS = (".tmp", ".csv", ".lock", ".done", ".reject")

_ALNUM = re.compile(r"[A-Za-z0-9]+")
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
