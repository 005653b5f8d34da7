"""The French marketing window: parsing, holidays, and the next allowed minute.

Expected values are written out from the calendar: 2026-11-21 is a Saturday, 2026-12-25 a
Friday, Easter Monday 2026 is 6 April, Good Friday 3 April, and Paris changes clocks at
01:00 UTC on Sunday 29 March (02:00 CET -> 03:00 CEST) and Sunday 25 October 2026
(03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.window import MarketingWindow, parse_days

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC
CET = dt.timezone(dt.timedelta(hours=1))
CEST = dt.timezone(dt.timedelta(hours=2))


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
          second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


def standard() -> MarketingWindow:
    return MarketingWindow.parse("Mon-Sat", "08:00", "21:30")


def assert_same_instant(got: dt.datetime, expected: dt.datetime) -> None:
    """Equal as instants, with the Paris offset of that instant, on a whole minute."""
    assert got.astimezone(UTC) == expected.astimezone(UTC)
    assert got.utcoffset() == expected.utcoffset()
    assert got.tzinfo is PARIS
    assert (got.second, got.microsecond) == (0, 0)


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon-Sat", {0, 1, 2, 3, 4, 5}),
        ("Mon-Fri", {0, 1, 2, 3, 4}),
        ("Mon,Wed,Fri", {0, 2, 4}),
        ("Mon-Fri,Sat", {0, 1, 2, 3, 4, 5}),
        ("mon-SUN", {0, 1, 2, 3, 4, 5, 6}),
        (" Tue - Thu , sun ", {1, 2, 3, 6}),
        ("Sun", {6}),
        ("Wed-Wed", {2}),
    ],
)
def test_parse_days(text: str, expected: set[int]) -> None:
    assert parse_days(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["", "Mon-", "Monday", "Mon-Sta", "Sat-Mon", "Mon;Tue", "1-5",
                                  "Mon,,Tue", "Mon-Tue-Wed"])
def test_bad_days_raise_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="window_days") as caught:
        parse_days(text)
    assert "\n" not in str(caught.value)


def test_parse_builds_the_window() -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", ["57", "974"])
    assert window.days == frozenset({0, 1, 2, 3, 4, 5})
    assert window.start == dt.time(8, 0)
    assert window.end == dt.time(21, 30)
    assert window.subdivisions == ("57", "974")


def test_subdivision_aliases_and_case_give_the_code() -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", ["6ae", "Moselle", "RE"])
    assert window.subdivisions == ("6AE", "57", "974")


@pytest.mark.parametrize(("start", "end"), [("21:30", "08:00"), ("08:00", "08:00"),
                                            ("8h00", "21:30"), ("08:00", "24:00"),
                                            ("08:60", "21:30"), ("", "21:30"),
                                            ("08:00", "21:30:00")])
def test_bad_hours_raise(start: str, end: str) -> None:
    with pytest.raises(ValueError, match="window_") as caught:
        MarketingWindow.parse("Mon-Sat", start, end)
    assert "\n" not in str(caught.value)


def test_unknown_subdivision_is_named() -> None:
    with pytest.raises(ValueError, match="'99'"):
        MarketingWindow.parse("Mon-Sat", "08:00", "21:30", ["57", "99"])
    with pytest.raises(ValueError, match="'Moselle'"):  # the constructor wants codes
        MarketingWindow(frozenset({0}), dt.time(8), dt.time(21), ("Moselle",))


def test_direct_construction_is_checked() -> None:
    with pytest.raises(ValueError, match="0 \\(Monday\\) to 6"):
        MarketingWindow(frozenset({7}), dt.time(8), dt.time(21))
    with pytest.raises(ValueError, match="before"):
        MarketingWindow(frozenset({0}), dt.time(21), dt.time(8))


def test_equality_and_hash_ignore_the_cache() -> None:
    used, fresh = standard(), standard()
    used.is_holiday(dt.date(2026, 12, 25))
    assert used == fresh
    assert hash(used) == hash(fresh)
    assert "_holidays" not in repr(used)


# -- holidays --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(2026, 1, 1), True),
        (dt.date(2026, 4, 6), True),  # Easter Monday
        (dt.date(2026, 5, 1), True),
        (dt.date(2026, 5, 8), True),
        (dt.date(2026, 5, 14), True),  # Ascension
        (dt.date(2026, 5, 25), True),  # Whit Monday
        (dt.date(2026, 7, 14), True),
        (dt.date(2026, 8, 15), True),
        (dt.date(2026, 11, 1), True),
        (dt.date(2026, 11, 11), True),
        (dt.date(2026, 12, 25), True),
        (dt.date(2027, 1, 1), True),
        (dt.date(2026, 4, 3), False),  # Good Friday: only in Alsace-Moselle
        (dt.date(2026, 12, 26), False),  # St Stephen: only in Alsace-Moselle
        (dt.date(2026, 12, 20), False),  # abolition of slavery: only in La Réunion
        (dt.date(2026, 11, 23), False),
    ],
)
def test_national_holidays(day: dt.date, expected: bool) -> None:
    assert standard().is_holiday(day) is expected


@pytest.mark.parametrize("code", ["57", "6AE"])
def test_alsace_moselle_holidays(code: str) -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", [code])
    assert window.is_holiday(dt.date(2026, 4, 3))
    assert window.is_holiday(dt.date(2026, 12, 26))
    assert window.is_holiday(dt.date(2026, 12, 25))  # national ones still count
    assert not window.is_holiday(dt.date(2026, 12, 20))


def test_reunion_holiday() -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", ["974"])
    assert window.is_holiday(dt.date(2026, 12, 20))
    assert window.is_holiday(dt.date(2027, 12, 20))
    assert not window.is_holiday(dt.date(2026, 12, 26))


def test_holiday_cache_stays_small() -> None:
    window = standard()
    for year in range(2000, 2060):
        assert window.is_holiday(dt.date(year, 7, 14))
    assert len(window._holidays) <= 4
    assert window.is_holiday(dt.date(2001, 5, 1))  # evicted years come back


# -- allows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (paris(2026, 11, 23, 8, 0), True),  # Monday, opening minute
        (paris(2026, 11, 23, 7, 59, 59), False),
        (paris(2026, 11, 23, 21, 29, 59), True),
        (paris(2026, 11, 23, 21, 30), False),  # the end is excluded
        (paris(2026, 11, 21, 12, 0), True),  # Saturday
        (paris(2026, 11, 22, 12, 0), False),  # Sunday
        (paris(2026, 12, 25, 12, 0), False),  # Christmas, a Friday
        (paris(2026, 5, 1, 12, 0), False),
        (paris(2026, 4, 6, 12, 0), False),  # Easter Monday
        (dt.datetime(2026, 11, 23, 7, 0, tzinfo=UTC), True),  # 08:00 in Paris (CET)
        (dt.datetime(2026, 7, 6, 6, 30, tzinfo=UTC), True),  # 08:30 in Paris (CEST)
        (dt.datetime(2026, 7, 6, 5, 59, tzinfo=UTC), False),  # 07:59 CEST
        (dt.datetime(2026, 11, 23, 20, 29, tzinfo=UTC), True),  # 21:29 CET
        (dt.datetime(2026, 11, 21, 23, 30, tzinfo=UTC), False),  # Sunday 00:30 in Paris
    ],
)
def test_allows(when: dt.datetime, expected: bool) -> None:
    assert standard().allows(when) is expected


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        standard().allows(dt.datetime(2026, 11, 23, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        standard().next_allowed(dt.datetime(2026, 11, 23, 12, 0))


# -- next_allowed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # allowed and on a minute: itself
        (paris(2026, 11, 23, 10, 0), paris(2026, 11, 23, 10, 0)),
        (paris(2026, 11, 23, 8, 0), paris(2026, 11, 23, 8, 0)),
        # seconds round up to the next minute
        (paris(2026, 11, 23, 10, 0, 1), paris(2026, 11, 23, 10, 1)),
        (dt.datetime(2026, 11, 23, 9, 0, 0, 1, tzinfo=PARIS), paris(2026, 11, 23, 9, 1)),
        (paris(2026, 11, 23, 21, 29, 30), paris(2026, 11, 24, 8, 0)),  # rounds onto the end
        # before opening, after closing
        (paris(2026, 11, 23, 6, 15), paris(2026, 11, 23, 8, 0)),
        (paris(2026, 11, 23, 21, 30), paris(2026, 11, 24, 8, 0)),
        # Saturday evening and Sunday -> Monday 08:00
        (paris(2026, 11, 21, 21, 30), paris(2026, 11, 23, 8, 0)),
        (paris(2026, 11, 21, 23, 59, 59), paris(2026, 11, 23, 8, 0)),
        (paris(2026, 11, 22, 0, 0), paris(2026, 11, 23, 8, 0)),
        (paris(2026, 11, 22, 15, 0), paris(2026, 11, 23, 8, 0)),
        # holidays -> next allowed day
        (paris(2026, 12, 25, 9, 0), paris(2026, 12, 26, 8, 0)),  # Christmas (Fri) -> Sat
        (paris(2026, 12, 24, 22, 0), paris(2026, 12, 26, 8, 0)),
        (paris(2026, 5, 1, 10, 0), paris(2026, 5, 2, 8, 0)),  # Labour Day (Fri) -> Sat
        (paris(2026, 4, 5, 12, 0), paris(2026, 4, 7, 8, 0)),  # Sunday then Easter Monday
        (paris(2026, 4, 4, 21, 45), paris(2026, 4, 7, 8, 0)),  # from Saturday evening
        (paris(2026, 5, 23, 22, 0), paris(2026, 5, 26, 8, 0)),  # Whit Monday
        (paris(2026, 7, 13, 21, 30), paris(2026, 7, 15, 8, 0)),  # 14 July (Tue)
        (paris(2026, 11, 10, 23, 0), paris(2026, 11, 12, 8, 0)),  # 11 November (Wed)
        # year end: 1 January 2027 is a Friday and a holiday
        (paris(2026, 12, 31, 21, 30), paris(2027, 1, 2, 8, 0)),
        (paris(2026, 12, 31, 23, 59), paris(2027, 1, 2, 8, 0)),
        (paris(2027, 1, 1, 0, 0), paris(2027, 1, 2, 8, 0)),
        # other zones in, Paris out
        (dt.datetime(2026, 11, 23, 6, 59, 30, tzinfo=UTC), paris(2026, 11, 23, 8, 0)),
        (dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
         paris(2026, 11, 23, 9, 0)),
    ],
)
def test_next_allowed(when: dt.datetime, expected: dt.datetime) -> None:
    assert_same_instant(standard().next_allowed(when), expected)


@pytest.mark.parametrize("code", ["57", "6AE"])
def test_next_allowed_alsace_moselle(code: str) -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", [code])
    # Christmas Friday, St Stephen Saturday, Sunday -> Monday 28
    assert_same_instant(window.next_allowed(paris(2026, 12, 24, 22, 0)), paris(2026, 12, 28, 8, 0))
    # Good Friday 3 April 2026 -> Saturday 4
    assert_same_instant(window.next_allowed(paris(2026, 4, 2, 21, 30)), paris(2026, 4, 4, 8, 0))
    # without the subdivision both are ordinary days
    assert_same_instant(standard().next_allowed(paris(2026, 4, 2, 21, 30)),
                        paris(2026, 4, 3, 8, 0))


def test_next_allowed_reunion() -> None:
    window = MarketingWindow.parse("Mon-Sat", "08:00", "21:30", ["974"])
    # 20 December 2027 is a Monday
    assert_same_instant(window.next_allowed(paris(2027, 12, 18, 22, 0)), paris(2027, 12, 21, 8, 0))
    assert_same_instant(standard().next_allowed(paris(2027, 12, 18, 22, 0)),
                        paris(2027, 12, 20, 8, 0))


# Daylight saving. Paris: 2026-03-29 01:00 UTC, 02:00 CET becomes 03:00 CEST (02:xx never
# exists); 2026-10-25 01:00 UTC, 03:00 CEST becomes 02:00 CET (02:xx happens twice).


@pytest.mark.parametrize(
    ("start", "end", "when", "expected"),
    [
        # window includes the missing hour: the wall clock jumps from 01:59 to 03:00
        ("01:00", "21:30", dt.datetime(2026, 3, 29, 1, 59, 30, tzinfo=CET),
         dt.datetime(2026, 3, 29, 3, 0, tzinfo=CEST)),
        ("01:00", "21:30", dt.datetime(2026, 3, 28, 23, 30, tzinfo=CET),
         dt.datetime(2026, 3, 29, 1, 0, tzinfo=CET)),
        ("01:00", "21:30", dt.datetime(2026, 3, 29, 1, 30, tzinfo=CET),
         dt.datetime(2026, 3, 29, 1, 30, tzinfo=CET)),
        # the start itself does not exist: the first minute after the jump
        ("02:30", "21:30", dt.datetime(2026, 3, 29, 0, 0, tzinfo=CET),
         dt.datetime(2026, 3, 29, 3, 0, tzinfo=CEST)),
        ("02:00", "21:30", dt.datetime(2026, 3, 28, 22, 0, tzinfo=CET),
         dt.datetime(2026, 3, 29, 3, 0, tzinfo=CEST)),
        # a window entirely inside the missing hour: nothing that day, the next day at start
        ("02:10", "02:50", dt.datetime(2026, 3, 29, 0, 0, tzinfo=CET),
         dt.datetime(2026, 3, 30, 2, 10, tzinfo=CEST)),
        # the repeated hour: first pass (CEST) then second pass (CET)
        ("02:30", "21:30", dt.datetime(2026, 10, 25, 0, 0, tzinfo=CEST),
         dt.datetime(2026, 10, 25, 2, 30, tzinfo=CEST)),
        ("02:30", "21:30", dt.datetime(2026, 10, 25, 2, 10, tzinfo=CET),  # past the first 02:30
         dt.datetime(2026, 10, 25, 2, 30, tzinfo=CET)),
        ("01:00", "21:30", dt.datetime(2026, 10, 25, 2, 30, 10, tzinfo=CET),
         dt.datetime(2026, 10, 25, 2, 31, tzinfo=CET)),
        ("01:00", "21:30", dt.datetime(2026, 10, 25, 2, 59, 1, tzinfo=CEST),
         dt.datetime(2026, 10, 25, 2, 0, tzinfo=CET)),  # rounding crosses the change
        # a window closed during the first pass reopens when the clock goes back
        ("01:00", "02:30", dt.datetime(2026, 10, 25, 2, 45, tzinfo=CEST),
         dt.datetime(2026, 10, 25, 2, 0, tzinfo=CET)),
        ("01:00", "02:30", dt.datetime(2026, 10, 25, 2, 30, tzinfo=CET),
         dt.datetime(2026, 10, 26, 1, 0, tzinfo=CET)),
    ],
)
def test_next_allowed_across_daylight_saving(start: str, end: str, when: dt.datetime,
                                             expected: dt.datetime) -> None:
    window = MarketingWindow.parse("Mon-Sun", start, end)
    got = window.next_allowed(when)
    # compared in UTC: Python never finds an ambiguous local time equal across zones (PEP 495)
    assert got.astimezone(UTC) == expected.astimezone(UTC)
    assert got.utcoffset() == expected.utcoffset()
    assert got.tzinfo is PARIS
    assert got >= when
    # a real local time: it survives a round trip through UTC unchanged
    back = got.astimezone(UTC).astimezone(PARIS)
    assert (back.replace(tzinfo=None), back.utcoffset()) == (got.replace(tzinfo=None),
                                                             got.utcoffset())


def test_allows_across_daylight_saving() -> None:
    window = MarketingWindow.parse("Mon-Sun", "01:00", "02:30")
    assert window.allows(dt.datetime(2026, 10, 25, 2, 15, tzinfo=CEST))
    assert not window.allows(dt.datetime(2026, 10, 25, 2, 45, tzinfo=CEST))
    assert window.allows(dt.datetime(2026, 10, 25, 2, 15, tzinfo=CET))  # the hour again
    assert window.allows(dt.datetime(2026, 3, 29, 1, 59, tzinfo=CET))
    assert not window.allows(dt.datetime(2026, 3, 29, 3, 0, tzinfo=CEST))


def test_empty_days_fail_fast() -> None:
    window = MarketingWindow(frozenset(), dt.time(8), dt.time(21, 30))
    with pytest.raises(ValueError, match="no allowed sending time within 400 days"):
        window.next_allowed(paris(2026, 11, 23, 8, 0))
    assert not window.allows(paris(2026, 11, 23, 12, 0))


def test_odd_window_skips_a_holiday_sunday() -> None:
    # Sunday 1 November 2026 is All Saints' Day: the next open Sunday is 8 November.
    window = MarketingWindow.parse("Sun", "08:00", "08:01")
    assert_same_instant(window.next_allowed(paris(2026, 10, 31, 12, 0)), paris(2026, 11, 8, 8, 0))


# -- property: next_allowed agrees with a minute-by-minute walk over allows ------------

_DAYS = st.sampled_from(["Mon-Sat", "Mon-Sun", "Sun", "Mon,Wed,Fri", "Sat-Sun", "Fri"])
_MINUTES = st.integers(min_value=0, max_value=24 * 60 - 1)
_AROUND = st.sampled_from([
    dt.datetime(2026, 3, 27, tzinfo=UTC),  # spring change
    dt.datetime(2026, 10, 23, tzinfo=UTC),  # autumn change
    dt.datetime(2026, 12, 23, tzinfo=UTC),  # Christmas and year end
    dt.datetime(2026, 4, 1, tzinfo=UTC),  # Easter
])


@settings(max_examples=150, deadline=None)
@given(days=_DAYS, first=_MINUTES, length=st.integers(min_value=1, max_value=24 * 60),
       base=_AROUND, offset=st.integers(min_value=0, max_value=5 * 24 * 3600))
def test_next_allowed_is_the_first_allowed_minute(days: str, first: int, length: int,
                                                  base: dt.datetime, offset: int) -> None:
    last = min(first + length, 24 * 60 - 1)
    if last <= first:
        return
    window = MarketingWindow(parse_days(days), dt.time(*divmod(first, 60)),
                             dt.time(*divmod(last, 60)), ("57",))
    when = base + dt.timedelta(seconds=offset)
    got = window.next_allowed(when)
    assert window.allows(got)
    assert got.tzinfo is PARIS and got.second == 0 and got.microsecond == 0
    # the oracle: walk whole UTC minutes from `when` (bounded: at most 20 days)
    minute = when.replace(second=0, microsecond=0)
    if minute < when:
        minute += dt.timedelta(minutes=1)
    steps = 0
    while minute < got:
        assert not window.allows(minute), f"{minute} is allowed but {got} was returned"
        minute += dt.timedelta(minutes=1)
        steps += 1
        assert steps <= 20 * 24 * 60
    assert minute == got.astimezone(UTC)  # PEP 495: ambiguous times never equal across zones
