"""Issue 17 end to end: names that carry a time badly, through ``check`` and the real daemon.

Every row of the issue's table is held with its reason, or scheduled at the time it asks
for (the first minute after a spring gap) and uploaded no earlier than its lead time, under
a provider name that carries that time. The dates are taken relative to today, so that a
"future" promotion stays in the future whatever day the suite runs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.commands import main
from sftpd_agent.errors import ExitCode
from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC
LEAD = dt.timedelta(minutes=10)


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=17, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


def next_spring_gap(after: dt.datetime) -> dt.date:
    """The next last Sunday of March (02:00-03:00 does not exist that night in Paris)."""
    for year in range(after.year, after.year + 2):
        day = dt.date(year, 3, 31)
        day -= dt.timedelta(days=(day.weekday() + 1) % 7)
        if dt.datetime.combine(day, dt.time(2), tzinfo=PARIS) > after + dt.timedelta(days=1):
            return day
    raise AssertionError("no spring gap within two years")  # pragma: no cover


@dataclass(frozen=True)
class Row:
    name: str
    held: str | None = None               # a part of the reason, when it is held
    campaign_id: str | None = None        # when it is scheduled
    send_at: dt.datetime | None = None    # aware, when it is scheduled
    note: str | None = None               # said about the name or the time

    @property
    def remote_name(self) -> str:
        assert self.send_at is not None and self.campaign_id is not None
        return f"SEND-12345-{self.send_at:%Y%m%d-%H%M}-{self.campaign_id}.csv"


def table(now: dt.datetime) -> list[Row]:
    """The issue's table, with its dates moved to around ``now``."""
    future = (now + dt.timedelta(days=21)).date()
    past = (now - dt.timedelta(days=30)).date()
    gap = next_spring_gap(now)
    at_nine = dt.datetime.combine(future, dt.time(9), tzinfo=PARIS)
    f = f"{future:%Y%m%d}"
    return [
        Row(f"SEND-12345-{f}-0900-promo (1).csv", campaign_id="promo1", send_at=at_nine,
            note="made safe as 'promo1'"),
        Row(f"SEND-12345-{f}-0900-averyveryverylongcampaignidentifier.csv",
            campaign_id="averyveryverylongcam", send_at=at_nine, note="cut to"),
        Row(f"SEND-12345-{f}-0900-with_underscore.csv", campaign_id="withunderscore",
            send_at=at_nine, note="made safe as 'withunderscore'"),
        Row(f"send-12345-{f}-0900-lower.csv", campaign_id="lower", send_at=at_nine),
        Row(f"SEND-12345-{f}-0900.csv", held="no campaign id after the time"),
        Row(f"SEND-12345-{future:%Y}1232-0900-baddate.csv",
            held=f"the date {future:%Y}1232 is not a date"),
        Row(f"SEND-12345-{f}-2500-badhour.csv", held="the hour 2500 is not a time"),
        Row(f"SEND-12345-{f[:7]}-0900-x.csv", held=f"the date {f[:7]} is not a date"),
        Row(f"SEND-12345-{past:%Y%m%d}-0900-old.csv",
            held=f"stale: the requested time {past:%Y-%m-%d} 09:00 Europe/Paris is "),
        Row(f"SEND-12345-{gap:%Y%m%d}-0230-gap.csv", campaign_id="gap",
            send_at=dt.datetime.combine(gap, dt.time(3), tzinfo=PARIS),
            note="moved to 03:00, the first minute after the gap"),
    ]


