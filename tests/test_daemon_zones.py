"""Recipients' own hours end to end: the real daemon against sshd turns one campaign of
metropolitan, Martinique and Reunion numbers into one provider file per send time, each
DATE-HOUR being the Paris time at which its recipients' window opens."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, wait_until, write_config
from tests.servers import SftpServer

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
UTC = dt.UTC
LEAD = dt.timedelta(minutes=10)


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=14, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


def next_plain_tuesday(after: dt.date) -> dt.date:
    """A Tuesday whose Tuesday and Wednesday are no holiday in France, Martinique, Reunion."""
    day = after + dt.timedelta(days=(1 - after.weekday()) % 7)
    for _ in range(20):
        days = (day, day + dt.timedelta(days=1))
        if not any(d in holidays.country_holidays("FR", subdiv=s, years=d.year)
                   for d in days for s in (None, "972", "974")):
            return day
        day += dt.timedelta(days=7)
    raise AssertionError("no plain Tuesday in 20 weeks")  # pragma: no cover


def test_a_campaign_becomes_one_file_per_send_time(tmp_path: Path, openssh: SftpServer) -> None:
    day = next_plain_tuesday(dt.datetime.now(PARIS).date() + dt.timedelta(days=14))
    paris = dt.datetime.combine(day, dt.time(20), tzinfo=PARIS)
    # 20:00 Paris is 14:00 or 15:00 in Martinique (allowed), 22:00 or 23:00 in Reunion
    # (closed): Reunion's rows go when its window opens, Wednesday 08:00 there.
    reunion = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(8), tzinfo=REUNION)
    expected = {
        f"SEND-12345-{paris:%Y%m%d-%H%M}-zones.csv": ["m1", "q1", "m2", "q2"],
        f"SEND-12345-{reunion.astimezone(PARIS):%Y%m%d-%H%M}-zones.csv": ["r1", "r2"],
    }
    offset = tmp_path / "clock-offset"
    config = write_config(tmp_path, openssh, campaign={
        "marketing": True, "stable_seconds": 0.4, "upload_lead_minutes": 10,
        "stop_mention": "STOP au 36180"})
    daemon = Daemon(config, tmp_path / "agent", openssh,
                    env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})

    def move_clock_to(moment: dt.datetime) -> None:
        seconds = (moment - dt.datetime.now(UTC)).total_seconds()
        offset.write_text(f"{seconds:.3f}", encoding="utf-8")

    lines = [("m1", "+33612345678"), ("r1", "+262692123456"), ("q1", "+596696123456"),
             ("m2", "0612345679"), ("r2", "0692123457"), ("q2", "+596696123457")]
    try:
        daemon.start()
        daemon.drop(f"SEND-12345-{paris:%Y%m%d-%H%M}-zones.csv",
                    "".join(f"{i};{n};Shop;Offre du jour\r\n" for i, n in lines))
        campaign = wait_until(
            lambda: c if (c := daemon.campaign("zones")) and c["state"] == "scheduled" else None,
            what="scheduled")
        assert dt.datetime.fromisoformat(campaign["send_at"]) == paris
        move_clock_to(paris.astimezone(UTC) - LEAD - dt.timedelta(seconds=30))
        time.sleep(1.2)
        assert daemon.journal() == []  # not before the first group's lead time
        move_clock_to(paris.astimezone(UTC) - LEAD + dt.timedelta(seconds=5))
        first, second = sorted(expected, key=lambda n: n[11:24])
        wait_until(lambda: [e.name for e in daemon.journal()] == [first],
                   what="the first group published")
        time.sleep(1.2)
        assert [e.name for e in daemon.journal()] == [first]  # the other waits for its time
        campaign = daemon.campaign("zones")
        assert campaign is not None and campaign["state"] in ("published", "processing")
        assert dt.datetime.fromisoformat(campaign["next_upload_at"]) == reunion - LEAD
        # A STOP between the two send times: r2 is kept out of the second file.
        subprocess.run([sys.executable, "-m", "sftpd_agent", "suppress", "add", "0692123457",
                        "--config", str(config)], check=True, capture_output=True, timeout=60)
        move_clock_to(reunion.astimezone(UTC) - LEAD + dt.timedelta(seconds=5))
        wait_until(lambda: len(daemon.journal()) == 2, what="both files published")
        names = [entry.name for entry in daemon.journal()]
        assert sorted(names) == sorted(expected)
        uploaded = {p.name: p for p in (tmp_path / "agent" / "archive").glob("*/SEND-*.csv")}
        wait_until(lambda: set(uploaded) == set(expected) or uploaded.update(
            {p.name: p for p in (tmp_path / "agent" / "archive").glob("*/SEND-*.csv")}),
            what="the uploaded files archived")
        expected[second] = ["r1"]
        for name, ids in expected.items():
            text = uploaded[name].read_text(encoding="utf-8")
            assert [line.split(";")[0] for line in text.splitlines()] == ids
            assert "STOP au 36180" in text
        status = daemon.campaign("zones")
        assert status is not None and sorted(status["remote_names"]) == sorted(expected)
        assert status["suppressed"] == 1
        # status shows each group: its zones, rows, Paris and local times, provider file.
        groups = {tuple(g["zones"]): g for g in status["groups"]}
        assert sorted(name for g in groups.values() for name in g["remote_names"]) == sorted(
            expected)
        reunion_group = next(g for zones, g in groups.items() if "RE" in zones)
        assert reunion_group["local"]["RE"][11:16] == "08:00"
        assert reunion_group["suppressed"] == 1 and reunion_group["rows_sent"] == 1
        wait_until(lambda: list((tmp_path / "agent" / "archive").glob("*/zones.summary.json")),
                   what="the archive written (its summary last)")
        dropped = next((tmp_path / "agent" / "archive").glob("*/dropped.csv"))
        assert dropped.read_text(encoding="utf-8").splitlines()[1:] == [
            "r2;+262692123457;suppressed"]
    finally:
        daemon.kill()
