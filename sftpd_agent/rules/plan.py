"""When a campaign is sent and under which provider names: pure, the clock passed in.

The file name decides campaign and time (:func:`sftpd_agent.naming.read_dropped_name`):
``SEND-<service_id>-YYYYMMDD-HHMM-<ID>.csv`` at that local time, any other name now. The
rules, in the order they apply:

1. a name that starts like the provider's but cannot be read is held, with the part named;
2. a local time that does not exist (the spring gap) moves to the first minute after the
   gap; one that exists twice (the autumn overlap) is its first occurrence (both noted);
3. a time past by at most ``stale_after`` means now; further past, the file is held as stale;
4. marketing campaigns move to the next allowed minute of the window, or are held with
   ``outside_window = "hold"``: a campaign never goes out *earlier* than it asked.

Every comparison and subtraction is done on UTC instants: aware datetimes that share a
``ZoneInfo`` compare and subtract by wall clock, which is wrong across a clock change.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .naming import (
    Kind,
    ProviderName,
    distinct_part_ids,
    part_ids,
    parts_needed,
    read_dropped_name,
    safe_campaign_id,
)
from .window import MarketingWindow, ceil_minute
from .zones import Zone, zone_named

UTC = datetime.UTC
_MINUTE = datetime.timedelta(minutes=1)
_LONGEST_GAP_MINUTES = 24 * 60  # real gaps are an hour (or 30 min); a bound, not a guess


@dataclass(frozen=True, slots=True)
class Timing:
    """The scheduling settings a plan depends on."""

    service_id: str
    timezone: ZoneInfo
    window: MarketingWindow | None  # None: not a marketing account
    hold_outside_window: bool = False
    upload_lead: datetime.timedelta = datetime.timedelta(minutes=10)
    max_rows_per_file: int = 1_000_000
    stale_after: datetime.timedelta = datetime.timedelta(minutes=60)
    recipient_local_window: bool = True  # marketing: overseas numbers in their own zone


@dataclass(frozen=True, slots=True)
class Reading:
    """How a dropped file's name was read, its time placed in the configured zone."""

    campaign_id: str                            # "" when none could be made
    requested: datetime.datetime | None = None  # aware; after the daylight-saving rule
    provider_like: bool = False                 # starts like the provider's: read as one
    notes: tuple[str, ...] = ()                 # the campaign id made safe
    time_note: str | None = None                # the daylight-saving rule applied
    problem: str | None = None                  # why the file is held
    written: datetime.datetime | None = None    # the naive local time as the name writes it


@dataclass(frozen=True, slots=True)
class Plan:
    campaign_id: str
    requested_at: datetime.datetime | None  # the time named in the file, if any (DST applied)
    send_at: datetime.datetime              # aware, in the configured time zone
    upload_at: datetime.datetime
    names: tuple[str, ...]                  # provider file names, one per part; () when held
    note: str | None = None                 # why send_at differs from the time written
    hold_reason: str | None = None
    name_notes: tuple[str, ...] = ()        # what reading the name changed (the id made safe)
    provider_like: bool = False             # the name was read as the provider's
    name_problem: str | None = None         # why the name alone holds the file
    requested_wall: datetime.datetime | None = None  # naive: the time as the name writes it
    asked_at: datetime.datetime | None = None  # the instant asked for (now when past), before
                                               # the window moved it: each zone starts here


@dataclass(frozen=True, slots=True)
class Group:
    """The rows of a campaign that go at one send time: one provider file (or its parts)."""

    zones: tuple[str, ...]          # zone codes (``FR``, ``RE``, ...; ``foreign``)
    rows: int
    send_at: datetime.datetime      # aware, in the configured time zone
    local: tuple[tuple[str, datetime.datetime], ...]  # (zone code, send time on its clock)
    names: tuple[str, ...] = ()


FOREIGN = "foreign"
"""The group key of numbers of other countries."""


def zone_send_at(plan: Plan, zone: Zone | None, timing: Timing) -> datetime.datetime:
    """When the rows of ``zone`` (None: another country) of a scheduled campaign go.

    Metropolitan and foreign numbers, transactional accounts and
    ``recipient_local_window = false``: the campaign's time. An overseas zone: the first
    allowed minute at or after the time asked for, on that zone's wall clock and calendar
    (France's holidays and its own), whatever the Paris window said.
    """
    window = timing.window
    if (window is None or not timing.recipient_local_window or zone is None
            or zone.subdivision is None or plan.asked_at is None):
        return plan.send_at
    local = window.in_zone(zone.tz, (zone.subdivision,))
    return local.next_allowed(plan.asked_at).astimezone(timing.timezone)


