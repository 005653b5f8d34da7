"""The real daemon reading the provider's reports from a real OpenSSH sshd.

The simulator writes the reports as the provider does: an unquoted ACK (raw ``;`` in MSG,
``2 `` style IDSTATUS), STOP and SMS-MO files appended in place over three steps with lines
torn across writes, one of them rewritten once. Its clock is the test's: each step of the
provider's time is brought on by hand, and the daemon is given time to read it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.rules.masking import mask
from sftpd_agent.rules.report_lines import fold
from sftpd_agent.simulator import SimulatorOptions
from sftpd_agent.store.journal import Store
from tests.daemon_harness import Daemon, wait_until, write_config
from tests.servers import SftpServer
from tests.test_remote_names import (
    BINARY_STOP,
    DOTTY,
    LONG,
    NUMBERS,
    REAL_STOP,
    fill_report_dir,
)

PARIS = ZoneInfo("Europe/Paris")
ROWS = 40
KEYWORDS = {fold(word) for word in ("STOP", "ARRET", "ARRÊT", "UNSUBSCRIBE")}


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=5, lock_seconds=0, ack_delay=5, report_steps=3,
                            report_interval=5, rewrite_step=2, rewrite_kind="STOP",
                            torn_writes=True, stop_share=0.25, mo_share=0.4)


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer) -> Iterator[Daemon]:
    agent = Daemon(write_config(tmp_path, openssh), tmp_path / "agent", openssh,
                   env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(tmp_path / "offset")})
    yield agent
    agent.kill()


def campaign_rows(count: int = ROWS, start: int = 0) -> str:
    return "".join(f'R{i};+3361{i:07d};Shop;"Promo; -20% ; ce soir {i}"\r\n'
                   for i in range(start, start + count))


@contextlib.contextmanager
def journal(daemon: Daemon) -> Iterator[Store]:
    """The daemon's journal, read-only beside it (WAL), through the store's own API."""
    store = Store(daemon.root / "state.db", readonly=True)
    try:
        yield store
    finally:
        store.close()


def count(daemon: Daemon, table: Literal["deliveries", "optouts", "replies"]) -> int:
    with journal(daemon) as store:
        return store.count_rows(table)


def suppressed(daemon: Daemon) -> set[str]:
    with journal(daemon) as store:
        return store.suppressed()


def complete_lines(daemon: Daemon, prefix: str) -> list[str]:
    lines: list[str] = []
    for path in sorted(daemon.server.report_dir.glob(f"{prefix}-*.csv")):
        lines += path.read_bytes().decode().split("\r\n")[:-1]
    return lines


def caught_up(daemon: Daemon) -> bool:
    """Every report line in the journal, and every STOP line's number listed."""
    with journal(daemon) as store:
        listing = store.unlisted_optouts()
    return (count(daemon, "optouts") == len(complete_lines(daemon, "STOP"))
            and count(daemon, "replies") == len(complete_lines(daemon, "SMSMO"))
            and listing == 0)


def provider_behind(daemon: Daemon) -> bool:
    due = daemon.server.processor.next_due()
    return due is not None and due <= daemon.server.clock()


def provider_steps(daemon: Daemon, steps: int = 4) -> None:
    """Bring on the provider's report writes one at a time, letting the daemon read each."""
    for _ in range(steps):
        daemon.server.clock.advance(5)
        wait_until(lambda: not provider_behind(daemon), what="the provider's writes")
        wait_until(lambda: caught_up(daemon), what="the daemon to read the reports")


def assert_exactly_once(daemon: Daemon, campaign_id: str) -> None:
    stops = complete_lines(daemon, "STOP")
    replies = complete_lines(daemon, "SMSMO")
    assert len(stops) >= 3 and len(replies) >= 3
    assert count(daemon, "optouts") == len(stops)
    assert count(daemon, "replies") == len(replies)
    expected = {line.split(";")[0] for line in stops}
    expected |= {line.split(";")[0] for line in replies if fold(line.split(";")[3]) in KEYWORDS}
    listed = suppressed(daemon)
    assert listed == expected
    announced = [n for e in daemon.events("optout.received") for n in e["numbers"]]
    assert set(announced) == {mask(n) for n in expected}  # the log masks them
    assert len(announced) <= len(stops) + sum(
        1 for line in replies if fold(line.split(";")[3]) in KEYWORDS)
    campaign = daemon.campaign(campaign_id)
    assert campaign is not None and campaign["state"] == "reported"
    assert sum(campaign["acks"].values()) == ROWS
    assert set(campaign["acks"]) == {"sent", "failed"}
    assert count(daemon, "deliveries") == ROWS
    assert not list(daemon.server.report_dir.glob("ACK-*.csv")), "the ACK is deleted"


