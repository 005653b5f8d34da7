"""French commercial-SMS hours: when a marketing campaign may go out.

A moment is allowed when, in Europe/Paris (or the recipient's own zone, see
:meth:`MarketingWindow.in_zone`), it falls on a window day that is not a French
public holiday (national, plus the configured subdivisions such as Alsace-Moselle or
La Réunion) and its local wall-clock time is in ``[start, end)``. Pure: the clock is always
passed in, and the only state is a small per-instance cache of holiday dates.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import holidays
from holidays.countries.france import France

PARIS = ZoneInfo("Europe/Paris")
UTC = datetime.UTC

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_RANGE = re.compile(r"([a-z]{3})(?:\s*-\s*([a-z]{3}))?")
_HH_MM = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_SEARCH_DAYS = 400  # more than a year: any window with at least one day finds a slot
_CACHED_YEARS = 4  # a campaign looks at this year and the next; a few more cost nothing
_MINUTE = datetime.timedelta(minutes=1)
_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class MarketingWindow:
    """The days and hours in which marketing SMS may be sent (Europe/Paris wall clock)."""

    days: frozenset[int]  # 0 = Monday
    start: datetime.time
    end: datetime.time
    subdivisions: tuple[str, ...] = ()
    zone: ZoneInfo = PARIS  # whose wall clock the days and hours are read on
    # year -> holiday dates; bounded, filled lazily, never compared or shown
    _holidays: dict[int, frozenset[datetime.date]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.days <= frozenset(range(7)):
            raise ValueError(f"window days must be 0 (Monday) to 6 (Sunday), got {self.days}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window start and end are wall-clock times, not aware")
        if self.start >= self.end:
            raise ValueError(
                f"window_start {self.start:%H:%M} must be before window_end {self.end:%H:%M}"
            )
        for code in self.subdivisions:
            if code not in France.subdivisions:
                raise ValueError(f"holiday_subdivisions: unknown French subdivision {code!r}")

    @classmethod
    def parse(
        cls, days: str, start: str, end: str, subdivisions: Sequence[str] = ()
    ) -> MarketingWindow:
        """Build a window from the ``[campaign]`` settings, or raise a one-line ValueError."""
        return cls(
            days=parse_days(days),
            start=_parse_hh_mm("window_start", start),
            end=_parse_hh_mm("window_end", end),
            subdivisions=tuple(_subdivision_code(name) for name in subdivisions),
        )

    def in_zone(self, zone: ZoneInfo, subdivisions: tuple[str, ...]) -> MarketingWindow:
        """The same days and hours on ``zone``'s wall clock, with France's holidays and those
        of ``subdivisions`` (a recipient's own territory)."""
        return MarketingWindow(self.days, self.start, self.end, subdivisions, zone)

    def is_holiday(self, day: datetime.date) -> bool:
        """Whether ``day`` is a public holiday in France or one of the subdivisions."""
        return day in self._holiday_dates(day.year)

    def allows(self, when: datetime.datetime) -> bool:
        """Whether a marketing SMS may be sent at the instant ``when``."""
        local = _require_aware(when).astimezone(self.zone)
        return self._open_on(local.date()) and self.start <= local.time() < self.end

    def next_allowed(self, when: datetime.datetime) -> datetime.datetime:
        """The first allowed whole minute at or after ``when``, in the window's zone.

        Works on instants, not wall-clock arithmetic, so a daylight-saving change never
        yields a nonexistent local time nor an instant earlier than ``when``.
        """
        earliest = ceil_minute(_require_aware(when).astimezone(UTC))
        first_day = earliest.astimezone(self.zone).date()
        for offset in range(_SEARCH_DAYS):
            day = first_day + offset * _ONE_DAY
            if not self._open_on(day):
                continue
            found = [
                instant
                for instant in _entry_points(day, self.start, earliest, self.zone)
                if instant >= earliest and self._allows_on(day, instant)
            ]
            if found:
                return min(found).astimezone(self.zone)
        raise ValueError(
            f"no allowed sending time within {_SEARCH_DAYS} days after {when.isoformat()}"
        )

    def _open_on(self, day: datetime.date) -> bool:
        return day.weekday() in self.days and not self.is_holiday(day)

    def _allows_on(self, day: datetime.date, instant: datetime.datetime) -> bool:
        local = instant.astimezone(self.zone)
        return local.date() == day and self.start <= local.time() < self.end

    def _holiday_dates(self, year: int) -> frozenset[datetime.date]:
        cached = self._holidays.get(year)
        if cached is None:
            cached = _french_holidays(year, self.subdivisions)
            if len(self._holidays) >= _CACHED_YEARS:
                del self._holidays[next(iter(self._holidays))]  # the oldest entry
            self._holidays[year] = cached
        return cached


def parse_days(text: str) -> frozenset[int]:
    """``"Mon-Sat"``, ``"Mon,Wed,Fri"``, ``"Mon-Fri,Sat"`` (any case) -> weekday numbers."""
    days: set[int] = set()
    for part in text.lower().split(","):
        match = _DAY_RANGE.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"window_days: cannot read {part.strip()!r} in {text!r}"
                             " (use names like Mon-Sat or Mon,Wed,Fri)")
        first = _day_number(match[1], text)
        last = first if match[2] is None else _day_number(match[2], text)
        if last < first:
            raise ValueError(f"window_days: range {part.strip()!r} in {text!r} runs backwards"
                             " (write it from Monday towards Sunday)")
        days.update(range(first, last + 1))
    return frozenset(days)