def plan_groups(
    plan: Plan, rows: Mapping[str, int], timing: Timing,
    taken: Callable[[str], bool] = lambda name: False,
) -> tuple[Group, ...]:
    """One group per distinct send time of ``rows`` (zone code -> surviving rows), in send
    time order, each named (its parts when too many) with names ``taken`` does not know
    and that no earlier group took. The campaign's own time keeps the plan's names when
    ``taken`` knows none of them."""
    times: dict[datetime.datetime, list[str]] = {}
    for code, count in sorted(rows.items()):
        if count <= 0:
            continue
        zone = None if code == FOREIGN else zone_named(code)
        times.setdefault(zone_send_at(plan, zone, timing).astimezone(UTC), []).append(code)
    chosen: set[str] = set()
    groups = []
    for instant in sorted(times):
        codes = tuple(times[instant])
        count = sum(rows[c] for c in codes)
        send_at = instant.astimezone(timing.timezone)
        names = distinct_provider_names(
            plan.campaign_id, send_at, count, timing,
            lambda name: name in chosen or taken(name))
        chosen.update(names)
        local = tuple((c, instant.astimezone(zone_named(c).tz if c != FOREIGN
                                             else timing.timezone)) for c in codes)
        groups.append(Group(codes, count, send_at, local, names))
    return tuple(groups)


def read_filename(filename: str, timing: Timing) -> Reading:
    """Read a dropped file's name: campaign id, requested time (aware), notes, problem."""
    dropped = read_dropped_name(filename)
    problem = dropped.problem
    if dropped.service_id is not None and dropped.service_id != timing.service_id:
        wrong = (f"file name names service {dropped.service_id}, "
                 f"but this agent sends for service_id {timing.service_id}")
        problem = f"{wrong}; {problem}" if problem else wrong
    requested = time_note = None
    if dropped.when is not None:
        requested, time_note = resolve_local(dropped.when, timing.timezone)
    return Reading(dropped.campaign_id, requested, dropped.provider_like, dropped.notes,
                   time_note, problem, dropped.when)


def campaign_from_filename(
    filename: str, timing: Timing
) -> tuple[str, datetime.datetime | None, str | None]:
    """``(campaign_id, requested time or None, problem or None)`` from a dropped file's name."""
    reading = read_filename(filename, timing)
    return reading.campaign_id, reading.requested, reading.problem


