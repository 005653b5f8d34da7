"""Odd outbox entries against the real daemon and a real sshd: each gets a clear outcome,
the daemon goes on, a good campaign dropped after them is published, and a restart comes up.

Undecodable, 250-byte and control-character names are taken (their safe form is what the
journal, the logs and ``status`` show); a symbolic link is held, never followed; a FIFO and a
folder are reported and never opened; a file the service user cannot read is held with the
system's reason (the daemon runs without its capabilities, so root is refused too).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer

SECRET = "TOPSECRET;+33612345678;X;do not send\r\n"


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=3, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


def _without_capabilities() -> list[str]:
    """As root, the daemon would read any file: run it without capabilities instead."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer) -> Iterator[Daemon]:
    config = write_config(tmp_path, openssh)
    agent = Daemon(config, tmp_path / "agent", openssh, wrapper=_without_capabilities())
    yield agent
    agent.kill()


def _sent_bodies(daemon: Daemon) -> str:
    return "".join(path.read_text(encoding="utf-8", errors="replace")
                   for path in daemon.server.send_dir.iterdir() if path.is_file())


def test_every_odd_entry_gets_an_outcome_and_a_good_campaign_still_goes(
        daemon: Daemon, tmp_path: Path) -> None:
    daemon.start()
    outbox = os.fsencode(daemon.outbox)
    # Names as a Windows share, a long export and a careless script write them.
    with open(outbox + b"/caf\xe9.csv", "wb") as out:
        out.write(rows(3, prefix="CAFE").encode())
    long_name = "L" * 246 + ".csv"  # 250 bytes: the old spool prefix made it too long
    (daemon.outbox / long_name).write_text(rows(3, start=10, prefix="LONG"))
    (daemon.outbox / "new\nline\x1b[31m.csv").write_text(rows(3, start=20, prefix="CTRL"))
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    (daemon.outbox / "link.csv").symlink_to(secret)
    os.mkfifo(daemon.outbox / "pipe.csv")
    (daemon.outbox / "folder.csv").mkdir()
    unreadable = daemon.outbox / "locked.csv"
    unreadable.write_text(rows(3, start=30, prefix="LOCK"))
    unreadable.chmod(0)
    (daemon.outbox / "~$promo.csv").write_text("office lock file")

    def settled() -> bool:
        states = {c["file"]: c["state"] for c in daemon.status()["campaigns"]}
        return len(states) == 5 and all(s in ("done", "held") for s in states.values())

    wait_until(settled, what="five entries taken, each done or held")
    report = daemon.status()
    by_file = {c["file"]: c for c in report["campaigns"]}
    assert by_file["caf\\xe9.csv"]["state"] == "done"
    assert by_file["caf\\xe9.csv"]["campaign_id"] == "caf"
    assert by_file[long_name]["state"] == "done"
    assert by_file["new\\nline\\x1b[31m.csv"]["state"] == "done"
    assert by_file["link.csv"]["state"] == "held"
    assert "symbolic link" in by_file["link.csv"]["reason"]
    assert by_file["locked.csv"]["state"] == "held"
    assert "Permission denied" in by_file["locked.csv"]["reason"]
    assert "TOPSECRET" not in _sent_bodies(daemon)
    # The link itself is in failed/, still a link, never read through.
    assert (daemon.root / "failed" / "link.csv").is_symlink()
    assert (daemon.root / "failed" / "link.csv.reason.txt").read_text().startswith(
        "cannot be read: a symbolic link")
    attention = report["agent"]["attention"]
    assert "outbox entry pipe.csv: a FIFO (named pipe), not a file" in attention
    assert "outbox entry folder.csv: a folder, not a file" in attention
    assert (daemon.outbox / "pipe.csv").exists() and (daemon.outbox / "folder.csv").is_dir()
    assert (daemon.outbox / "~$promo.csv").exists()  # ignored, never taken
    # Said once each, however many scans went by.
    ignored = daemon.logged("outbox_entry_ignored")
    assert sorted(line["entry"] for line in ignored) == ["folder.csv", "pipe.csv"]
    # No raw control character reached the log.
    assert "\x1b" not in daemon.output()

    daemon.drop("good.csv", rows(5, start=40, prefix="GOOD"))
    wait_until(lambda: daemon.state("good") == "done", what="the good campaign done")
    assert not daemon.exited()

    assert daemon.stop() == 0
    daemon.start()  # the same outbox, the same spool: it comes up
    wait_until(lambda: daemon.status()["agent"]["healthy"], what="healthy after restart")
    names = [entry.name for entry in daemon.journal()]
    assert len(names) == len(set(names)) == 4, names  # caf, long, ctrl, good: once each
    assert daemon.stop() == 0


