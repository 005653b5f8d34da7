"""A full disk (ENOSPC) under the real daemon: nothing is lost, nothing is sent early or
twice, the daemon keeps running, and the campaign goes out once space comes back.

The agent's whole folder (outbox, spool, ``state.db``) is on a small tmpfs filled to the
last page; needs root to mount it (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=11, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs",
                              str(disk)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> list[Path]:
    """Files filling ``disk`` to its last page (bounded: 8 MiB in 4 KiB steps at most)."""
    fillers = []
    for number, block in enumerate((1 << 16, 1 << 12)):
        path = disk / f"filler{number}"
        fillers.append(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                for _ in range((8 << 20) // block + 1):
                    os.write(fd, b"\0" * block)
        finally:
            os.close(fd)
    return fillers


def test_a_full_disk_delays_a_campaign_and_never_loses_it(
        tmp_path: Path, openssh: SftpServer, small_disk: Path) -> None:
    config = write_config(tmp_path, openssh, paths={"root": str(small_disk / "agent")})
    daemon = Daemon(config, small_disk / "agent", openssh)
    daemon.start()
    try:
        staged = small_disk / "promo.csv"
        staged.write_text(rows(40))
        fillers = fill(small_disk)
        staged.rename(daemon.outbox / "promo.csv")  # moved in: no new page needed
        time.sleep(3)  # bounded: scans and polls go by while the disk is full
        assert not daemon.exited(), daemon.output()
        assert not daemon.journal(), "nothing may reach the provider while the disk is full"
        failures = daemon.logged("unit_failed")
        assert failures, daemon.output()
        assert any("No space left on device" in line["error"]
                   or "disk is full" in line["error"] for line in failures)
        assert len(failures) <= 6, f"said once per unit, not per poll: {len(failures)}"
        for filler in fillers:
            filler.unlink()
        wait_until(lambda: daemon.state("promo") == "done", timeout=60, what="promo done")
        names = [entry.name for entry in daemon.journal()]
        assert len(names) == 1 and names[0].endswith("-promo.csv")
        assert not daemon.exited()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
