"""The daemon and the provider's server over time: outages, overdue outcomes, status, submit."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    # The provider takes files (.lock) but never finishes them: outcomes stay pending.
    return SimulatorOptions(seed=3, lock_seconds=10**6, ack_delay=10**6, stop_share=0,
                            mo_share=0)


@pytest.fixture
def offset(tmp_path: Path) -> Path:
    return tmp_path / "clock-offset"


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer, offset: Path) -> Iterator[Daemon]:
    agent = Daemon(write_config(tmp_path, openssh), tmp_path / "agent", openssh,
                   env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    yield agent
    agent.kill()


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sftpd_agent", *args, "--config",
                           str(daemon.config)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_no_outcome_in_time_raises_campaign_overdue_once(daemon: Daemon, offset: Path) -> None:
    daemon.start()
    daemon.drop("slowprov.csv", rows(3))
    wait_until(lambda: daemon.state("slowprov") == "processing", what="processing")
    assert not daemon.events("campaign.overdue")
    offset.write_text(str(31 * 60))
    wait_until(lambda: daemon.events("campaign.overdue"), what="overdue")
    offset.write_text(str(40 * 60))
    wait_until(lambda: len(daemon.logged("remote_connected")) >= 1)
    assert len(daemon.events("campaign.overdue")) == 1


def test_status_reports_health_and_every_campaign(daemon: Daemon) -> None:
    daemon.start()
    daemon.drop("stat.csv", rows(40) + "bad;0612;Shop;x\r\n" + rows(1))
    wait_until(lambda: daemon.state("stat") == "processing", what="processing")
    wait_until(lambda: daemon.status()["agent"]["last_poll"], what="a poll")
    done = cli(daemon, "status", "--json")
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    assert report["agent"]["healthy"] is True and report["agent"]["remote_error"] is None
    (campaign,) = report["campaigns"]
    for key in ("campaign_id", "file", "state", "send_at", "remote_names", "rows", "valid",
                "invalid", "duplicates", "suppressed", "segments", "acks"):
        assert key in campaign
    assert (campaign["rows"], campaign["valid"], campaign["invalid"], campaign["duplicates"]) \
        == (42, 40, 1, 1)
    assert campaign["segments"] == 40 and campaign["file"] == "stat.csv"
    assert daemon.stop() == 0
    stopped = cli(daemon, "status", "--json")
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["agent"]["healthy"] is False


def test_an_unknown_host_key_is_refused_then_recovered_after_trust(
    daemon: Daemon, offset: Path
) -> None:
    good = daemon.server.known_hosts.read_text()
    bad = daemon.config.parent / "known_hosts_wrong"
    bad.write_text("")
    daemon.config.write_text(daemon.config.read_text().replace(
        str(daemon.server.known_hosts), str(bad)))
    daemon.start()
    daemon.drop("keyed.csv", rows(2))
    wait_until(lambda: daemon.events("remote.unreachable"), what="unreachable")
    # The refusal may come before the file is taken in: wait for it, it must not be lost.
    wait_until(lambda: daemon.state("keyed") == "uploading", what="keyed waiting to upload")
    report = daemon.status()
    assert report["agent"]["healthy"] is False and report["agent"]["remote_error"]
    first = len(daemon.logged("remote_failed"))
    # Permanent: no hot retry loop.
    wait_until(lambda: daemon.status()["agent"]["remote_error"], timeout=5)
    assert len(daemon.logged("remote_failed")) <= first + 1
    bad.write_text(good)
    offset.write_text(str(11 * 60))  # past the slow retry of permanent failures
    wait_until(lambda: daemon.events("remote.recovered"), what="recovered")
    wait_until(lambda: daemon.state("keyed") == "processing", what="published after recovery")
    assert len(daemon.events("remote.unreachable")) == 1


def test_submit_places_the_file_under_the_providers_name(daemon: Daemon, tmp_path: Path) -> None:
    daemon.start()
    source = tmp_path / "Ma campagne.csv"
    source.write_text(rows(2), encoding="utf-8")
    at = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%d 10:30")
    done = cli(daemon, "submit", str(source), "--campaign", "noel26", "--at", at)
    assert done.returncode == 0, done.stderr
    expected = f"SEND-12345-{at[:10].replace('-', '')}-1030-noel26.csv"
    assert expected in done.stdout
    wait_until(lambda: daemon.state("noel26") == "scheduled", what="scheduled")
    refused = cli(daemon, "submit", str(source), "--at", "2026-13-40 99:99")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