def resolve_local(
    wall: datetime.datetime, zone: ZoneInfo
) -> tuple[datetime.datetime, str | None]:
    """The instant a naive local time names in ``zone`` and, if it needed a rule, why.

    A time in the spring gap (it never shows on the clock) becomes the first minute after
    the gap; a time in the autumn overlap (it shows twice) is its first occurrence.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"a naive local time is needed, got {wall.isoformat()}")
    first = wall.replace(tzinfo=zone, fold=0)
    if _exists(first):
        second = wall.replace(tzinfo=zone, fold=1)
        instant = first.astimezone(UTC).astimezone(zone)
        if first.utcoffset() == second.utcoffset():
            return instant, None
        return instant, (
            f"{wall:%Y-%m-%d %H:%M} happens twice in {zone.key} that night (the clocks go "
            f"back): taken at its first occurrence, {wall:%H:%M} UTC{_offset(instant)}")
    moved = wall
    for _ in range(_LONGEST_GAP_MINUTES):
        moved += _MINUTE
        if _exists(moved.replace(tzinfo=zone)):
            break
    instant = moved.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return instant, (
        f"{wall:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks go forward that "
        f"night): moved to {moved:%H:%M}, the first minute after the gap")


def stale_reason(
    requested: datetime.datetime, now: datetime.datetime, timing: Timing
) -> str | None:
    """Why a requested time is too far in the past to mean "now", or None."""
    age = now.astimezone(UTC) - requested.astimezone(UTC)
    if age <= timing.stale_after:
        return None
    minutes = int(timing.stale_after.total_seconds() // 60)
    return (f"stale: the requested time {describe(requested, timing.timezone)} is "
            f"{age_text(age)} past, more than stale_after_minutes = {minutes}")


def plan(filename: str, rows: int, *, now: datetime.datetime, timing: Timing) -> Plan:
    """The send time, upload time and provider names of a campaign of ``rows`` rows."""
    reading = read_filename(filename, timing)
    zone = timing.timezone
    now = now.astimezone(UTC)
    earliest = ceil_minute(now)
    notes = [reading.time_note] if reading.time_note else []
    hold = reading.problem
    send_at = earliest
    requested = reading.requested
    if requested is not None and hold is None:
        send_at = requested.astimezone(UTC)
        if send_at < earliest:
            hold = stale_reason(requested, now, timing)
            if hold is None:
                notes.append(f"the requested time {describe(requested, zone)} is "
                             f"{age_text(now - send_at)} past: sent now")
                send_at = earliest
    asked_at = send_at
    window = timing.window
    if hold is None and window is not None and not window.allows(send_at):
        if timing.hold_outside_window:
            hold = (f"send time {describe(send_at, zone)} is outside the marketing window "
                    "and outside_window = hold")
        else:
            moved = window.next_allowed(send_at).astimezone(UTC)
            notes.append(f"moved from {describe(send_at, zone)}: outside the marketing window")
            send_at = moved
    upload_at = max(now, send_at - timing.upload_lead)
    names: tuple[str, ...] = ()
    if hold is None:
        names = provider_names(reading.campaign_id, send_at, max(rows, 1), timing)
    return Plan(
        reading.campaign_id, requested, send_at.astimezone(zone), upload_at.astimezone(zone),
        names, "; ".join(notes) or None, hold, reading.notes, reading.provider_like,
        reading.problem, reading.written, asked_at.astimezone(zone))


def submission_name(
    source: str, *, campaign: str | None, at: datetime.datetime | None,
    now: datetime.datetime, timing: Timing,
) -> tuple[str, tuple[str, ...]]:
    """The outbox name ``submit`` gives ``source``, and notes on what it changed.

    The same rules as a dropped file: ``at`` (naive local time, default the time in a
    provider-like ``source`` name, else the next whole minute) follows the daylight-saving
    rule, and a stale time is refused; ``campaign`` (default: the id read from ``source``)
    is made safe. A ``source`` name that starts like the provider's but cannot be read is
    refused unless both ``at`` and ``campaign`` replace what it says. ValueError, with a
    one-line reason, when no name can be given.
    """
    reading = read_filename(source, timing)
    if reading.problem and reading.provider_like and (at is None or campaign is None):
        raise ValueError(f"{source}: {reading.problem}")
    notes: list[str] = []
    if campaign is not None:
        campaign_id, changed = safe_campaign_id(campaign)
        if not campaign_id:
            raise ValueError(f"--campaign {campaign!r} has no letter or digit")
    else:
        campaign_id, changed = reading.campaign_id, reading.notes
        if not campaign_id:
            raise ValueError(f"{source}: {reading.problem or 'no campaign id'} "
                             "(give --campaign)")
    notes += changed
    requested, time_note = reading.requested, reading.time_note
    if at is not None:
        requested, time_note = resolve_local(at, timing.timezone)
    elif requested is None:
        requested = ceil_minute(now.astimezone(UTC)).astimezone(timing.timezone)
    if time_note:
        notes.append(time_note)
    stale = stale_reason(requested, now, timing)
    if stale:
        raise ValueError(f"{stale}: the agent would hold it")
    if requested.astimezone(UTC) < now.astimezone(UTC):
        age = now.astimezone(UTC) - requested.astimezone(UTC)
        notes.append(f"the time {describe(requested, timing.timezone)} is {age_text(age)} "
                     "past: the agent sends it now")
    wall = requested.astimezone(timing.timezone).replace(tzinfo=None)
    name = ProviderName(Kind.SEND, timing.service_id, wall, campaign_id).filename(".csv")
    return name, tuple(notes)


def provider_names(
    campaign_id: str, send_at: datetime.datetime, rows: int, timing: Timing
) -> tuple[str, ...]:
    """``SEND-`` file names for ``rows`` rows sent at ``send_at`` (parts when too many)."""
    ids = part_ids(campaign_id, parts_needed(rows, timing.max_rows_per_file))
    return _names(ids, send_at, timing)


def distinct_provider_names(
    campaign_id: str, send_at: datetime.datetime, rows: int, timing: Timing,
    taken: Callable[[str], bool],
) -> tuple[str, ...]:
    """Like :func:`provider_names`, but none of the names is one ``taken`` already knows.

    Two different files that would get the same id and time (``promo (1).csv`` dropped
    twice) get different provider names: the second ``...-promo2.csv`` (suffix before any
    part number, within the 20 characters). ``taken(name)`` answers whether a full
    provider file name is already used, e.g. by the journal. ValueError when no suffix is
    free.
    """
    def ids_taken(ids: list[str]) -> bool:
        return any(taken(name) for name in _names(ids, send_at, timing))

    parts = parts_needed(rows, timing.max_rows_per_file)
    return _names(distinct_part_ids(campaign_id, parts, ids_taken), send_at, timing)


def describe(when: datetime.datetime, zone: ZoneInfo) -> str:
    """``2027-01-05 09:00 Europe/Paris`` (with the offset when the hour repeats that night)."""
    local = when.astimezone(UTC).astimezone(zone)
    text = f"{local:%Y-%m-%d %H:%M} {zone.key}"
    other = local.replace(fold=1 - local.fold)
    if other.utcoffset() != local.utcoffset() and _exists(other):
        text += f" (UTC{_offset(local)})"
    return text


def age_text(age: datetime.timedelta) -> str:
    """``30 days 2 hours``, ``75 minutes`` -> ``1 hour 15 minutes``: how long ago, in words."""
    minutes = int(age.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}"
             for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return " ".join(parts)


def _names(
    ids: list[str], send_at: datetime.datetime, timing: Timing
) -> tuple[str, ...]:
    local = send_at.astimezone(timing.timezone).replace(tzinfo=None, second=0, microsecond=0)
    return tuple(ProviderName(Kind.SEND, timing.service_id, local, part).filename(".csv")
                 for part in ids)


def _exists(aware: datetime.datetime) -> bool:
    """Whether a local wall-clock time shows on the clock (it is not in a spring gap)."""
    zone = aware.tzinfo
    back = aware.astimezone(UTC).astimezone(zone)
    return back.replace(tzinfo=None) == aware.replace(tzinfo=None, fold=0)


def _offset(local: datetime.datetime) -> str:
    text = local.strftime("%z")
    return f"{text[:3]}:{text[3:]}"
