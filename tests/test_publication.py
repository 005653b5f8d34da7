"""Exactly-once publication, on the local double with the provider's real processing.

A "crash" here is an exception thrown at a protocol point, after which a brand-new store,
campaign engine and publisher (as after a restart) take over; the process-kill version of
the same tests runs the real daemon (tests/test_daemon.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import publication
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.publication import Publisher
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.simulator import Processor, SimulatorOptions
from sftpd_agent.simulator.processing import read_journal
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import Part

MONDAY_10H = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # 10:00 in Paris


class Crash(BaseException):
    """The process dying at a fault point (production's hook SIGKILLs): no boundary of the
    agent may catch it, so it is not an Exception."""


class World:
    """The agent's folders, a provider folder, and the pieces a restart recreates."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "agent"
        self.provider = tmp / "provider"
        self.processor = Processor(self.provider, SimulatorOptions(lock_seconds=0, ack_delay=0,
                                                                   seed=1),
                                   clock=lambda: MONDAY_10H)
        self.processor.make_layout()
        self.settings = Settings(service_id="12345", paths={"root": self.root},
                                 campaign={"stable_seconds": 0, "stop_mention_policy": "off"})
        self.events: list[str] = []
        self.start()

    def start(self) -> None:
        self.store = Store(self.settings.paths.state_db)
        self.campaigns = Campaigns(self.settings, self.store, lambda: MONDAY_10H,
                                   lambda event, campaign=None, **_: self.events.append(event))
        self.publisher = Publisher(self.store, "Send", self.campaigns.part_file,
                                   lambda: MONDAY_10H, self.campaigns.events)

    def restart(self) -> None:
        self.store.close()
        self.start()

    def drop(self, name: str, text: str) -> Path:
        path = self.settings.paths.outbox / name
        path.write_text(text, encoding="utf-8")
        return path


ROWS = "".join(f"R{i};+3361234{i:04d};Shop;Bonjour numero {i}\n" for i in range(50))


def prepared(world: World, name: str = "promo.csv") -> list[Part]:
    campaign = world.campaigns.take(world.drop(name, ROWS))
    campaign = world.campaigns.validate(campaign)
    assert campaign.state == CampaignState.SCHEDULED
    parts = world.campaigns.prepare(campaign)
    assert parts is not None
    return parts


async def test_a_campaign_goes_to_done_through_tmp_and_rename(tmp_path: Path) -> None:
    world = World(tmp_path)
    (part,) = prepared(world)
    expected = world.campaigns.part_file(part).read_bytes()
    remote = LocalRemote(world.provider)
    await world.publisher.round(remote)
    assert world.store.parts()[0].state == PartState.PUBLISHED
    assert (world.provider / "Send" / part.remote_name).read_bytes() == expected
    world.processor.step()  # .csv -> .lock -> .done
    await world.publisher.round(remote)
    assert world.store.campaign(part.campaign).state == CampaignState.DONE
    assert world.events.count("campaign.published") == 1
    assert world.events[-1] == "campaign.done"
    (entry,) = read_journal(world.processor.journal_path)
    assert entry.sha256 == hashlib.sha256(expected).hexdigest()
    assert not list((world.provider / "Send").glob("*.tmp"))


@pytest.mark.parametrize("point", ["before_upload", "mid_upload", "after_upload",
                                   "after_rename"])
async def test_a_crash_at_any_point_ends_published_exactly_once(
    tmp_path: Path, point: str
) -> None:
    world = World(tmp_path)
    parts = prepared(world)
    expected = world.campaigns.part_file(parts[0]).read_bytes()

    def crash(reached: str, part: Part) -> None:
        if reached == point:
            raise Crash(point)

    world.publisher.hooks = crash
    remote = LocalRemote(world.provider, block_size=512)  # several blocks: a real middle
    with pytest.raises(Crash):
        await world.publisher.round(remote)
    world.processor.step()  # the provider works on whatever is there meanwhile
    world.restart()
    for _ in range(3):
        await world.publisher.round(LocalRemote(world.provider))
        world.processor.step()
    journal = read_journal(world.processor.journal_path)
    assert [e.name for e in journal] == [parts[0].remote_name]
    assert journal[0].sha256 == hashlib.sha256(expected).hexdigest()
    assert journal[0].verdict == "done"
    assert world.store.campaign(parts[0].campaign).state == CampaignState.DONE
    assert not list((world.provider / "Send").glob("*.tmp"))


async def test_a_name_already_on_the_server_is_never_uploaded_again(tmp_path: Path) -> None:
    world = World(tmp_path)
    (part,) = prepared(world)
    (world.provider / "Send" / f"{part.stem}.done").write_bytes(b"someone else's")
    await world.publisher.round(LocalRemote(world.provider))
    assert world.store.parts()[0].state == PartState.DONE
    assert (world.provider / "Send" / f"{part.stem}.done").read_bytes() == b"someone else's"
    assert not (world.provider / "Send" / part.remote_name).exists()


async def test_rename_onto_a_present_target_means_already_published(tmp_path: Path) -> None:
    world = World(tmp_path)
    (part,) = prepared(world)
    remote = LocalRemote(world.provider)
    original = remote.list

    async def listing_that_misses_it(directory: str) -> list:  # type: ignore[type-arg]
        entries = await original(directory)
        # The server got the .csv between our listing and our rename.
        (world.provider / "Send" / part.remote_name).write_bytes(b"first copy")
        return entries

    remote.list = listing_that_misses_it  # type: ignore[method-assign]
    await world.publisher.round(remote)
    assert world.store.parts()[0].state == PartState.PUBLISHED
    assert (world.provider / "Send" / part.remote_name).read_bytes() == b"first copy"
    assert not list((world.provider / "Send").glob("*.tmp"))


async def test_suppression_is_applied_at_upload_time(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.campaigns.validate(world.campaigns.take(world.drop("p.csv", ROWS)))
    world.campaigns.suppressed = lambda: {"+33612340003", "+33612340007"}
    parts = world.campaigns.prepare(campaign)
    assert parts is not None
    body = world.campaigns.part_file(parts[0]).read_bytes().decode()
    assert "+33612340003" not in body and "+33612340007" not in body
    assert body.count("\r\n") == 48
    assert world.store.campaign(campaign.id).suppressed == 2


async def test_big_campaigns_become_parts(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.settings = world.settings.model_copy(update={
        "campaign": world.settings.campaign.model_copy(update={"max_rows_per_file": 20})})
    world.restart()  # the pieces built again with the new settings
    parts = prepared(world, "SEND-12345-20261123-1000-promo.csv")
    assert [p.remote_name for p in parts] == [
        f"SEND-12345-20261123-1000-promoP{i}.csv" for i in (1, 2, 3)]
    assert [p.rows for p in parts] == [20, 20, 10]
    await world.publisher.round(LocalRemote(world.provider))
    world.processor.step()
    await world.publisher.round(LocalRemote(world.provider))
    assert world.store.campaign(parts[0].campaign).state == CampaignState.DONE


async def test_held_files_land_in_failed_with_their_reasons(tmp_path: Path) -> None:
    world = World(tmp_path)
    bad = "".join(f"R{i};0612;Shop;x\n" for i in range(5))
    held = world.campaigns.validate(world.campaigns.take(world.drop("bad.csv", bad)))
    assert held.state == CampaignState.HELD
    failed = world.settings.paths.failed
    assert (failed / "bad.csv").read_text() == bad
    assert (failed / "bad.csv.errors.csv").read_text().startswith("line;code;field;value;detail")
    binary = world.campaigns.validate(world.campaigns.take(world.drop("bin.csv", "a\0b\n")))
    assert binary.state == CampaignState.HELD
    assert "NUL" in (failed / "bin.csv.reason.txt").read_text()
    assert world.events.count("campaign.held") == 2


async def test_files_taken_before_a_crash_are_recovered(tmp_path: Path) -> None:
    world = World(tmp_path)
    dropped = world.drop("late.csv", ROWS)
    target = world.campaigns.incoming / "123-late.csv"
    dropped.rename(target)  # taken, then the crash before it was recorded
    world.restart()
    (found,) = world.campaigns.recover()
    campaign = world.campaigns.record(found)
    assert campaign.file == "late.csv"
    assert world.campaigns.recover() == []


async def test_published_campaigns_are_archived_with_a_summary(tmp_path: Path) -> None:
    world = World(tmp_path)
    (part,) = prepared(world)
    await world.publisher.round(LocalRemote(world.provider))
    (campaign,) = world.campaigns.unarchived()
    folder = world.campaigns.archive(campaign)
    assert folder is not None
    assert (folder / "promo.csv").read_text() == ROWS
    assert (folder / part.remote_name).exists()
    assert '"sha256"' in (folder / "promo.summary.json").read_text()
    assert not world.campaigns.folder(campaign).exists()


async def test_a_campaign_not_uploaded_in_time_is_held_as_stale(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.campaigns.validate(world.campaigns.take(world.drop("late.csv", ROWS)))
    late = MONDAY_10H + dt.timedelta(minutes=61)
    world.campaigns.clock = lambda: late
    assert world.campaigns.prepare(campaign) is None
    held = world.store.campaign(campaign.id)
    assert held.state == CampaignState.HELD and held.reason is not None
    assert "stale" in held.reason
    assert (world.settings.paths.failed / "late.csv.reason.txt").exists()
    assert world.store.parts() == []


async def test_everyone_opted_out_holds_the_campaign(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.campaigns.validate(world.campaigns.take(world.drop("p.csv", ROWS)))
    world.campaigns.suppressed = lambda: {f"+3361234{i:04d}" for i in range(50)}
    assert world.campaigns.prepare(campaign) is None
    assert world.store.campaign(campaign.id).state == CampaignState.HELD


async def test_a_name_already_used_by_another_campaign_gets_another(tmp_path: Path) -> None:
    world = World(tmp_path)
    name = "SEND-12345-20261123-1000-same.csv"
    (first,) = prepared(world, name)
    second = world.campaigns.validate(world.campaigns.take(world.drop(name, ROWS)))
    parts = world.campaigns.prepare(second)
    assert parts is not None
    (other,) = parts
    assert other.remote_name != first.remote_name, "never the name of another campaign"
    await world.publisher.round(LocalRemote(world.provider))
    sent = world.provider / "Send"
    assert {p.name for p in sent.iterdir()} >= {first.remote_name, other.remote_name}


@pytest.mark.parametrize("big", [False, True])
async def test_a_big_upload_hands_its_memory_back_once_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool) -> None:
    """After a part of ``BIG_UNIT`` bytes or more is published, the daemon hands the
    upload's freed memory back (``memory.give_back``); a small one does not pay for it."""
    given: list[PartState] = []
    world = World(tmp_path)
    (part,) = prepared(world)
    monkeypatch.setattr(publication, "BIG_UNIT", part.size if big else part.size + 1)
    monkeypatch.setattr(publication, "give_back",
                        lambda: given.append(world.store.parts()[0].state))
    await world.publisher.round(LocalRemote(world.provider))
    assert given == ([PartState.PUBLISHED] if big else [])
