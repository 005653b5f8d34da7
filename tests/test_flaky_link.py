"""A flaky link still delivers: a connection that moved data resets the backoff.

First the session alone, with an injected clock: a connection lost after the server answered
is retried at the base delay; a cut before any answer, or a server's refusal, backs off as
before. Then the real daemon behind a loopback
proxy that cuts its first eight connections in the middle of uploads, with the default
backoff (1 s doubling to 300 s): every campaign is published exactly once within a minute of
the link settling (eight cuts counted as eight consecutive failures would wait 64 to 128 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftpd_agent.errors import RetryableRemoteError
from sftpd_agent.remote.base import ConnectionLost, Remote
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.remote.session import CUT_UNREACHABLE_AFTER, RemoteSession
from sftpd_agent.rules.backoff import Backoff
from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.faults import FaultProxy, ProxyThread
from tests.servers import SftpServer

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
CAMPAIGNS = 8
CUTS = 8


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def session_over(tmp_path: Path, clock: Clock) -> tuple[RemoteSession, list[str]]:
    (tmp_path / "provider" / "Send").mkdir(parents=True, exist_ok=True)
    events: list[str] = []

    async def connect() -> Remote:
        return LocalRemote(tmp_path / "provider")

    return RemoteSession(connect, clock, lambda event, *_, **__: events.append(event),
                         Backoff(base=1.0, ceiling=300.0)), events


async def test_a_cut_after_progress_is_retried_at_the_base_delay(tmp_path: Path) -> None:
    clock = Clock()
    session, events = session_over(tmp_path, clock)
    local = tmp_path / "part.csv"
    local.write_bytes(b"x" * 100_000)

    async def upload_then_cut(remote: Remote) -> None:
        await remote.list("Send")
        await remote.upload(local, "Send/part.tmp")
        raise ConnectionLost("upload: Connection reset by peer")

    for _ in range(CUTS):
        assert not await session.attempt(upload_then_cut)
        assert session.failures == 1
        assert session.next_attempt is not None
        assert (session.next_attempt - clock.now).total_seconds() <= 1.0
        clock.now = session.next_attempt
    assert "remote.unreachable" not in events, "a link that works between cuts is not down"

    # Cut every time, though, it is reported at last, and its recovery too.
    for _ in range(CUT_UNREACHABLE_AFTER - CUTS):
        assert not await session.attempt(upload_then_cut)
        assert session.next_attempt is not None
        clock.now = session.next_attempt
    assert events.count("remote.unreachable") == 1
    assert session.failures == 1, "still retried at the base delay"

    async def whole(remote: Remote) -> None:
        await remote.list("Send")

    assert await session.attempt(whole)
    assert events.count("remote.recovered") == 1


async def test_cuts_before_any_answer_and_refusals_still_back_off(tmp_path: Path) -> None:
    clock = Clock()
    session, events = session_over(tmp_path, clock)

    async def cut_at_once(_: Remote) -> None:
        raise ConnectionLost("list Send: Connection reset by peer")

    async def list_then_refused(remote: Remote) -> None:
        await remote.list("Send")
        raise RetryableRemoteError("upload: No space left on device")  # the server said no

    for step in (cut_at_once, list_then_refused):
        session.failures = 0
        for _ in range(CUTS):
            assert not await session.attempt(step)
            assert session.next_attempt is not None
            clock.now = session.next_attempt
        assert session.failures == CUTS, step.__name__
        assert session.backoff.delay(CUTS, permanent=False) >= 64
    assert "remote.unreachable" in events

    # One connection that answered, then was cut, starts the count again.
    async def read_then_cut(remote: Remote) -> None:
        (tmp_path / "provider" / "Send" / "x").write_bytes(b"report")
        await remote.read("Send/x", 0)
        raise ConnectionLost("read: Broken pipe")

    assert not await session.attempt(read_then_cut)
    assert session.failures == 1


async def test_a_step_may_report_progress_itself(tmp_path: Path) -> None:
    clock = Clock()
    session, _ = session_over(tmp_path, clock)

    async def cut(_: Remote) -> None:
        raise ConnectionLost("connection lost")

    for _ in range(3):
        assert not await session.attempt(cut)
        assert session.next_attempt is not None
        clock.now = session.next_attempt
    assert session.failures == 3

    async def progress_then_cut(_: Remote) -> None:
        session.progress()
        raise ConnectionLost("connection lost")

    assert not await session.attempt(progress_then_cut)
    assert session.failures == 1


# --- the real daemon behind a proxy that cuts its first eight connections mid-upload -------


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=12, lock_seconds=0, ack_delay=10**6, stop_share=0, mo_share=0)


@pytest.fixture
def flaky(tmp_path: Path, openssh: SftpServer) -> Iterator[tuple[Daemon, FaultProxy]]:
    with ProxyThread(openssh.port, seed=9, cut_after=(100_000, 400_000),
                     max_cuts=CUTS) as proxy:
        known = tmp_path / "known_hosts_proxy"
        known.write_text(openssh.known_hosts.read_text().replace(
            f"]:{openssh.port} ", f"]:{proxy.port} "))
        # The default backoff (1 s base, 300 s ceiling): what an operator runs.
        config = write_config(tmp_path, openssh, remote={
            "port": proxy.port, "known_hosts": str(known), "operation_timeout_seconds": 5})
        daemon = Daemon(config, tmp_path / "agent", openssh)
        try:
            yield daemon, proxy
        finally:
            daemon.kill()


def test_a_flaky_link_delivers_every_campaign_once_soon_after_it_settles(
    flaky: tuple[Daemon, FaultProxy],
) -> None:
    daemon, proxy = flaky
    daemon.start()
    for n in range(CAMPAIGNS):  # about 700 KB each: every cut falls in an upload
        daemon.drop(f"flaky{n}.csv", rows(18_000, start=n * 100_000, prefix=f"F{n}x"))
    wait_until(lambda: proxy.cuts >= CUTS, timeout=120, what=f"{CUTS} cuts")
    settled = time.monotonic()
    wait_until(lambda: len(daemon.journal()) >= CAMPAIGNS, timeout=60,
               what="every campaign published within a minute of the link settling")
    took = time.monotonic() - settled
    names = [entry.name for entry in daemon.journal()]
    assert len(names) == CAMPAIGNS and len(set(names)) == CAMPAIGNS, names
    for entry in daemon.journal():
        (archived,) = (daemon.root / "archive").glob(f"*/{entry.name}")
        assert hashlib.sha256(archived.read_bytes()).hexdigest() == entry.sha256
    assert not list(daemon.server.send_dir.glob("*.tmp"))
    failed = daemon.logged("remote_failed")
    assert len(failed) >= CUTS
    assert all(line["retry_in"] <= 1.0 for line in failed if line.get("progressed")), failed
    assert sum(1 for line in failed if line.get("progressed")) >= CUTS - 1, \
        "the cuts fell after the server had answered"
    assert all("upload" in line["error"] for line in failed), "cut in the middle of uploads"
    assert max(line["failures"] for line in failed) < 4, "no cut pushed the next try out"
    print(f"published {CAMPAIGNS} campaigns {took:.1f} s after the {CUTS}th cut")
