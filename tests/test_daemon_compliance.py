"""The compliance guard end to end (issue 14), through the real daemon against sshd and the
embedded simulator: rows lacking the opt-out mention are uploaded with it appended, a row the
mention pushes past max_segments is invalid, and mobile or generic senders are refused, each
named with its line, field and value in the errors file."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, wait_until, write_config
from tests.servers import SftpServer
from tests.test_daemon_zones import next_plain_tuesday

PARIS = ZoneInfo("Europe/Paris")
MENTION = "STOP au 36180"


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=15, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


@pytest.fixture(params=["openssh", "simulator_thread"])
def server(request: pytest.FixtureRequest) -> SftpServer:
    """A real sshd, then the embedded simulator in its own thread (the daemon is a process)."""
    found: SftpServer = request.getfixturevalue(request.param)
    return found


def test_mention_appended_and_senders_refused(tmp_path: Path, server: SftpServer) -> None:
    day = next_plain_tuesday(dt.datetime.now(PARIS).date() + dt.timedelta(days=7))
    send_at = dt.datetime.combine(day, dt.time(10), tzinfo=PARIS)
    name = f"SEND-12345-{send_at:%Y%m%d-%H%M}-guard.csv"
    full = "x" * (160 - len(MENTION))  # one SMS alone; the mention makes it two
    rows = [
        ("A1", "+33612000001", "Shop", "Soldes -20% ce week-end"),       # mention appended
        ("A2", "+33612000002", "Shop", f"Soldes -20% {MENTION}"),        # already there
        ("A3", "+33612000003", "Shop", full),                            # pushed past 1 SMS
        ("A4", "+33612000004", "0612345678", "Soldes"),                  # oadc_mobile
        ("A5", "+33612000005", "info", "Soldes"),                        # oadc_blocked
        *((f"B{i}", f"+3361200010{i}", "Shop", f"Offre {i}") for i in range(7)),
    ]
    offset = tmp_path / "clock-offset"
    config = write_config(tmp_path, server, campaign={
        "marketing": True, "stable_seconds": 0.4, "upload_lead_minutes": 10,
        "stop_mention": MENTION, "max_segments": 1, "max_invalid_percent": 50})
    daemon = Daemon(config, tmp_path / "agent", server,
                    env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    daemon.start()
    try:
        daemon.drop(name, "".join(f"{';'.join(row)}\r\n" for row in rows))
        wait_until(lambda: daemon.state("guard") == "scheduled", what="scheduled")
        early = send_at - dt.timedelta(minutes=5)
        offset.write_text(f"{(early - dt.datetime.now(dt.UTC)).total_seconds():.0f}")
        # Published (the simulated provider then keeps it until its DATE-HOUR): archived.
        # the summary is the archive's last write
        wait_until(lambda: list((daemon.root / "archive").glob("*-guard-*/guard.summary.json")),
                   what="guard published and archived")
        (folder,) = (daemon.root / "archive").glob("*-guard-*")
        sent = list(csv.reader((folder / name).read_text(encoding="utf-8").splitlines(),
                               delimiter=";"))
        by_id = {row[0]: row for row in sent}
        assert by_id["A1"][3] == f"Soldes -20% ce week-end {MENTION}"
        assert by_id["A2"][3] == f"Soldes -20% {MENTION}"
        assert all(row[3].endswith(MENTION) for row in sent)
        assert not {"A3", "A4", "A5"} & set(by_id)
        assert len(sent) == 9
        errors = list(csv.reader(
            (folder / f"{name}.errors.csv").read_text(encoding="utf-8").splitlines(),
            delimiter=";"))
        found = {(line, code, field, value) for line, code, field, value, _ in errors[1:]}
        assert any(code == "msg_too_long" and line == "3" and full.startswith(value)
                   for line, code, _, value in found)
        assert any(code == "oadc_mobile" and line == "4" and value == "0612345678"
                   for line, code, _, value in found)
        assert any(code == "oadc_blocked" and line == "5" and value == "info"
                   for line, code, _, value in found)
        summary = json.loads((folder / "guard.summary.json").read_text(encoding="utf-8"))
        assert summary["optout_appended"] == 8  # A1 and the seven B rows
    finally:
        daemon.kill()