def test_reports_are_ingested_exactly_once(daemon: Daemon) -> None:
    daemon.start()
    daemon.drop("rep.csv", campaign_rows())
    wait_until(lambda: daemon.state("rep") == "done", what="done")
    provider_steps(daemon)
    wait_until(lambda: daemon.state("rep") == "reported", what="reported")
    assert_exactly_once(daemon, "rep")
    assert len(daemon.events("campaign.reported")) == 1
    (ack,) = (daemon.root / "inbox" / "ack").glob("ACK-*.csv")
    lines = ack.read_bytes().decode().split("\r\n")[:-1]
    assert len(lines) == ROWS
    assert all(";Promo; -20% ; ce soir " in line for line in lines)
    assert all(line.split(";")[-3] in ("2 ", "3 ") for line in lines)
    with journal(daemon) as store:
        rows = {(row[5], row[6]) for row in store.deliveries()}
    assert rows <= {("2", "sent"), ("3", "failed")}
    assert daemon.logged("report_reread", reason="rewritten")


def test_killed_mid_ingestion_and_restarted_still_exactly_once(daemon: Daemon) -> None:
    daemon.start(SFTPD_AGENT_FAULT="report_chunk")
    daemon.drop("killed.csv", campaign_rows())
    wait_until(lambda: daemon.state("killed") == "done", what="done")
    daemon.server.clock.advance(30)  # the ACK and every STOP/SMS-MO step at once
    assert daemon.wait_exit(timeout=30) != 0
    assert daemon.logged("fault_injected", point="report_chunk")
    daemon.start()
    wait_until(lambda: caught_up(daemon) and daemon.state("killed") == "reported",
               what="reported after the restart")
    assert daemon.logged("report_reread")
    assert_exactly_once(daemon, "killed")


def test_a_stop_received_while_a_campaign_waits_removes_the_number(
    tmp_path: Path, daemon: Daemon,
) -> None:
    daemon.start()
    daemon.drop("first.csv", campaign_rows())
    wait_until(lambda: daemon.state("first") == "done", what="done")
    send_at = (dt.datetime.now(PARIS) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    later = f"SEND-12345-{send_at:%Y%m%d-%H%M}-later.csv"
    daemon.drop(later, campaign_rows())  # the same recipients, two hours later
    wait_until(lambda: daemon.state("later") == "scheduled", what="scheduled")
    provider_steps(daemon)
    stopped = {line.split(";")[0] for line in complete_lines(daemon, "STOP")}
    assert stopped
    (tmp_path / "offset").write_text(
        str((send_at - dt.datetime.now(PARIS)).total_seconds()))
    wait_until(lambda: daemon.state("later") in ("processing", "done", "reported"),
               what="the later campaign uploaded")
    (uploaded,) = (daemon.root / "archive").glob(f"*/{later}")
    body = uploaded.read_bytes().decode()
    assert not [n for n in stopped if n in body]
    campaign = daemon.campaign("later")
    assert campaign is not None and campaign["suppressed"] >= len(stopped)
    assert body.count("\r\n") == ROWS - campaign["suppressed"]


def test_odd_report_names_beside_a_real_stop_file(tmp_path: Path, daemon: Daemon) -> None:
    """Undecodable, a folder, ``..``-like, 250 bytes, a symlink, binary content: skipped (each
    logged once and kept for status) while the real STOP file's numbers are suppressed."""
    fill_report_dir(daemon.server.report_dir, tmp_path / "secret.csv")
    daemon.start()
    wait_until(lambda: suppressed(daemon)
               == set(NUMBERS), what="the real STOP file's numbers suppressed")
    skipped = wait_until(lambda: report_skipped(daemon), what="the skipped files recorded")
    assert "STOP-12345-20261123-1000-caf\\xe9.csv" in skipped
    assert LONG in skipped and all(name in skipped for name in DOTTY)
    assert not {REAL_STOP, BINARY_STOP} & skipped.keys()
    assert sorted((daemon.root / "inbox" / "stop").iterdir()) == sorted(
        daemon.root / "inbox" / "stop" / name for name in (BINARY_STOP, REAL_STOP))
    # The loops go on: a campaign is still published, and nothing is logged twice.
    daemon.drop("after.csv", campaign_rows())
    wait_until(lambda: daemon.state("after") == "done", what="a campaign after them, done")
    logged = [line["file"] for line in daemon.logged("report_skipped")]
    assert sorted(logged) == sorted(skipped), "each skipped file logged once"
    assert not daemon.exited()


def report_skipped(daemon: Daemon) -> dict[str, str]:
    with journal(daemon) as store:
        found: dict[str, str] | None = store.fact("report_skipped")
    return found or {}
