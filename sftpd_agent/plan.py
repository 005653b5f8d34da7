"""When a campaign is sent and under which provider names: pure, the clock passed in.

The file name decides campaign and time (``SEND-<service_id>-YYYYMMDD-HHMM-<ID>.csv``, else the
letters and digits of the stem, sent now); a past time means now; marketing campaigns move to
the next allowed minute of the window, or are held with ``outside_window = "hold"``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import PurePath
from zoneinfo import ZoneInfo

from .naming import Kind, ProviderName, campaign_id_from_stem, parse_name, part_ids, parts_needed
from .window import MarketingWindow


@dataclass(frozen=True, slots=True)
class Timing:
    """The scheduling settings a plan depends on."""

    service_id: str
    timezone: ZoneInfo
    window: MarketingWindow | None  # None: not a marketing account
    hold_outside_window: bool = False
    upload_lead: datetime.timedelta = datetime.timedelta(minutes=10)
    max_rows_per_file: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Plan:
    campaign_id: str
    requested_at: datetime.datetime | None  # the time named in the file, if any
    send_at: datetime.datetime              # aware, in the configured time zone
    upload_at: datetime.datetime
    names: tuple[str, ...]                  # provider file names, one per part
    note: str | None = None                 # why send_at differs from the requested time
    hold_reason: str | None = None


def campaign_from_filename(
    filename: str, timing: Timing
) -> tuple[str, datetime.datetime | None, str | None]:
    """``(campaign_id, requested time or None, problem or None)`` from a dropped file's name."""
    name = PurePath(filename).name
    parsed = parse_name(name)
    if parsed is not None and parsed.kind is Kind.SEND and parsed.extension == ".csv":
        if parsed.service_id != timing.service_id:
            return parsed.campaign_id, None, (
                f"file name names service {parsed.service_id}, "
                f"but this agent sends for service_id {timing.service_id}"
            )
        return parsed.campaign_id, parsed.when.replace(tzinfo=timing.timezone), None
    try:
        return campaign_id_from_stem(PurePath(name).stem), None, None
    except ValueError:
        return "", None, "the file name has no letter or digit to make a campaign id from"


def plan(filename: str, rows: int, *, now: datetime.datetime, timing: Timing) -> Plan:
    """The send time, upload time and provider names of a campaign of ``rows`` rows."""
    campaign_id, requested, problem = campaign_from_filename(filename, timing)
    now = now.astimezone(timing.timezone)
    earliest = _ceil_minute(now)
    send_at = earliest if requested is None or requested < earliest else requested
    note = None if requested is None or send_at == requested else "the requested time is past"
    hold = problem
    window = timing.window
    if window is not None and not window.allows(send_at):
        if timing.hold_outside_window:
            hold = hold or (
                f"send time {send_at:%Y-%m-%d %H:%M} is outside the marketing window "
                "and outside_window = hold"
            )
        else:
            moved = window.next_allowed(send_at).astimezone(timing.timezone)
            note = f"moved from {send_at:%Y-%m-%d %H:%M}: outside the marketing window"
            send_at = moved
    upload_at = max(now, send_at - timing.upload_lead)
    names: tuple[str, ...] = ()
    if campaign_id and problem is None:
        names = provider_names(campaign_id, send_at, max(rows, 1), timing)
    return Plan(campaign_id, requested, send_at, upload_at, names, note, hold)


def provider_names(
    campaign_id: str, send_at: datetime.datetime, rows: int, timing: Timing
) -> tuple[str, ...]:
    """``SEND-`` file names for ``rows`` rows sent at ``send_at`` (parts when too many)."""
    local = send_at.astimezone(timing.timezone).replace(tzinfo=None, second=0, microsecond=0)
    ids = part_ids(campaign_id, parts_needed(rows, timing.max_rows_per_file))
    return tuple(ProviderName(Kind.SEND, timing.service_id, local, part).filename(".csv")
                 for part in ids)


def _ceil_minute(instant: datetime.datetime) -> datetime.datetime:
    if instant.second or instant.microsecond:
        instant = instant.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    return instant