def test_a_spool_file_that_cannot_be_recorded_is_set_aside_at_start(
        daemon: Daemon) -> None:
    """A file taken before a crash that fails to be recorded (here its kept name cannot be
    read): set aside once, and the daemon comes up (it used to crash-loop in start-up
    recovery)."""
    daemon.start()
    assert daemon.stop() == 0
    incoming = daemon.root / "spool" / "incoming"
    (incoming / "1.csv").write_text(rows(2))
    (incoming / "1.name").mkdir()  # reading the name fails: IsADirectoryError
    for _ in range(2):
        daemon.start()
        try:
            wait_until(lambda: daemon.status()["agent"]["healthy"], what="healthy")
        except AssertionError:
            raise AssertionError(f"{daemon.status()['agent']}\n{daemon.output()}") from None
        assert daemon.stop() == 0
    assert not (incoming / "1.csv").exists()
    held = list((daemon.root / "failed").glob("*.reason.txt"))
    assert len(held) == 1 and "could not be recorded" in held[0].read_text()
    assert "Is a directory" in held[0].read_text()
    assert len(daemon.logged("spool_file_set_aside")) == 1


def test_check_refuses_what_run_would_hold(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    link = tmp_path / "link.csv"
    link.symlink_to(secret)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, reason in ((link, "a symbolic link"), (fifo, "a FIFO")):
        environment = {k: v for k, v in os.environ.items() if k != "SFTPD_AGENT_CONFIG"}
        done = subprocess.run([sys.executable, "-m", "sftpd_agent", "check", str(path)],
                              capture_output=True, text=True, timeout=60, check=False,
                              env=environment)
        assert done.returncode == 1, done.stdout + done.stderr
        assert reason in done.stdout
        assert "TOPSECRET" not in done.stdout


def test_two_files_with_the_same_id_and_time_get_distinct_provider_names(
        daemon: Daemon, tmp_path: Path) -> None:
    """Two files whose names give the same id and time (``promo`` twice, tomorrow 09:00):
    two campaigns, two provider files, neither held, each sent once, kept apart in status."""
    offset = tmp_path / "clock-offset"
    daemon.env["SFTPD_AGENT_CLOCK_OFFSET_FILE"] = str(offset)
    daemon.start()
    paris = ZoneInfo("Europe/Paris")
    when = (dt.datetime.now(paris) + dt.timedelta(days=1)).replace(hour=9, minute=0)
    stamp = f"{when:%Y%m%d}-0900"
    daemon.drop(f"SEND-12345-{stamp}-promo.csv", rows(3, prefix="FIRST"))
    daemon.drop(f"SEND-12345-{stamp}-pro_mo.csv", rows(3, start=10, prefix="SECOND"))

    def promos(state: str) -> list[dict[str, Any]]:
        found = [c for c in daemon.status()["campaigns"] if c["campaign_id"] == "promo"]
        return found if len(found) == 2 and all(c["state"] == state for c in found) else []

    wait_until(lambda: promos("scheduled"), what="both scheduled")
    ahead = (when - dt.datetime.now(paris)).total_seconds() - 300  # 5 min before 09:00
    offset.write_text(f"{ahead:.0f}", encoding="utf-8")
    first, second = wait_until(lambda: promos("done"), what="both done")
    names = sorted([*first["remote_names"], *second["remote_names"]])
    assert names == [f"SEND-12345-{stamp}-promo.csv", f"SEND-12345-{stamp}-promo2.csv"]
    assert sorted(entry.name for entry in daemon.journal()) == names
    assert daemon.logged("campaign_renamed")
