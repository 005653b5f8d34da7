"""Recipients' own hours (issue 14, item 2): every group goes inside the window on its
recipients' wall clock, never on their public holiday, never before the time asked for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.commands import main
from sftpd_agent.config import Settings
from sftpd_agent.errors import ExitCode
from sftpd_agent.pipeline.intake import take_in
from sftpd_agent.rules.plan import FOREIGN, Group, Plan, Timing, plan, plan_groups
from sftpd_agent.rules.window import MarketingWindow
from sftpd_agent.rules.zones import all_zones, zone_named

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC
WINDOW = MarketingWindow.parse("Mon-Sat", "08:00", "21:30")
TIMING = Timing(service_id="12345", timezone=PARIS, window=WINDOW,
                stale_after=dt.timedelta(days=10_000))
CODES = [z.code for z in all_zones()]
MINUTE = dt.timedelta(minutes=1)


def is_holiday(day: dt.date, subdivision: str | None) -> bool:
    return day in holidays.country_holidays("FR", subdiv=subdivision, years=day.year)


def allowed(instant: dt.datetime, code: str) -> bool:
    zone = zone_named(code)
    local = instant.astimezone(zone.tz)
    return (local.weekday() < 6 and not is_holiday(local.date(), zone.subdivision)
            and dt.time(8) <= local.time() < dt.time(21, 30))


def groups_for(
    when: dt.datetime, codes: list[str], rows_per_zone: int = 3
) -> tuple[Plan, tuple[Group, ...]]:
    name = f"SEND-12345-{when:%Y%m%d-%H%M}-promo.csv"
    base = plan(name, len(codes) * rows_per_zone, now=dt.datetime(2026, 1, 1, tzinfo=UTC),
                timing=TIMING)
    assert base.hold_reason is None
    return base, plan_groups(base, dict.fromkeys(codes, rows_per_zone), TIMING)


@settings(max_examples=300, deadline=None)
@given(when=st.datetimes(min_value=dt.datetime(2027, 1, 1), max_value=dt.datetime(2031, 12, 31)),
       codes=st.lists(st.sampled_from(CODES), min_size=1, max_size=6, unique=True))
def test_no_row_goes_outside_its_recipients_window_or_on_their_holiday(
    when: dt.datetime, codes: list[str]
) -> None:
    wall = when.replace(second=0, microsecond=0)
    base, groups = groups_for(wall, codes)
    assert base.asked_at is not None
    asked = base.asked_at.astimezone(UTC)
    assert sorted(c for g in groups for c in g.zones) == sorted(codes)
    assert sum(g.rows for g in groups) == 3 * len(codes)
    assert len({g.send_at for g in groups}) == len(groups)  # one file per distinct time
    names = [n for g in groups for n in g.names]
    assert len(set(names)) == len(names)
    for group in groups:
        instant = group.send_at.astimezone(UTC)
        assert instant >= asked
        for code in group.zones:
            assert allowed(instant, code), (wall, code, group)
            # the earliest: the minute before was not allowed, or was before the time asked
            assert instant - MINUTE < asked or not allowed(instant - MINUTE, code)
        local = dict(group.local)
        assert {c: local[c] for c in group.zones} == {
            c: instant.astimezone(zone_named(c).tz) for c in group.zones}
        # DATE-HOUR is Paris's wall clock at the instant
        paris = instant.astimezone(PARIS)
        assert all(f"-{paris:%Y%m%d-%H%M}-" in n for n in group.names)


def test_paris_daylight_saving_change_moves_overseas_groups_by_the_right_hour() -> None:
    # 2028-03-25 (Sat) 20:00 Paris CET = 15:00 Martinique; a week later CEST: 14:00.
    for day, martinique_hour in ((dt.datetime(2028, 3, 25, 20), 15),
                                 (dt.datetime(2028, 4, 1, 20), 14)):
        _, groups = groups_for(day, ["FR", "MQ"])
        assert len(groups) == 1  # both allowed at the same instant
        assert dict(groups[0].local)["MQ"].hour == martinique_hour
    # Reunion: Paris 20:00 CET is 23:00 there: Monday 08:00 Reunion (05:00 CEST) after the
    # change of the night of 2028-03-26.
    _, groups = groups_for(dt.datetime(2028, 3, 25, 20), ["FR", "RE"])
    by_zone = {g.zones: g for g in groups}
    assert by_zone[("FR",)].send_at == dt.datetime(2028, 3, 25, 20, tzinfo=PARIS)
    assert by_zone[("RE",)].send_at == dt.datetime(2028, 3, 27, 6, tzinfo=PARIS)
    assert by_zone[("RE",)].names == ("SEND-12345-20280327-0600-promo.csv",)


def test_each_department_keeps_its_own_abolition_day() -> None:
    # 2027-05-22 (Sat): Martinique's abolition day, not Guadeloupe's (27 May).
    _, groups = groups_for(dt.datetime(2027, 5, 22, 15), ["GP", "MQ"])
    times = {g.zones: g.send_at for g in groups}
    assert times[("GP",)] == dt.datetime(2027, 5, 22, 15, tzinfo=PARIS)
    assert times[("MQ",)] == dt.datetime(2027, 5, 24, 14, tzinfo=PARIS)  # Mon 08:00 local


def test_metropolitan_only_campaigns_are_one_group_with_todays_names() -> None:
    base, groups = groups_for(dt.datetime(2027, 6, 1, 9), ["FR"])
    assert len(groups) == 1 and groups[0].names == base.names
    assert groups[0].send_at == base.send_at


def test_without_recipient_local_window_every_number_goes_at_the_campaign_time() -> None:
    timing = Timing(service_id="12345", timezone=PARIS, window=WINDOW,
                    recipient_local_window=False, stale_after=dt.timedelta(days=10_000))
    base = plan("SEND-12345-20270601-0900-promo.csv", 9,
                now=dt.datetime(2026, 1, 1, tzinfo=UTC), timing=timing)
    groups = plan_groups(base, {"FR": 3, "MQ": 3, FOREIGN: 3}, timing)
    assert len(groups) == 1 and groups[0].rows == 9 and groups[0].names == base.names


def _campaign(path: Path) -> Path:
    path.write_text("a;+33612345678;Shop;Promo STOP au 36180\r\n"
                    "b;+596696123456;Shop;Promo STOP au 36180\r\n"
                    "c;+262692123456;Shop;Promo STOP au 36180\r\n"
                    "d;+14155550100;Shop;Promo STOP au 36180\r\n", encoding="utf-8")
    return path


def test_take_in_groups_and_the_foreign_policy(tmp_path: Path) -> None:
    path = _campaign(tmp_path / "SEND-12345-20270601-0900-promo.csv")
    now = dt.datetime(2027, 5, 1, tzinfo=UTC)
    sent = take_in(path, Settings(service_id="12345"), now=now)
    data = sent.as_dict()
    assert not data["held"] and data["foreign"] == 1 and data["foreign_dropped"] == 0
    # 09:00 Paris is 11:00 in Reunion (allowed), 03:00 in Martinique (08:00 there: 14:00)
    assert [(g["zones"], g["rows"]) for g in data["groups"]] == [
        (["FR", "RE", "foreign"], 3), (["MQ"], 1)]
    assert data["remote_names"] == ["SEND-12345-20270601-0900-promo.csv",
                                    "SEND-12345-20270601-1400-promo.csv"]
    assert data["groups"][0]["local"]["RE"] == "2027-06-01T11:00:00+04:00"
    assert data["groups"][1]["local"]["MQ"] == "2027-06-01T08:00:00-04:00"

    held = take_in(path, Settings(service_id="12345", campaign={"foreign": "hold"}), now=now)
    assert held.hold_reason is not None and "foreign = hold" in held.hold_reason

    dropped = take_in(path, Settings(service_id="12345", campaign={"foreign": "drop"}),
                      now=now)
    assert dropped.hold_reason is None and dropped.foreign_dropped == 1
    assert [g.zones for g in dropped.groups] == [("FR", "RE"), ("MQ",)]


def test_check_prints_each_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _campaign(tmp_path / "SEND-12345-20270601-0900-promo.csv")
    config = tmp_path / "agent.toml"
    config.write_text(f'service_id = "12345"\ntimezone = "Europe/Paris"\n[paths]\n'
                      f'root = "{tmp_path / "agent"}"\n', encoding="utf-8")
    assert main(["check", "--config", str(config), str(path)]) == ExitCode.OK
    text = capsys.readouterr().out
    assert ("FR+RE+foreign: 3 rows at 2027-06-01 09:00 Europe/Paris "
            "(local: RE 2027-06-01 11:00)") in text
    assert "MQ: 1 rows at 2027-06-01 14:00 Europe/Paris (local: MQ 2027-06-01 08:00)" in text
    assert "SEND-12345-20270601-1400-promo.csv" in text
    assert "foreign         1 (sent at the campaign's time" in text
