"""A campaign of several send times (recipients' own hours) prepares each group at its own
upload time: the suppression list is applied to each file then, not at the first group's time.

The campaign engine and publisher on the local double, with a clock the test moves."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.commands.status import _group_line
from sftpd_agent.config import Settings
from sftpd_agent.pipeline import multicore
from sftpd_agent.pipeline.campaigns import Campaigns, _records
from sftpd_agent.pipeline.intake import take_in
from sftpd_agent.pipeline.publication import Publisher
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.rules.upload_file import upload_bytes
from sftpd_agent.rules.validation import Row
from sftpd_agent.simulator import Processor, SimulatorOptions
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import Campaign

C = CampaignState
PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
# Tuesday 15 December 2026, 20:00 in Paris: open there and in Martinique, 23:00 in Reunion
# (closed): Reunion's rows go on Wednesday at 08:00 Reunion time (05:00 Paris).
FIRST = dt.datetime(2026, 12, 15, 20, 0, tzinfo=PARIS)
SECOND = dt.datetime(2026, 12, 16, 8, 0, tzinfo=REUNION)
LEAD = dt.timedelta(minutes=10)
NAME = "SEND-12345-20261215-2000-zones.csv"
ROWS = ("m1;+33612345678;Shop;Offre\r\n"
        "r1;+262692123456;Shop;Offre\r\n"
        "m2;+33612345679;Shop;Offre\r\n"
        "r2;+262692123457;Shop;Offre\r\n")


class World:
    def __init__(self, tmp: Path) -> None:
        self.now = FIRST - dt.timedelta(hours=2)
        self.suppression: set[str] = set()
        self.events: list[str] = []
        self.provider = tmp / "provider"
        self.processor = Processor(self.provider, SimulatorOptions(lock_seconds=0, ack_delay=0,
                                                                   seed=1),
                                   clock=lambda: self.now)
        self.processor.make_layout()
        self.settings = Settings(service_id="12345", paths={"root": tmp / "agent"}, campaign={
            "stable_seconds": 0, "marketing": True, "stop_mention_policy": "off",
            "upload_lead_minutes": 10})
        self.store = Store(self.settings.paths.state_db)
        self.campaigns = Campaigns(self.settings, self.store, lambda: self.now,
                                   lambda event, campaign=None, **_: self.events.append(event),
                                   suppressed=lambda: self.suppression)
        self.publisher = Publisher(self.store, "Send", self.campaigns.part_file,
                                   lambda: self.now, self.campaigns.events)

    def scheduled(self, rows: str = ROWS) -> Campaign:
        dropped = self.settings.paths.outbox / NAME
        dropped.write_text(rows, encoding="utf-8")
        campaign = self.campaigns.validate(self.campaigns.take(dropped))
        assert campaign.state == C.SCHEDULED
        return campaign

    def at(self, moment: dt.datetime) -> list[Campaign]:
        self.now = moment.astimezone(dt.UTC)
        return self.campaigns.due()

    async def publish(self) -> None:
        for _ in range(3):
            await self.publisher.round(LocalRemote(self.provider))
            self.processor.step()

    def sent(self) -> dict[str, list[str]]:
        """The provider's files and the IDREMOTEs in each, as the provider received them."""
        sent = {}
        for path in sorted((self.provider / "Send").iterdir()):
            if path.suffix in (".csv", ".lock", ".done", ".reject"):
                sent[path.stem] = [line.split(";")[0] for line in
                                   path.read_text(encoding="utf-8").splitlines()]
        return sent


