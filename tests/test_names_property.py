"""Property tests: a name carrying a readable date and time is sent at that time, or held.

The oracle is the rule in one sentence, computed here without the code under test: a
requested local time means *the earliest instant at which the local clock shows at least
that time* (which is the time itself, the first minute after a spring gap, or the first
occurrence of an autumn hour). From there: in the future, that instant; past by at most
``stale_after``, the next whole minute; older, held. The marketing window may only move it
later. Names are generated valid, as near-misses of the grammar, and at random.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.naming import distinct_part_ids, parse_name
from sftpd_agent.rules.plan import Plan, Timing, plan
from sftpd_agent.rules.window import MarketingWindow

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
STALE = dt.timedelta(minutes=60)
LEAD = dt.timedelta(minutes=10)
NO_WINDOW = Timing("12345", PARIS, None, stale_after=STALE, upload_lead=LEAD)
WINDOW = MarketingWindow.parse("Mon-Sat", "08:00", "21:30")
WITH_WINDOW = Timing("12345", PARIS, WINDOW, stale_after=STALE, upload_lead=LEAD)
SEND_DASH = re.compile(r"send-", re.IGNORECASE)
WRITTEN = re.compile(r"send-12345-([0-9]{8})-([0-9]{4})-", re.IGNORECASE)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# The six daylight-saving nights of 2027-2029 in Paris (last Sundays of March and October).
SPRING = [dt.date(2027, 3, 28), dt.date(2028, 3, 26), dt.date(2029, 3, 25)]
AUTUMN = [dt.date(2027, 10, 31), dt.date(2028, 10, 29), dt.date(2029, 10, 28)]


def earliest_showing(wall: dt.datetime) -> dt.datetime:
    """The first UTC minute at which the Paris clock shows ``wall`` or later."""
    guess = wall.replace(tzinfo=UTC) - dt.timedelta(hours=3)  # Paris is UTC+1 or +2
    for step in range(6 * 60):
        instant = guess + step * MINUTE
        if instant.astimezone(PARIS).replace(tzinfo=None) >= wall:
            return instant
    raise AssertionError(f"no instant shows {wall}")


def ceil_minute(instant: dt.datetime) -> dt.datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + MINUTE


def wall_in_name(p: Plan) -> dt.datetime:
    """The local time every provider file name of the plan carries (all parts agree)."""
    parsed = [parse_name(name) for name in p.names]
    assert all(name is not None for name in parsed), p.names
    times = {name.when for name in parsed if name is not None}
    assert len(times) == 1, p.names
    return times.pop()


def assert_follows_the_rule(p: Plan, wall: dt.datetime, now: dt.datetime) -> None:
    """Without a window: the plan for a name asking for ``wall`` is exactly what the rule says."""
    wanted = earliest_showing(wall)
    send_at = p.send_at.astimezone(UTC)
    if wanted >= ceil_minute(now):
        assert p.hold_reason is None, p.hold_reason
        assert send_at == wanted
    elif now - wanted <= STALE:
        assert p.hold_reason is None, p.hold_reason
        assert send_at == ceil_minute(now)
    else:
        assert p.hold_reason is not None and p.hold_reason.startswith("stale: ")
        assert p.names == ()
        return
    assert wall_in_name(p) == p.send_at.astimezone(PARIS).replace(tzinfo=None)
    assert p.upload_at.astimezone(UTC) == max(now, send_at - LEAD)
    assert p.send_at.astimezone(UTC) >= now


def name_for(wall: dt.datetime, campaign: str, prefix: str = "SEND") -> str:
    return f"{prefix}-12345-{wall:%Y%m%d-%H%M}-{campaign}.csv"


walls = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2031, 12, 31),
                     ).map(lambda w: w.replace(second=0, microsecond=0))
nows = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2031, 12, 31),
                    timezones=st.just(UTC))
# Campaign ids as people type them: at least one letter or digit, anything around it.
ids = st.tuples(st.text(min_size=0, max_size=30), st.text(ALNUM, min_size=1, max_size=30),
                st.text(min_size=0, max_size=10)).map(
                    lambda t: (t[0] + t[1] + t[2]).replace("/", "").replace("\x00", ""))
prefixes = st.sampled_from(["SEND", "send", "Send", "sEnD"])


def near(wall: dt.datetime) -> st.SearchStrategy[dt.datetime]:
    """A ``now`` within a few hours of ``wall``: past, future and the stale border."""
    return st.integers(min_value=-5 * 60, max_value=5 * 60).map(
        lambda m: earliest_showing(wall) + m * MINUTE
    ).flatmap(lambda base: st.integers(0, 59).map(lambda s: base + dt.timedelta(seconds=s)))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), wall=walls, campaign=ids, prefix=prefixes)
@example(data=None, wall=dt.datetime(2027, 3, 28, 2, 30), campaign="x", prefix="SEND")
def test_a_valid_name_is_sent_at_its_time_or_held(
    data: st.DataObject | None, wall: dt.datetime, campaign: str, prefix: str
) -> None:
    if data is None:
        now = dt.datetime(2027, 3, 27, 12, 0, tzinfo=UTC)
    else:
        now = data.draw(st.one_of(near(wall), nows), label="now")
    p = plan(name_for(wall, campaign, prefix), 10, now=now, timing=NO_WINDOW)
    assert p.provider_like
    assert_follows_the_rule(p, wall, now)


@settings(max_examples=300, deadline=None)
@given(wall=walls, now=nows, campaign=ids)
def test_the_window_never_moves_a_campaign_earlier(
    wall: dt.datetime, now: dt.datetime, campaign: str
) -> None:
    p = plan(name_for(wall, campaign), 10, now=now, timing=WITH_WINDOW)
    wanted = earliest_showing(wall)
    if p.hold_reason is not None:
        assert p.hold_reason.startswith("stale: ") and now - wanted > STALE
        return
    send_at = p.send_at.astimezone(UTC)
    assert send_at >= max(wanted, now)
    assert WINDOW.allows(send_at)
    assert wall_in_name(p) == p.send_at.astimezone(PARIS).replace(tzinfo=None)


def mutations() -> st.SearchStrategy[tuple[str, str, str, str, str]]:
    """(prefix, service, date, hour, id) with each part sometimes broken."""
    digits = st.text("0123456789", min_size=0, max_size=10)
    junk = st.text(min_size=0, max_size=8).map(lambda t: t.replace("/", "").replace("\x00", ""))
    return st.tuples(
        prefixes,
        st.one_of(st.just("12345"), st.just("99999"), st.text(ALNUM, max_size=7), junk),
        st.one_of(walls.map(lambda w: f"{w:%Y%m%d}"), digits, junk),
        st.one_of(walls.map(lambda w: f"{w:%H%M}"), digits, junk),
        st.one_of(ids, junk, st.just("")),
    )


@settings(max_examples=600, deadline=None)
@given(parts=mutations(), now=nows,
       joiner=st.sampled_from(["-", "-", "-", "_", " ", "--", ""]))
def test_a_near_miss_is_never_sent_at_a_time_it_did_not_ask_for(
    parts: tuple[str, str, str, str, str], now: dt.datetime, joiner: str
) -> None:
    prefix, service, date, hour, campaign = parts
    filename = f"{prefix}-{service}{joiner}{date}{joiner}{hour}{joiner}{campaign}.csv"
    assume("/" not in filename)
    p = plan(filename, 10, now=now, timing=NO_WINDOW)
    assert p.provider_like  # it starts like the provider's: never "send now"
    if p.hold_reason is not None:
        assert p.names == ()
        return
    # Taken: then it was written exactly right, and the time in it is the time it gets.
    written = WRITTEN.match(filename)
    assert written is not None, filename
    wall = dt.datetime.strptime(written[1] + written[2], "%Y%m%d%H%M")
    assert p.requested_at is not None
    assert_follows_the_rule(p, wall, now)
    assert re.fullmatch(r"[A-Za-z0-9]{1,20}", p.campaign_id)


@settings(max_examples=600, deadline=None)
@given(stem=st.text(max_size=60), now=nows)
@example(stem="SEND-12345-20270105-0900-promo (1)", now=dt.datetime(2026, 12, 4, tzinfo=UTC))
@example(stem="send-12345-20261232-0900-x", now=dt.datetime(2026, 12, 4, tzinfo=UTC))
def test_any_name_is_read_without_error_and_only_timeless_names_go_now(
    stem: str, now: dt.datetime
) -> None:
    filename = stem.replace("/", "").replace("\x00", "") + ".csv"
    p = plan(filename, 10, now=now, timing=NO_WINDOW)
    if SEND_DASH.match(filename):
        assert p.provider_like
        assert p.hold_reason is not None or p.requested_at is not None
    if p.requested_at is None and p.hold_reason is None:
        assert not SEND_DASH.match(filename)
        assert p.send_at.astimezone(UTC) == ceil_minute(now)
    if p.hold_reason is None:
        assert re.fullmatch(r"[A-Za-z0-9]{1,20}", p.campaign_id)
        assert len(p.names) == 1 and p.names[0].endswith(f"-{p.campaign_id}.csv")


@pytest.mark.parametrize("night", SPRING + AUTUMN, ids=str)
def test_every_minute_of_the_daylight_saving_nights(night: dt.date) -> None:
    now = dt.datetime.combine(night - dt.timedelta(days=2), dt.time(12), tzinfo=UTC)
    moved = twice = 0
    for minute in range(0, 5 * 60):  # 00:00 to 04:59, local
        wall = dt.datetime.combine(night, dt.time()) + minute * MINUTE
        p = plan(name_for(wall, "dst"), 10, now=now, timing=NO_WINDOW)
        assert_follows_the_rule(p, wall, now)
        local = p.send_at.astimezone(PARIS).replace(tzinfo=None)
        if local != wall:
            moved += 1
            assert night in SPRING and local == dt.datetime.combine(night, dt.time(3))
            assert p.note is not None and "moved to 03:00" in p.note
        elif p.note is not None:
            twice += 1
            assert night in AUTUMN and "first occurrence" in p.note
            assert p.send_at.astimezone(PARIS).fold == 0
            assert p.send_at.utcoffset() == dt.timedelta(hours=2)  # still summer time
        # The upload is always ten real minutes before the send time.
        assert p.send_at.astimezone(UTC) - p.upload_at.astimezone(UTC) == LEAD
    assert (moved, twice) == ((60, 0) if night in SPRING else (0, 60))


@settings(max_examples=300, deadline=None)
@given(campaign=st.text(ALNUM, min_size=1, max_size=20), parts=st.integers(1, 120),
       taken_count=st.integers(0, 30))
def test_distinct_part_ids_fit_and_avoid_what_is_taken(
    campaign: str, parts: int, taken_count: int
) -> None:
    asked: list[list[str]] = []

    def taken(candidate: list[str]) -> bool:
        asked.append(candidate)
        return len(asked) <= taken_count  # the first taken_count candidates are in use

    ids = distinct_part_ids(campaign, parts, taken)
    assert ids == asked[-1] and len(asked) == taken_count + 1
    assert len(ids) == parts == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,20}", part) for part in ids)
    firsts = [candidate[0] for candidate in asked]
    assert len(set(firsts)) == len(firsts)  # every retry is a new name
