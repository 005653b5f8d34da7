"""``suppress import`` of a million numbers beside the real daemon and the real sshd.

The import shares ``state.db`` with the daemon; committed in short batches, it must not make
the daemon's writes (heartbeat, campaign transitions, polls) fail or wait long: campaigns
dropped during the import are all published, ``status`` stays healthy, the import finishes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until

MILLION = 1_000_000
CAMPAIGNS = 6


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=7, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


@pytest.mark.slow
def test_campaigns_dropped_during_a_million_number_import_are_all_published(
        daemon: Daemon, tmp_path: Path) -> None:
    listing = tmp_path / "crm.csv"
    with listing.open("w", encoding="utf-8", newline="") as out:
        out.write("telephone;nom\r\n")
        out.writelines(f"+3367{(i * 7_919) % MILLION:07d};client {i}\r\n"
                       for i in range(MILLION))
    daemon.start()
    importer = subprocess.Popen(
        [sys.executable, "-m", "sftpd_agent", "suppress", "import", str(listing),
         "--config", str(daemon.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        dropped_during = 0
        for n in range(CAMPAIGNS):  # spread over the import (a few seconds)
            daemon.drop(f"during{n}.csv", rows(5, start=n * 5, prefix=f"D{n}x"))
            dropped_during += importer.poll() is None
            time.sleep(0.7)
        healthy_during = daemon.status()["agent"]["healthy"]
        out, err = importer.communicate(timeout=60)
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.wait()
    assert importer.returncode == 0, err
    assert out.strip() == f"imported {MILLION} new, 0 already there or repeated, 0 unreadable"
    assert dropped_during >= 2, "the import ended before the campaigns were dropped"
    wait_until(lambda: len(daemon.journal()) == CAMPAIGNS, timeout=30,
               what=f"{CAMPAIGNS} campaigns published")
    names = [entry.name for entry in daemon.journal()]
    assert len(set(names)) == CAMPAIGNS  # each once
    assert not daemon.exited(), daemon.output()
    assert "database is locked" not in daemon.output()
    assert not daemon.logged("loop_stalled")
    status = daemon.status()
    assert healthy_during and status["agent"]["healthy"], status["agent"]
    states = {c["campaign_id"]: c["state"] for c in status["campaigns"]}
    assert set(states) == {f"during{n}" for n in range(CAMPAIGNS)}
    assert all(state in ("published", "processing", "done") for state in states.values())
    assert daemon.stop() == 0