async def test_each_group_is_prepared_at_its_own_time_with_the_list_of_then(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    campaign = world.scheduled()
    assert world.at(FIRST - LEAD - dt.timedelta(minutes=1)) == []
    (due,) = world.at(FIRST - LEAD)
    parts = world.campaigns.prepare(due)
    assert parts is not None and [p.rows for p in parts] == [2]
    campaign = world.store.campaign(campaign.id)
    assert campaign.state == C.UPLOADING
    assert campaign.next_upload_at == SECOND - LEAD
    await world.publish()
    # The first file is done; the campaign is not, while Reunion's group waits.
    assert world.store.campaign(campaign.id).state == C.PROCESSING
    assert world.sent() == {"SEND-12345-20261215-2000-zones": ["m1", "m2"]}
    assert world.at(SECOND - LEAD - dt.timedelta(minutes=1)) == []
    assert world.campaigns.unarchived() == []  # its rows are still needed
    world.suppression.add("+262692123457")  # a STOP between the two send times
    (due,) = world.at(SECOND - LEAD)
    later = world.campaigns.prepare(due)
    assert later is not None and [p.rows for p in later] == [1]
    assert later[0].number == 2
    await world.publish()
    campaign = world.store.campaign(campaign.id)
    assert campaign.state == C.DONE and campaign.next_upload_at is None
    assert campaign.suppressed == 1
    assert world.sent()["SEND-12345-20261216-0500-zones"] == ["r1"]
    assert world.events.count("campaign.done") == 1
    assert world.events.count("campaign.published") == 1
    groups = campaign.summary["groups"]
    assert [(g["state"], g["rows_sent"], g["suppressed"]) for g in groups] == [
        ("uploaded", 2, 0), ("uploaded", 1, 1)]
    (archived,) = world.campaigns.unarchived()
    folder = world.campaigns.archive(archived)
    assert folder is not None
    assert (folder / "dropped.csv").read_text(encoding="utf-8").splitlines() == [
        "idremote;msisdn;reason", "r2;+262692123457;suppressed"]


async def test_a_rejected_file_stops_the_groups_still_to_go(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.scheduled()
    (due,) = world.at(FIRST - LEAD)
    (part,) = world.campaigns.prepare(due) or []
    world.campaigns.transitions.part(part, PartState.REJECTED)
    campaign = world.store.campaign(campaign.id)
    assert campaign.state == C.REJECTED and campaign.next_upload_at is None
    assert world.at(SECOND) == []
    later = campaign.summary["groups"][1]
    assert later["state"] == "skipped" and "rejected" in later["reason"]


async def test_a_later_group_past_its_time_is_skipped_not_sent_late(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.scheduled()
    (due,) = world.at(FIRST - LEAD)
    world.campaigns.prepare(due)
    await world.publish()
    # The agent was down through Reunion's send time and well past stale_after_minutes.
    (due,) = world.at(SECOND + dt.timedelta(hours=3))
    assert world.campaigns.prepare(due) is None
    campaign = world.store.campaign(campaign.id)
    assert campaign.next_upload_at is None
    assert campaign.state == C.DONE  # what was sent is done; the rest was not sent late
    later = campaign.summary["groups"][1]
    assert later["state"] == "skipped" and later["reason"].startswith("stale")
    assert list(world.sent()) == ["SEND-12345-20261215-2000-zones"]


async def test_a_later_group_with_everyone_opted_out_sends_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    campaign = world.scheduled()
    (due,) = world.at(FIRST - LEAD)
    world.campaigns.prepare(due)
    await world.publish()
    world.suppression.update({"+262692123456", "+262692123457"})
    (due,) = world.at(SECOND - LEAD)
    assert world.campaigns.prepare(due) is None
    campaign = world.store.campaign(campaign.id)
    assert campaign.state == C.DONE and campaign.suppressed == 2
    assert campaign.summary["groups"][1]["state"] == "empty"


async def test_a_first_group_with_everyone_opted_out_waits_for_the_next(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    campaign = world.scheduled()
    world.suppression.update({"+33612345678", "+33612345679"})
    (due,) = world.at(FIRST - LEAD)
    assert world.campaigns.prepare(due) is None
    campaign = world.store.campaign(campaign.id)
    assert campaign.state == C.SCHEDULED and campaign.upload_at == SECOND - LEAD
    (due,) = world.at(SECOND - LEAD)
    parts = world.campaigns.prepare(due)
    assert parts is not None and [p.rows for p in parts] == [2]


def test_the_one_pass_split_keeps_every_record_byte_for_byte(tmp_path: Path) -> None:
    messages = ['simple', 'a;b', 'dit "oui"', 'ligne 1\nligne 2', '"\n;\n"', 'fin\r\nok',
                '', 'x' * 500]
    rows = [Row(i, f"ID{i}", f"+3361234{i:04d}", "Shop", text, 1)
            for i, text in enumerate(messages)]
    data = upload_bytes(rows)
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    records = list(_records(path))
    assert b"".join(r for _, _, r in records) == data
    assert [(i, m) for i, m, _ in records] == [(r.idremote, r.msisdn) for r in rows]
    parsed = list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter=";"))
    assert [p[3] for p in parsed] == messages


def test_status_says_where_each_group_is() -> None:
    base = {"zones": ["RE"], "rows": 2, "send_at": "2026-12-16T05:00:00+01:00",
            "local": {"RE": "2026-12-16T08:00:00+04:00"}, "remote_names": ["SEND-x.csv"]}
    assert _group_line(base).endswith("-> SEND-x.csv [waiting]")
    assert _group_line({**base, "state": "uploaded", "rows_sent": 1, "suppressed": 1}).endswith(
        "[uploaded: 1 sent, 1 suppressed]")
    assert _group_line({**base, "state": "skipped", "reason": "stale: x"}).endswith(
        "[skipped: stale: x]")


@pytest.mark.parametrize("foreign", ["send", "drop"])
def test_the_multi_core_check_counts_zones_as_the_single_pass_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, foreign: str,
) -> None:
    """check counts the rows per time zone from the slices' numbers, never reading the file
    a second time: the groups, foreign figures and hold are the single pass's."""
    monkeypatch.setattr(multicore, "MIN_BYTES", 1)
    rng = random.Random(16)
    heads = ["+3361", "+33 7", "0692", "+596696", "+590690", "+687", "+32470", "+32471",
             "06", "+262639"]
    lines = []
    for i in range(3000):
        number = rng.choice(heads) + "".join(rng.choice("0123456789") for _ in range(6))
        lines.append(f"ID{i};{number};Shop;Offre {i} STOP au 36180\r\n")
    path = tmp_path / "SEND-12345-20261215-2000-zones.csv"
    path.write_text("".join(lines), encoding="utf-8")
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": True, "foreign": foreign,
                                  "max_invalid_percent": 100})
    now = FIRST - dt.timedelta(hours=2)
    parallel = take_in(path, settings, now=now)
    single = take_in(path, settings, now=now, on_row=lambda row: None)
    assert parallel.summary.as_dict() == single.summary.as_dict()
    assert parallel.groups == single.groups and len(single.groups) >= 3
    assert (parallel.foreign, parallel.foreign_dropped, parallel.hold_reason) == (
        single.foreign, single.foreign_dropped, single.hold_reason)
    assert single.foreign > 0
