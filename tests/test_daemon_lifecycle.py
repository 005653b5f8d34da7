"""The daemon's own guarantees as an operator sees them: an idle day is a quiet log, the
test switches are not honoured by the production command, and a loop that ends on its own
stops the process with exit 1 (so systemd restarts it), loudly."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.clock import system_clock
from sftpd_agent.config import load_settings
from sftpd_agent.daemon import open_agent
from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer

IDLE_SECONDS = 6.0
POLL_SECONDS = 0.3


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=5, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


def test_an_idle_daemon_writes_no_line_per_poll(daemon: Daemon) -> None:
    """~20 polls in a row with nothing to do: no line at all after the connection (an idle
    day at the default 30 s poll is then a handful of lines, not 170,000)."""
    daemon.start()
    wait_until(lambda: daemon.logged("remote_connected"), what="connected")
    time.sleep(IDLE_SECONDS)  # bounded: the point is that polls go by
    assert daemon.stop() == 0
    events = [line["event"] for line in daemon.lines()]
    start = events.index("remote_connected") + 1
    idle = events[start:events.index("signal_received")]
    polls = IDLE_SECONDS / POLL_SECONDS
    assert len(idle) == 0, f"{len(idle)} lines in {polls:.0f} idle polls: {idle[:10]}"
    assert len(events) < 12, events


def test_the_production_run_ignores_the_test_switches(tmp_path: Path,
                                                       openssh: SftpServer) -> None:
    """``sftpd-agent run`` with the fault switch set publishes normally (the test entry
    point would have killed itself before the upload) and says it ignored the switch."""
    config = write_config(tmp_path, openssh)
    root = tmp_path / "agent"
    log_path = tmp_path / "run.log"
    environment = {**os.environ, "SFTPD_AGENT_FAULT": "before_upload",
                   "SFTPD_AGENT_CLOCK_OFFSET_FILE": str(tmp_path / "offset")}
    (tmp_path / "offset").write_text("86400")  # would be tomorrow for a test clock
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "sftpd_agent", "run", "--config",
                                    str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   env=environment)
    try:
        wait_until(lambda: b"agent_ready" in log_path.read_bytes(), what="ready")
        (root / "outbox" / "promo.csv").write_text(rows(3))
        wait_until(lambda: any(p.name.endswith("-promo.done")
                               for p in openssh.send_dir.iterdir()), what="promo done")
        assert process.poll() is None
        text = log_path.read_text()
        assert "test_switches_ignored" in text and "fault_injected" not in text
        (name,) = [p.name for p in openssh.send_dir.iterdir() if p.name.endswith(".done")]
        tomorrow = dt.datetime.now(ZoneInfo("Europe/Paris")) + dt.timedelta(days=1)
        assert f"-{tomorrow:%Y%m%d}-" not in name  # the real clock, not the offset one
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


async def test_a_loop_that_ends_on_its_own_stops_the_agent_with_exit_1(
        tmp_path: Path, openssh: SftpServer, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(write_config(tmp_path, openssh))
    agent = open_agent(settings, config_path=None, clock=system_clock)

    async def broken() -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("the heartbeat broke")

    agent._heartbeat = broken  # type: ignore[method-assign]
    code = await asyncio.wait_for(agent.run(), timeout=30)
    assert code == 1
    assert agent.stop.is_set()
    out = capsys.readouterr()
    assert "loop_ended" in out.out + out.err
    assert "the heartbeat broke" in out.out + out.err
