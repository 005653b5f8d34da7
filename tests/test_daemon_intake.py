"""Taking in a new file never waits behind an upload: intake and the remote round take
different locks (the in-process agent, a remote whose uploads are slow)."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sftpd_agent import daemon as daemon_module
from sftpd_agent.clock import system_clock
from sftpd_agent.config import Settings, SettingsSource
from sftpd_agent.daemon import Agent
from sftpd_agent.remote.base import Remote
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import Campaign

UPLOAD_SECONDS = 3.0


class SlowRemote(LocalRemote):
    """Uploads take UPLOAD_SECONDS: long enough to see whether intake waits."""

    def __init__(self, root: Path, finished: list[float]) -> None:
        super().__init__(root)
        self.finished = finished

    async def upload(self, local: Path, remote: str, *,
                     progress: Callable[[int], None] | None = None) -> int:
        await asyncio.sleep(UPLOAD_SECONDS)
        written = await super().upload(local, remote, progress=progress)
        self.finished.append(time.monotonic())
        return written


def rows(prefix: str) -> str:
    return "".join(f"{prefix}{i};+3361234{i:04d};Shop;Bonjour {i}\r\n" for i in range(5))


async def test_a_file_dropped_during_an_upload_is_taken_at_once(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "service_id": "12345", "paths": {"root": str(tmp_path / "agent")},
        "remote": {"poll_seconds": 0.2},
        "campaign": {"marketing": False, "stable_seconds": 0}})
    provider = tmp_path / "provider"
    for folder in ("Send", "Report"):
        (provider / folder).mkdir(parents=True)
    finished: list[float] = []

    async def connect(_: Settings) -> Remote:
        return SlowRemote(provider, finished)

    store = Store(settings.paths.state_db)
    agent = Agent(SettingsSource(settings), store=store, connect=connect, clock=system_clock)
    running = asyncio.create_task(agent.run())
    outbox = settings.paths.outbox
    try:
        deadline = time.monotonic() + 20
        while not outbox.is_dir() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (outbox / "first.csv").write_text(rows("A"))
        while not list((provider / "Send").glob("*.tmp")) and not _uploading(store) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert _uploading(store), "the first campaign never started uploading"
        (outbox / "second.csv").write_text(rows("B"))
        scheduled_at = None
        while time.monotonic() < deadline:
            states = {c.campaign_id: c.state for c in store.campaigns()}
            if states.get("second") is not None and states["second"] != CampaignState.RECEIVED:
                scheduled_at = time.monotonic()
                break
            await asyncio.sleep(0.02)
        assert scheduled_at is not None, "the second file was never taken in"
        assert not finished or scheduled_at < finished[0], (
            "the second file waited for the first one's upload")
    finally:
        agent.stop.set()
        assert await asyncio.wait_for(running, 30) == 0


def _uploading(store: Store) -> bool:
    return any(c.state == CampaignState.UPLOADING for c in store.campaigns())


async def test_a_prepare_short_of_space_waits_then_goes_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The campaign's upload step fails for want of space: it waits (reason said in
    status), is tried again with backoff, goes out once, and the reason goes."""
    monkeypatch.setattr(daemon_module, "RETRY_SECONDS", (0.3, 1.0))
    settings = Settings.model_validate({
        "service_id": "12345", "paths": {"root": str(tmp_path / "agent")},
        "remote": {"poll_seconds": 0.2},
        "campaign": {"marketing": False, "stable_seconds": 0}})
    provider = tmp_path / "provider"
    for folder in ("Send", "Report"):
        (provider / folder).mkdir(parents=True)

    async def connect(_: Settings) -> Remote:
        return LocalRemote(provider)

    store = Store(settings.paths.state_db)
    agent = Agent(SettingsSource(settings), store=store, connect=connect, clock=system_clock)
    real = agent.campaigns.prepare
    failures = iter([OSError(errno.ENOSPC, "No space left on device")] * 2)
    reasons: list[str | None] = []

    def prepare(campaign: Campaign) -> object:
        error = next(failures, None)
        if error is not None:
            raise error
        reasons.append(store.campaign(campaign.id).reason)
        return real(campaign)

    monkeypatch.setattr(agent.campaigns, "prepare", prepare)
    running = asyncio.create_task(agent.run())
    try:
        deadline = time.monotonic() + 20
        while not settings.paths.outbox.is_dir() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (settings.paths.outbox / "promo.csv").write_text(rows("A"))
        while not list((provider / "Send").glob("*.csv")) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [p.name for p in (provider / "Send").iterdir()] == [
            p.name for p in (provider / "Send").glob("*-promo.csv")]
        assert reasons and (reasons[0] or "").startswith("waiting (prepare failed: No space")
        (campaign,) = store.campaigns()
        assert campaign.reason is None  # said while it waited, gone once it went
    finally:
        agent.stop.set()
        assert await asyncio.wait_for(running, 30) == 0
