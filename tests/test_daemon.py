"""The real daemon process against a real OpenSSH sshd, the simulator processing its folder.

These are the product's end-to-end guarantees: files are taken only when complete, every
campaign reaches the provider exactly once, byte for byte, even when the process is killed at
any step of the protocol; nothing is lost on SIGTERM; SIGHUP reloads; systemd hears from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    # Verdicts at once; reports far away (the reports tests bring them closer).
    return SimulatorOptions(seed=7, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


def published(daemon: Daemon) -> dict[str, str]:
    """Name -> sha256 of every file the provider saw, asserting none was seen twice."""
    names = [entry.name for entry in daemon.journal()]
    assert len(names) == len(set(names)), f"published twice: {names}"
    return {entry.name: entry.sha256 for entry in daemon.journal()}


def archived_upload(daemon: Daemon, remote_name: str) -> bytes:
    (path,) = (daemon.root / "archive").glob(f"*/{remote_name}")
    return path.read_bytes()


def test_a_dropped_file_is_published_and_done(daemon: Daemon) -> None:
    daemon.start()
    daemon.drop("promo.csv", rows(20))
    wait_until(lambda: daemon.state("promo") == "done", what="promo done")
    campaign = daemon.campaign("promo")
    assert campaign is not None
    (name,) = campaign["remote_names"]
    assert name.startswith("SEND-12345-") and name.endswith("-promo.csv")
    sent = published(daemon)
    assert sent == {name: hashlib.sha256(archived_upload(daemon, name)).hexdigest()}
    assert (daemon.server.send_dir / name.replace(".csv", ".done")).exists()
    assert daemon.events("campaign.published") and daemon.events("campaign.done")
    assert daemon.stop() == 0


def test_a_file_written_slowly_is_not_taken_before_it_is_complete(daemon: Daemon) -> None:
    daemon.start()
    body = rows(30)
    path = daemon.outbox / "slow.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        for piece in range(0, len(body), len(body) // 6):
            out.write(body[piece:piece + len(body) // 6])
            out.flush()
            time.sleep(0.25)  # shorter than stable_seconds (0.4)
            assert not daemon.logged("campaign_received"), "taken while still being written"
    wait_until(lambda: daemon.state("slow") == "done", what="slow done")
    campaign = daemon.campaign("slow")
    assert campaign is not None and campaign["valid"] == 30


def test_a_file_present_before_start_up_is_taken(daemon: Daemon) -> None:
    daemon.outbox.mkdir(parents=True, exist_ok=True)
    (daemon.outbox / "early.csv").write_text(rows(5), encoding="utf-8")
    old = time.time() - 60
    os.utime(daemon.outbox / "early.csv", (old, old))
    daemon.start()
    wait_until(lambda: daemon.state("early") == "done", what="early done")


def test_fifty_files_dropped_at_once_all_go_exactly_once(daemon: Daemon) -> None:
    daemon.start()
    for n in range(50):
        daemon.drop(f"bulk{n:02d}.csv", rows(3, start=n * 3, prefix=f"B{n}x"))
    wait_until(lambda: len(published(daemon)) == 50, timeout=90, what="50 published")
    states = {c["campaign_id"]: c["state"] for c in daemon.status()["campaigns"]}
    assert len(states) == 50
    wait_until(lambda: all(c["state"] == "done" for c in daemon.status()["campaigns"]),
               what="all done")
    assert not list(daemon.server.send_dir.glob("*.tmp"))


def test_held_files_land_in_failed_with_their_reasons(daemon: Daemon) -> None:
    daemon.start()
    daemon.drop("bad.csv", "".join(f"R{i};0612;Shop;x\r\n" for i in range(10)))
    daemon.drop("binary.csv", b"PK\x03\x04\x00\x00\x00")
    failed = daemon.root / "failed"
    wait_until(lambda: (failed / "bad.csv.errors.csv").exists()
               and (failed / "binary.csv.reason.txt").exists(), what="held files")
    assert (failed / "bad.csv.errors.csv").read_text().count("msisdn") == 10
    assert "NUL" in (failed / "binary.csv.reason.txt").read_text()
    assert daemon.state("bad") == "held" and daemon.state("binary") == "held"
    assert len(daemon.events("campaign.held")) == 2
    assert published(daemon) == {}


def test_a_scheduled_campaign_waits_for_its_lead_time(
    tmp_path: Path, openssh: SftpServer
) -> None:
    offset = tmp_path / "clock-offset"
    send_at = (dt.datetime.now(PARIS) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    name = f"SEND-12345-{send_at:%Y%m%d-%H%M}-later.csv"
    daemon = Daemon(write_config(tmp_path, openssh), tmp_path / "agent", openssh,
                    env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    try:
        daemon.start()
        daemon.drop(name, rows(4))
        wait_until(lambda: daemon.state("later") == "scheduled", what="scheduled")
        polls = len(daemon.logged("remote_connected"))
        time.sleep(1.5)  # several polls (0.3 s) go by: nothing is uploaded
        assert published(daemon) == {} and daemon.state("later") == "scheduled"
        assert polls >= 1
        # Move the agent's clock to 9 minutes 55 before the send time: still too early.
        now = dt.datetime.now(PARIS)
        offset.write_text(str((send_at - now).total_seconds() - 10.5 * 60))
        time.sleep(1.0)
        assert published(daemon) == {}
        # Now within the lead time (10 minutes before): it goes.
        offset.write_text(str((send_at - now).total_seconds() - 9 * 60))
        wait_until(lambda: len(published(daemon)) == 1, what="uploaded at lead time")
        assert list(published(daemon)) == [name]
    finally:
        daemon.kill()


def test_an_opt_out_added_while_a_campaign_waits_is_not_uploaded(
    tmp_path: Path, openssh: SftpServer
) -> None:
    offset = tmp_path / "clock-offset"
    send_at = (dt.datetime.now(PARIS) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    name = f"SEND-12345-{send_at:%Y%m%d-%H%M}-optout.csv"
    config = write_config(tmp_path, openssh)
    daemon = Daemon(config, tmp_path / "agent", openssh,
                    env={"SFTPD_AGENT_CLOCK_OFFSET_FILE": str(offset)})
    try:
        daemon.start()
        daemon.drop(name, rows(5))
        wait_until(lambda: daemon.state("optout") == "scheduled", what="scheduled")
        done = subprocess.run([sys.executable, "-m", "sftpd_agent", "suppress", "add",
                               "--config", str(config), "+33610000002", "0610000004"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        offset.write_text(str((send_at - dt.datetime.now(PARIS)).total_seconds()))
        wait_until(lambda: len(published(daemon)) == 1, what="uploaded")
        body = archived_or_remote(daemon, name)
        assert b"+33610000002" not in body and b"+33610000004" not in body
        assert body.count(b"\r\n") == 3
        campaign = daemon.campaign("optout")
        assert campaign is not None and campaign["suppressed"] == 2
    finally:
        daemon.kill()


def archived_or_remote(daemon: Daemon, name: str) -> bytes:
    stem = name.removesuffix(".csv")
    for ext in (".csv", ".lock", ".done", ".reject"):
        path = daemon.server.send_dir / f"{stem}{ext}"
        if path.exists():
            return path.read_bytes()
    return archived_upload(daemon, name)


@pytest.mark.parametrize("point", ["before_upload", "mid_upload", "after_upload",
                                   "after_rename"])
def test_killed_at_every_step_each_campaign_is_published_exactly_once(
    daemon: Daemon, point: str
) -> None:
    # Big enough for several SFTP blocks, so that "mid_upload" is really in the middle.
    body = rows(20000, message="Bonjour, voici une offre speciale pour vous")
    daemon.outbox.mkdir(parents=True, exist_ok=True)
    daemon.start(SFTPD_AGENT_FAULT=point)
    daemon.drop("crash.csv", body)
    assert daemon.wait_exit(timeout=60) == -signal.SIGKILL
    assert daemon.logged("fault_injected", point=point)
    daemon.start()
    wait_until(lambda: daemon.state("crash") == "done", timeout=60, what="done after restart")
    sent = published(daemon)
    (name,) = sent
    assert sent[name] == hashlib.sha256(archived_upload(daemon, name)).hexdigest()
    assert not list(daemon.server.send_dir.glob("*.tmp"))
    assert daemon.stop() == 0


def test_sigterm_mid_work_loses_nothing(daemon: Daemon) -> None:
    daemon.start()
    for n in range(10):
        daemon.drop(f"term{n}.csv", rows(2000, start=n * 2000, prefix=f"T{n}x"))
    wait_until(lambda: daemon.logged("campaign_received"), what="work started")
    assert daemon.stop() == 0
    assert daemon.logged("agent_stopped")
    daemon.start()
    wait_until(lambda: len(published(daemon)) == 10, timeout=90, what="all 10 published")
    wait_until(lambda: all(c["state"] == "done" for c in daemon.status()["campaigns"]),
               what="all done")
    assert not list(daemon.outbox.glob("*.csv"))


def test_sighup_reloads_the_configuration(tmp_path: Path, daemon: Daemon) -> None:
    daemon.start()
    twenty_percent_bad = rows(8) + "x1;0612;Shop;x\r\nx2;0612;Shop;x\r\n"
    daemon.drop("before.csv", twenty_percent_bad)
    wait_until(lambda: daemon.state("before") == "held", what="held at 5%")
    text = daemon.config.read_text().replace(
        "[campaign]\n", "[campaign]\nmax_invalid_percent = 50\n")
    daemon.config.write_text(text)
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.logged("config_reloaded"), what="reloaded")
    daemon.drop("after.csv", twenty_percent_bad.replace("R", "S"))
    wait_until(lambda: daemon.state("after") == "done", what="accepted at 50%")


def test_the_notify_socket_hears_ready_and_watchdog(tmp_path: Path, daemon: Daemon) -> None:
    path = Path("/tmp") / f"sftpd-notify-{os.getpid()}-{time.monotonic_ns()}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.5)
    received: list[str] = []
    try:
        daemon.start(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="2000000")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                any("READY=1" in r for r in received)
                and sum("WATCHDOG=1" in r for r in received) >= 2):
            try:
                received.append(listener.recv(4096).decode())
            except TimeoutError:
                continue
        assert any("READY=1" in r for r in received), received
        assert sum("WATCHDOG=1" in r for r in received) >= 2, received
        daemon.stop()
        listener.settimeout(2)
        try:
            while True:
                received.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in r for r in received), received
    finally:
        listener.close()
        path.unlink(missing_ok=True)
