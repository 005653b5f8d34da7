"""Planning a campaign: its id, send time, upload time and provider names."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.rules.plan import (
    Timing,
    distinct_provider_names,
    plan,
    provider_names,
    resolve_local,
    submission_name,
)
from sftpd_agent.rules.window import MarketingWindow

PARIS = ZoneInfo("Europe/Paris")
WINDOW = MarketingWindow.parse("Mon-Sat", "08:00", "21:30")


def timing(**changes: object) -> Timing:
    base = {"service_id": "12345", "timezone": PARIS, "window": WINDOW}
    base.update(changes)
    return Timing(**base)  # type: ignore[arg-type]


# Monday 23 November 2026, 09:00:30 in Paris.
MONDAY = dt.datetime(2026, 11, 23, 9, 0, 30, tzinfo=PARIS)


def test_any_other_name_is_sent_now_at_the_next_whole_minute() -> None:
    p = plan("Promo Noël 2026!.csv", 10, now=MONDAY, timing=timing())
    assert p.campaign_id == "PromoNol2026"
    assert p.send_at == dt.datetime(2026, 11, 23, 9, 1, tzinfo=PARIS)
    assert p.names == ("SEND-12345-20261123-0901-PromoNol2026.csv",)
    assert p.upload_at == MONDAY and p.hold_reason is None


def test_provider_name_sets_the_time_and_upload_leads_it() -> None:
    p = plan("SEND-12345-20261124-1000-soldes.csv", 10, now=MONDAY, timing=timing())
    assert p.campaign_id == "soldes"
    assert p.send_at == dt.datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)
    assert p.upload_at == dt.datetime(2026, 11, 24, 9, 50, tzinfo=PARIS)
    assert p.names == ("SEND-12345-20261124-1000-soldes.csv",)


def test_a_time_past_by_at_most_stale_after_means_now() -> None:
    p = plan("SEND-12345-20261123-0801-late.csv", 1, now=MONDAY, timing=timing())
    assert p.hold_reason is None
    assert p.send_at == dt.datetime(2026, 11, 23, 9, 1, tzinfo=PARIS)
    assert p.names == ("SEND-12345-20261123-0901-late.csv",)  # the name says when it goes
    assert p.note == "the requested time 2026-11-23 08:01 Europe/Paris is 59 minutes past: sent now"


def test_a_time_further_past_is_held_as_stale() -> None:
    p = plan("SEND-12345-20261123-0800-late.csv", 1, now=MONDAY, timing=timing())
    assert p.hold_reason == ("stale: the requested time 2026-11-23 08:00 Europe/Paris is "
                             "1 hour past, more than stale_after_minutes = 60")
    assert p.names == ()
    old = plan("SEND-12345-20160728-1827-testpushsftp.csv", 1, now=MONDAY, timing=timing())
    assert old.hold_reason is not None and "2016-07-28 18:27" in old.hold_reason
    assert "3769 days 15 hours 33 minutes past" in old.hold_reason


def test_stale_after_is_the_setting() -> None:
    p = plan("SEND-12345-20261123-0800-late.csv", 1, now=MONDAY,
             timing=timing(stale_after=dt.timedelta(hours=2)))
    assert p.hold_reason is None and p.send_at == dt.datetime(2026, 11, 23, 9, 1, tzinfo=PARIS)
    zero = plan("SEND-12345-20261123-0900-now.csv", 1, now=MONDAY,
                timing=timing(stale_after=dt.timedelta(0)))
    assert zero.hold_reason is not None and "less than a minute past" in zero.hold_reason


def test_outside_the_window_moves_to_the_next_allowed_minute() -> None:
    p = plan("SEND-12345-20261128-2200-soir.csv", 1, now=MONDAY, timing=timing())  # Saturday
    assert p.send_at == dt.datetime(2026, 11, 30, 8, 0, tzinfo=PARIS)  # Monday
    assert p.names == ("SEND-12345-20261130-0800-soir.csv",)
    assert p.note is not None and "marketing window" in p.note


def test_christmas_is_skipped() -> None:
    p = plan("SEND-12345-20261225-1000-noel.csv", 1, now=MONDAY, timing=timing())
    assert p.send_at == dt.datetime(2026, 12, 26, 8, 0, tzinfo=PARIS)


def test_hold_outside_the_window() -> None:
    p = plan("SEND-12345-20261129-1000-dim.csv", 1, now=MONDAY,
             timing=timing(hold_outside_window=True))
    assert p.hold_reason is not None and "outside the marketing window" in p.hold_reason


def test_not_marketing_ignores_the_window() -> None:
    p = plan("SEND-12345-20261129-1000-dim.csv", 1, now=MONDAY, timing=timing(window=None))
    assert p.send_at == dt.datetime(2026, 11, 29, 10, 0, tzinfo=PARIS)


def test_wrong_service_id_is_held() -> None:
    p = plan("SEND-99999-20261124-1000-soldes.csv", 1, now=MONDAY, timing=timing())
    assert p.hold_reason is not None and "99999" in p.hold_reason
    assert p.names == ()


def test_a_name_without_letters_is_held() -> None:
    p = plan("___.csv", 1, now=MONDAY, timing=timing())
    assert p.hold_reason is not None and p.names == ()


def test_large_campaigns_are_split_into_parts() -> None:
    p = plan("SEND-12345-20261124-1000-abcdefghijklmnopqrst.csv", 2_500_001, now=MONDAY,
             timing=timing())
    assert p.names == (
        "SEND-12345-20261124-1000-abcdefghijklmnopqrP1.csv",
        "SEND-12345-20261124-1000-abcdefghijklmnopqrP2.csv",
        "SEND-12345-20261124-1000-abcdefghijklmnopqrP3.csv",
    )


# -- names that start like the provider's (issue 17) -----------------------------------

# Friday 4 December 2026, 18:00 in Paris: a month before the promotions below.
DECEMBER = dt.datetime(2026, 12, 4, 18, 0, tzinfo=PARIS)
JAN_5_9H = dt.datetime(2027, 1, 5, 9, 0, tzinfo=PARIS)  # a Tuesday, inside the window


@pytest.mark.parametrize(
    ("filename", "campaign_id", "name", "changed"),
    [
        ("SEND-12345-20270105-0900-promo (1).csv", "promo1",
         "SEND-12345-20270105-0900-promo1.csv", "made safe as 'promo1'"),
        ("SEND-12345-20270105-0900-averyveryverylongcampaignidentifier.csv",
         "averyveryverylongcam", "SEND-12345-20270105-0900-averyveryverylongcam.csv",
         "longer than 20 characters: cut to 'averyveryverylongcam'"),
        ("SEND-12345-20270105-0900-with_underscore.csv", "withunderscore",
         "SEND-12345-20270105-0900-withunderscore.csv", "made safe as 'withunderscore'"),
        ("send-12345-20270105-0900-lower.csv", "lower",
         "SEND-12345-20270105-0900-lower.csv", None),
        ("Send-12345-20270105-0900-promo-2.CSV", "promo2",
         "SEND-12345-20270105-0900-promo2.csv", "made safe as 'promo2'"),
    ],
)
def test_a_provider_like_name_keeps_its_time_and_gets_a_safe_id(
    filename: str, campaign_id: str, name: str, changed: str | None
) -> None:
    p = plan(filename, 10, now=DECEMBER, timing=timing())
    assert p.hold_reason is None and p.provider_like
    assert p.campaign_id == campaign_id
    assert p.requested_at == JAN_5_9H and p.send_at == JAN_5_9H
    assert p.upload_at == JAN_5_9H - dt.timedelta(minutes=10)
    assert p.names == (name,)
    if changed is None:
        assert p.name_notes == ()
    else:
        assert any(changed in note for note in p.name_notes), p.name_notes


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("SEND-12345-20270105-0900.csv", "no campaign id after the time"),
        ("SEND-12345-20270105-0900-.csv", "no campaign id after the time"),
        ("SEND-12345-20270105-0900-___.csv", "no campaign id after the time"),
        ("SEND-12345-20261232-0900-baddate.csv", "the date 20261232 is not a date"),
        ("SEND-12345-20270105-2500-badhour.csv", "the hour 2500 is not a time"),
        ("SEND-12345-2027015-0900-x.csv", "the date 2027015 is not a date"),
        ("SEND-12345-20270105-900-x.csv", "the hour 900 is not a time"),
        ("SEND-12345-20270105-0900promo.csv", "the hour 0900promo is not a time"),
        ("SEND-12345-20270105.csv", "no time after the date"),
        ("SEND-12345.csv", "no date after the service id"),
        ("SEND-.csv", "no service id after SEND-"),
        ("SEND-1234-20270105-0900-x.csv", "the service id '1234' is not 5 letters or digits"),
        ("SEND-99999-20270105-0900-x.csv", "names service 99999, but this agent sends for "
                                           "service_id 12345"),
        ("SEND-12345-2027\u0660105-0900-x.csv", "is not a date"),  # an Arabic-Indic zero
        ("SEND_12345_20270105_0900_promo.csv", "parts are not separated by '-'"),
        ("send 12345 20270105 0900 promo.csv", "parts are not separated by '-'"),
        ("SEND-12345-20261104-0900-old.csv", "stale: the requested time 2026-11-04 09:00 "
                                             "Europe/Paris is 30 days 9 hours past"),
    ],
)
def test_a_provider_like_name_that_cannot_be_read_is_held(filename: str, reason: str) -> None:
    p = plan(filename, 10, now=DECEMBER, timing=timing())
    assert p.hold_reason is not None and reason in p.hold_reason, p.hold_reason
    assert p.names == ()
    assert p.provider_like


@pytest.mark.parametrize(
    ("filename", "campaign_id"),
    [("promo.csv", "promo"), ("SENDING list.csv", "SENDINGlist"),
     ("send_now.csv", "sendnow"), ("xSEND-12345-20270105-0900-promo.csv",
                                   "xSEND123452027010509")],
)
def test_only_other_names_are_sent_now(filename: str, campaign_id: str) -> None:
    p = plan(filename, 10, now=DECEMBER, timing=timing(window=None))
    assert p.hold_reason is None and not p.provider_like
    assert p.campaign_id == campaign_id and p.requested_at is None
    assert p.send_at == DECEMBER


def test_the_first_wrong_part_does_not_hide_the_others() -> None:
    p = plan("SEND-12345-20261232-2500-x.csv", 1, now=DECEMBER, timing=timing())
    assert p.hold_reason is not None
    assert "the date 20261232 is not a date" in p.hold_reason
    assert "the hour 2500 is not a time" in p.hold_reason


# -- daylight-saving changes -----------------------------------------------------------

UTC = dt.UTC


def utc(when: dt.datetime) -> dt.datetime:
    """In UTC: an aware time in the repeated hour never equals one of another zone (PEP 495)."""
    return when.astimezone(UTC)


def test_a_time_in_the_spring_gap_moves_to_the_first_minute_after_it() -> None:
    p = plan("SEND-12345-20270328-0230-x.csv", 1, now=DECEMBER, timing=timing(window=None))
    assert p.hold_reason is None
    assert p.send_at == dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert p.send_at.astimezone(PARIS).strftime("%H:%M %z") == "03:00 +0200"
    assert p.names == ("SEND-12345-20270328-0300-x.csv",)
    # Ten real minutes earlier: 01:50 CET. Wall-clock arithmetic would say 02:50, a time
    # that does not exist and that zoneinfo reads as 01:50 UTC, after the send time.
    assert p.upload_at == dt.datetime(2027, 3, 28, 0, 50, tzinfo=UTC)
    assert p.note == ("2027-03-28 02:30 does not exist in Europe/Paris (the clocks go forward "
                      "that night): moved to 03:00, the first minute after the gap")


def test_a_time_in_the_autumn_overlap_is_its_first_occurrence() -> None:
    p = plan("SEND-12345-20271031-0230-x.csv", 1, now=DECEMBER, timing=timing(window=None))
    assert p.hold_reason is None
    assert utc(p.send_at) == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET
    assert utc(p.upload_at) == dt.datetime(2027, 10, 31, 0, 20, tzinfo=UTC)
    assert p.names == ("SEND-12345-20271031-0230-x.csv",)
    assert p.note is not None and "happens twice" in p.note and "first occurrence" in p.note
    assert "UTC+02:00" in p.note


def test_in_the_overlap_past_and_future_are_told_apart_by_the_instant() -> None:
    # 02:40 the second time (CET, 01:40 UTC); 02:50 was asked: its first occurrence (00:50
    # UTC) is 50 minutes past, although 02:50 is later than 02:40 on the wall clock.
    now = dt.datetime(2027, 10, 31, 1, 40, tzinfo=UTC)
    p = plan("SEND-12345-20271031-0250-x.csv", 1, now=now, timing=timing(window=None))
    assert utc(p.send_at) == now and p.hold_reason is None
    assert p.note is not None and "50 minutes past: sent now" in p.note
    held = plan("SEND-12345-20271031-0250-x.csv", 1, now=now,
                timing=timing(window=None, stale_after=dt.timedelta(minutes=30)))
    assert held.hold_reason is not None and "stale" in held.hold_reason


def test_now_just_before_the_gap_rounds_up_to_an_existing_minute() -> None:
    now = dt.datetime(2027, 3, 28, 0, 59, 30, tzinfo=UTC)  # 01:59:30 CET
    p = plan("promo.csv", 1, now=now, timing=timing(window=None))
    assert p.send_at == dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert p.names == ("SEND-12345-20270328-0300-promo.csv",)


@pytest.mark.parametrize(
    ("wall", "expected", "note"),
    [
        (dt.datetime(2027, 1, 5, 9, 0), dt.datetime(2027, 1, 5, 8, 0, tzinfo=UTC), None),
        (dt.datetime(2027, 3, 28, 2, 0), dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC), "gap"),
        (dt.datetime(2027, 3, 28, 2, 59), dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC), "gap"),
        (dt.datetime(2027, 3, 28, 3, 0), dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC), None),
        (dt.datetime(2027, 3, 28, 1, 59), dt.datetime(2027, 3, 28, 0, 59, tzinfo=UTC), None),
        (dt.datetime(2027, 10, 31, 2, 0), dt.datetime(2027, 10, 31, 0, 0, tzinfo=UTC), "twice"),
        (dt.datetime(2027, 10, 31, 2, 59), dt.datetime(2027, 10, 31, 0, 59, tzinfo=UTC),
         "twice"),
        (dt.datetime(2027, 10, 31, 3, 0), dt.datetime(2027, 10, 31, 2, 0, tzinfo=UTC), None),
        (dt.datetime(2027, 10, 31, 1, 59), dt.datetime(2027, 10, 30, 23, 59, tzinfo=UTC), None),
    ],
)
def test_resolve_local(wall: dt.datetime, expected: dt.datetime, note: str | None) -> None:
    instant, said = resolve_local(wall, PARIS)
    assert utc(instant) == expected
    assert instant.tzinfo is PARIS
    assert (said is None) == (note is None)
    if note is not None:
        assert said is not None and note in said


def test_resolve_local_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        resolve_local(JAN_5_9H, PARIS)


def test_the_window_never_moves_a_time_earlier() -> None:
    # A Sunday, then Easter Monday: the window opens on Tuesday.
    p = plan("SEND-12345-20270328-0230-x.csv", 1, now=DECEMBER, timing=timing())
    assert p.send_at == dt.datetime(2027, 3, 30, 8, 0, tzinfo=PARIS)
    assert p.names == ("SEND-12345-20270330-0800-x.csv",)
    assert p.note is not None and "does not exist" in p.note and "marketing window" in p.note


# -- two files, one id and time --------------------------------------------------------


def test_distinct_names_when_the_first_is_free() -> None:
    names = distinct_provider_names("promo", JAN_5_9H, 10, timing(), lambda name: False)
    assert names == ("SEND-12345-20270105-0900-promo.csv",)


def test_the_second_campaign_of_a_name_and_time_gets_a_suffix() -> None:
    used = {"SEND-12345-20270105-0900-promo.csv"}
    names = distinct_provider_names("promo", JAN_5_9H, 10, timing(), used.__contains__)
    assert names == ("SEND-12345-20270105-0900-promo2.csv",)
    used.add(names[0])
    third = distinct_provider_names("promo", JAN_5_9H, 10, timing(), used.__contains__)
    assert third == ("SEND-12345-20270105-0900-promo3.csv",)
    # Another time is another name: no suffix.
    other = distinct_provider_names("promo", JAN_5_9H + dt.timedelta(hours=1), 10, timing(),
                                    used.__contains__)
    assert other == ("SEND-12345-20270105-1000-promo.csv",)


def test_a_suffix_fits_in_twenty_characters_with_parts() -> None:
    long_id = "abcdefghijklmnopqrst"
    small = timing(max_rows_per_file=10)
    first = distinct_provider_names(long_id, JAN_5_9H, 25, small, lambda name: False)
    assert first == provider_names(long_id, JAN_5_9H, 25, small)
    used = set(first)
    second = distinct_provider_names(long_id, JAN_5_9H, 25, small, used.__contains__)
    assert [name.split("-")[-1] for name in second] == [
        "abcdefghijklmnopq2P1.csv", "abcdefghijklmnopq2P2.csv", "abcdefghijklmnopq2P3.csv"]
    assert not used & set(second)
    # Any one part taken is enough to move the whole campaign.
    only_p2 = {first[1]}
    moved = distinct_provider_names(long_id, JAN_5_9H, 25, small, only_p2.__contains__)
    assert moved == second


def test_no_free_suffix_is_an_error() -> None:
    with pytest.raises(ValueError, match="no free campaign id"):
        distinct_provider_names("promo", JAN_5_9H, 1, timing(), lambda name: True)


# -- submit ----------------------------------------------------------------------------


def submit(source: str, *, campaign: str | None = None, at: dt.datetime | None = None,
           now: dt.datetime = DECEMBER) -> tuple[str, tuple[str, ...]]:
    return submission_name(source, campaign=campaign, at=at, now=now, timing=timing())


def test_submit_names_a_file_for_now_or_for_at() -> None:
    assert submit("promo (1).csv", now=DECEMBER + dt.timedelta(seconds=5)) == (
        "SEND-12345-20261204-1801-promo1.csv", ())
    assert submit("promo.csv", at=dt.datetime(2027, 1, 5, 9, 0)) == (
        "SEND-12345-20270105-0900-promo.csv", ())
    name, notes = submit("x.csv", campaign="black friday!", at=dt.datetime(2027, 1, 5, 9, 0))
    assert name == "SEND-12345-20270105-0900-blackfriday.csv"
    assert notes and "made safe as 'blackfriday'" in notes[0]


def test_submit_follows_the_daylight_saving_rules() -> None:
    name, notes = submit("x.csv", at=dt.datetime(2027, 3, 28, 2, 30))
    assert name == "SEND-12345-20270328-0300-x.csv"
    assert any("moved to 03:00" in note for note in notes)
    name, notes = submit("x.csv", at=dt.datetime(2027, 10, 31, 2, 30))
    assert name == "SEND-12345-20271031-0230-x.csv"
    assert any("first occurrence" in note for note in notes)


def test_submit_reads_a_provider_like_source_name() -> None:
    name, notes = submit("SEND-12345-20270105-0900-promo (1).csv")
    assert name == "SEND-12345-20270105-0900-promo1.csv"  # its time, not now
    assert notes
    with pytest.raises(ValueError, match="the date 20261232 is not a date"):
        submit("SEND-12345-20261232-0900-baddate.csv")
    name, _ = submit("SEND-12345-20261232-0900-baddate.csv", campaign="fixed",
                     at=dt.datetime(2027, 1, 5, 9, 0))
    assert name == "SEND-12345-20270105-0900-fixed.csv"


def test_submit_refuses_a_stale_time_and_notes_a_recent_one() -> None:
    with pytest.raises(ValueError, match="stale: the requested time 2026-11-04 09:00"):
        submit("x.csv", at=dt.datetime(2026, 11, 4, 9, 0))
    name, notes = submit("x.csv", at=dt.datetime(2026, 12, 4, 17, 30))
    assert name == "SEND-12345-20261204-1730-x.csv"
    assert notes == ("the time 2026-12-04 17:30 Europe/Paris is 30 minutes past: "
                     "the agent sends it now",)
    with pytest.raises(ValueError, match="no letter or digit"):
        submit("x.csv", campaign="___")