def write_rows(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(rows(3), encoding="utf-8")
    return path


# -- check -----------------------------------------------------------------------------


def test_check_reads_every_row_of_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'service_id = "12345"\ntimezone = "Europe/Paris"\n[paths]\n'
                      f'root = "{tmp_path / "agent"}"\n[campaign]\nmarketing = false\n',
                      encoding="utf-8")
    now = dt.datetime.now(PARIS)
    expected = table(now)
    files = [str(write_rows(tmp_path, row.name)) for row in expected]
    assert main(["check", "--json", "--config", str(config), *files]) == ExitCode.NOT_OK
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(o["file"]).name for o in out] == [row.name for row in expected]
    for row, result in zip(expected, out, strict=True):
        assert result["name_read_as"] == "provider", row.name
        if row.held is not None:
            assert result["held"] and row.held in result["hold_reason"], (row, result)
            assert result["remote_names"] == []
            continue
        assert not result["held"], (row, result)
        assert row.send_at is not None
        assert dt.datetime.fromisoformat(result["send_at"]) == row.send_at
        assert dt.datetime.fromisoformat(result["requested_at"]) == row.send_at
        assert result["campaign_id"] == row.campaign_id
        assert result["remote_names"] == [row.remote_name]
        said = " ".join([*result["name_notes"], result["send_at_note"] or ""])
        if row.note is not None:
            assert row.note in said, (row, result)
        else:
            assert said.strip() == ""
    # The human form says how each name was read.
    assert main(["check", "--config", str(config), files[0], files[-1]]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "campaign        promo1" in text
    assert f"requested       {expected[0].send_at:%Y-%m-%d} 09:00 Europe/Paris" in text
    assert "changed         campaign id 'promo (1)' made safe as 'promo1'" in text
    assert "02:30 as written, read as" in text and "03:00 Europe/Paris" in text


# -- the running daemon ----------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer) -> Iterator[Daemon]:
    offset = tmp_path / "clock-offset"
    agent = Daemon(write_config(tmp_path, openssh), tmp_path / "agent", openssh,
                   env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    yield agent
    agent.kill()


def by_file(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {c["file"]: c for c in daemon.status()["campaigns"]}


def published_names(daemon: Daemon) -> list[str]:
    names = [entry.name for entry in daemon.journal()]
    assert len(names) == len(set(names)), f"published twice: {names}"
    return names


def test_the_daemon_holds_or_schedules_every_row_and_uploads_none_early(daemon: Daemon) -> None:
    expected = table(dt.datetime.now(PARIS))
    daemon.start()
    for row in expected:
        daemon.drop(row.name, rows(3))
    settled = ("held", "scheduled")
    campaigns = wait_until(
        lambda: (found if len(found := by_file(daemon)) == len(expected)
                 and all(c["state"] in settled for c in found.values()) else None),
        what="every file held or scheduled")
    failed = daemon.root / "failed"
    for row in expected:
        campaign = campaigns[row.name]
        if row.held is not None:
            assert campaign["state"] == "held", (row, campaign)
            assert row.held in campaign["reason"], (row, campaign)
            assert row.held in (failed / f"{row.name}.reason.txt").read_text(encoding="utf-8")
            continue
        assert campaign["state"] == "scheduled", (row, campaign)
        assert campaign["campaign_id"] == row.campaign_id
        assert dt.datetime.fromisoformat(campaign["send_at"]) == row.send_at
    # Several polls (0.3 s) go by: none of them is uploaded before its time.
    polls = len(daemon.logged("remote_connected"))
    time.sleep(1.5)
    assert polls >= 1
    assert published_names(daemon) == []
    assert not list(daemon.server.send_dir.iterdir())
    assert len(daemon.events("campaign.held")) == sum(row.held is not None for row in expected)


@pytest.mark.parametrize("server_fixture", ["openssh", "simulator_thread"])
def test_a_scheduled_name_goes_at_its_time_under_a_name_that_says_it(
    tmp_path: Path, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server: SftpServer = request.getfixturevalue(server_fixture)
    offset = tmp_path / "clock-offset"
    daemon = Daemon(write_config(tmp_path, server), tmp_path / "agent", server,
                    env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    chosen = [row for row in table(dt.datetime.now(PARIS))
              if row.campaign_id in ("promo1", "gap")]
    chosen.sort(key=lambda row: row.send_at.astimezone(UTC) if row.send_at else 0)

    def move_clock_to(moment: dt.datetime) -> None:
        seconds = (moment - dt.datetime.now(UTC)).total_seconds()
        offset.write_text(f"{seconds:.3f}", encoding="utf-8")

    try:
        daemon.start()
        for row in chosen:
            daemon.drop(row.name, rows(4))
        wait_until(lambda: all(daemon.state(row.campaign_id or "") == "scheduled"
                               for row in chosen), what="both scheduled")
        for count, row in enumerate(chosen, start=1):
            assert row.send_at is not None
            upload_at = row.send_at.astimezone(UTC) - LEAD
            # 30 seconds before its upload time (the gap's is 01:50 CET, not 02:50): not yet.
            move_clock_to(upload_at - dt.timedelta(seconds=30))
            time.sleep(1.2)
            assert len(published_names(daemon)) == count - 1, row
            move_clock_to(upload_at + dt.timedelta(seconds=5))
            wait_until(lambda n=count: len(published_names(daemon)) == n,
                       what=f"{row.name} uploaded at its lead time")
            assert published_names(daemon)[-1] == row.remote_name
            campaign = daemon.campaign(row.campaign_id or "")
            assert campaign is not None and campaign["remote_names"] == [row.remote_name]
    finally:
        daemon.kill()


# -- submit ----------------------------------------------------------------------------


def test_submit_follows_the_same_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    root = tmp_path / "agent"
    (root / "outbox").mkdir(parents=True)
    config.write_text(f'service_id = "12345"\ntimezone = "Europe/Paris"\n[paths]\n'
                      f'root = "{root}"\n[campaign]\nmarketing = false\n', encoding="utf-8")
    source = write_rows(tmp_path, "contacts.csv")
    gap = next_spring_gap(dt.datetime.now(PARIS))
    argv = ["submit", "--config", str(config), str(source), "--campaign", "spring sale"]
    assert main([*argv, "--at", f"{gap:%Y-%m-%d} 02:30"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"SEND-12345-{gap:%Y%m%d}-0300-springsale.csv" in out
    assert "moved to 03:00" in out and "made safe as 'springsale'" in out
    assert [p.name for p in (root / "outbox").iterdir()] == [
        f"SEND-12345-{gap:%Y%m%d}-0300-springsale.csv"]
    # A time long past is refused with the reason (exit 2), nothing is placed.
    old = dt.datetime.now(PARIS) - dt.timedelta(days=3)
    assert main([*argv, "--at", f"{old:%Y-%m-%d %H:%M}"]) == ExitCode.USAGE
    assert "stale: the requested time" in capsys.readouterr().err
    # A source named like the provider's keeps its own time, not "now".
    future = dt.datetime.now(PARIS) + dt.timedelta(days=9)
    named = write_rows(tmp_path, f"SEND-12345-{future:%Y%m%d}-0900-promo (2).csv")
    assert main(["submit", "--config", str(config), str(named)]) == ExitCode.OK
    assert f"SEND-12345-{future:%Y%m%d}-0900-promo2.csv" in capsys.readouterr().out
    assert len(list((root / "outbox").iterdir())) == 2