def _day_number(name: str, text: str) -> int:
    if name not in _DAY_NAMES:
        raise ValueError(f"window_days: unknown day {name!r} in {text!r} (use Mon..Sun)")
    return _DAY_NAMES.index(name)


def _parse_hh_mm(key: str, text: str) -> datetime.time:
    match = _HH_MM.fullmatch(text.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{key}: expected a time HH:MM between 00:00 and 23:59, got {text!r}")
    return datetime.time(int(match[1]), int(match[2]))


def _subdivision_code(name: str) -> str:
    """The ``holidays`` code for a subdivision given by code or alias, any case."""
    known = {code.casefold(): code for code in France.subdivisions}
    known.update({alias.casefold(): code for alias, code in France.subdivisions_aliases.items()})
    code = known.get(name.strip().casefold())
    if code is None:
        raise ValueError(f"holiday_subdivisions: unknown French subdivision {name!r}")
    return code


def _french_holidays(year: int, subdivisions: tuple[str, ...]) -> frozenset[datetime.date]:
    dates = set(holidays.country_holidays("FR", years=year))
    for code in subdivisions:
        dates.update(holidays.country_holidays("FR", subdiv=code, years=year))
    return frozenset(dates)


def _require_aware(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is needed, got {when.isoformat()}")
    return when


def ceil_minute(instant: datetime.datetime) -> datetime.datetime:
    """Round up to a whole minute (Paris offsets are whole hours, so UTC minutes are local ones)."""
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + _MINUTE


def _entry_points(
    day: datetime.date, start: datetime.time, earliest: datetime.datetime, zone: ZoneInfo
) -> Iterator[datetime.datetime]:
    """Every instant (UTC) at which an allowed stretch of ``day`` can begin.

    Local time moves continuously except at a daylight-saving change, so the window is
    entered either when the wall clock shows ``start`` (twice if it is repeated in autumn) or
    by the jump itself (a start that does not exist in spring, or the hour that comes back
    in autumn); the search may also begin inside the window, at ``earliest``.
    """
    yield earliest
    wall = datetime.datetime.combine(day, start, tzinfo=zone)
    yield wall.astimezone(UTC)
    yield wall.replace(fold=1).astimezone(UTC)
    change = _offset_change(day, zone)
    if change is not None:
        yield change


def _offset_change(day: datetime.date, zone: ZoneInfo = PARIS) -> datetime.datetime | None:
    """The first minute (UTC) with the new UTC offset if it changes during ``day``, else None."""
    low = datetime.datetime.combine(day, datetime.time(), tzinfo=zone).astimezone(UTC)
    high = datetime.datetime.combine(day + _ONE_DAY, datetime.time(), tzinfo=zone).astimezone(UTC)
    before = low.astimezone(zone).utcoffset()
    if high.astimezone(zone).utcoffset() == before:
        return None
    while high - low > _MINUTE:  # bisection: about 11 steps for a day of minutes
        middle = ceil_minute(low + (high - low) / 2)
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high
