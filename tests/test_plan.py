"""Planning a campaign: its id, send time, upload time and provider names."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sftpd_agent.plan import Timing, plan
from sftpd_agent.window import MarketingWindow

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


def test_a_past_time_means_now() -> None:
    p = plan("SEND-12345-20160728-1827-testpushsftp.csv", 1, now=MONDAY, timing=timing())
    assert p.send_at == dt.datetime(2026, 11, 23, 9, 1, tzinfo=PARIS)
    assert p.note == "the requested time is past"


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
