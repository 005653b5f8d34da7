"""Report ingestion on the local double, with the provider's real report writing.

The simulator appends STOP and SMS-MO lines over several steps, tears lines across writes
and rewrites one file in another order; each test reads after every step and checks, against
the provider's own files, that every line was ingested exactly once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import reports as reports_module
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.publication import Publisher
from sftpd_agent.pipeline.reports import Reports
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.report_lines import fold, parse_ack, parse_report_line, report_kind
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.simulator import Processor, SimulatorOptions
from sftpd_agent.store.journal import Store

MONDAY_10H = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # 10:00 in Paris
ROWS = 60


class Crash(Exception):
    pass


class World:
    """Agent folders, a provider folder driven by a manual clock, and a restartable agent."""

    def __init__(self, tmp: Path, **options: Any) -> None:
        self.now = MONDAY_10H
        self.provider = tmp / "provider"
        defaults: dict[str, Any] = {
            "lock_seconds": 0, "ack_delay": 10, "report_steps": 3, "report_interval": 10,
            "rewrite_step": 2, "rewrite_kind": "STOP", "stop_share": 0.2, "mo_share": 0.3,
            "torn_writes": True, "seed": 7,
        }
        self.processor = Processor(self.provider, SimulatorOptions(**{**defaults, **options}),
                                   clock=lambda: self.now)
        self.processor.make_layout()
        self.settings = Settings(service_id="12345", paths={"root": tmp / "agent"},
                                 campaign={"stable_seconds": 0, "stop_mention_policy": "off"})
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.start()

    def clock(self) -> dt.datetime:
        return self.now

    def emit(self, event: str, campaign: Any = None, **data: Any) -> None:
        self.events.append((event, data))

    def start(self) -> None:
        self.store = Store(self.settings.paths.state_db)
        self.campaigns = Campaigns(self.settings, self.store, self.clock, self.emit,
                                   suppressed=self.store.suppressed)
        self.publisher = Publisher(self.store, "Send", self.campaigns.part_file, self.clock,
                                   self.emit)
        self.reports = Reports(self.store, self.settings, self.clock, self.emit)

    def restart(self) -> None:
        self.store.close()
        self.start()

    def send(self, name: str = "promo.csv", rows: int = ROWS, first: int = 0) -> int:
        text = "".join(f"R{i};+3361234{i:04d};Shop;\"Bonjour; numero {i}\"\n"
                       for i in range(first, first + rows))
        dropped = self.settings.paths.outbox / name
        dropped.write_text(text, encoding="utf-8")
        campaign = self.campaigns.validate(self.campaigns.take(dropped))
        assert self.campaigns.prepare(campaign) is not None
        return campaign.id

    async def poll(self, remote: LocalRemote | None = None) -> None:
        remote = remote or LocalRemote(self.provider)
        await self.publisher.round(remote)
        await self.reports.round(remote)

    async def run_until_quiet(self, polls: int = 12) -> None:
        """Advance the provider's time step by step, polling after each."""
        for _ in range(polls):
            self.processor.step()
            await self.poll()
            self.now += dt.timedelta(seconds=5)

    def report_lines(self, prefix: str) -> list[str]:
        """Every complete line the provider wrote into ``prefix``-*.csv (final content)."""
        lines: list[str] = []
        for path in sorted((self.provider / "Report").glob(f"{prefix}-*.csv")):
            lines += [line for line in path.read_bytes().decode().split("\r\n")[:-1] if line]
        return lines

    def count(self, table: Literal["deliveries", "optouts", "replies"]) -> int:
        return self.store.count_rows(table)


def test_ack_lines_keep_semicolons_in_msg_and_trim_status() -> None:
    ack = parse_ack("R1 ; +33612345678 ;Shop;Promo; -20% ; today;2 ;sent;  op-uuid \r")
    assert ack is not None
    assert (ack.idremote, ack.msisdn, ack.oadc) == ("R1", "+33612345678", "Shop")
    assert ack.msg == "Promo; -20% ; today"
    assert (ack.idstatus, ack.status, ack.operator) == ("2", "sent", "op-uuid")
    assert parse_ack("R1;+33612345678;Shop;2 ;sent") is None


def test_report_lines_and_keywords() -> None:
    line = parse_report_line("+33612345678;20261123;1015;Stop; merci ;R7")
    assert line is not None
    assert (line.msisdn, line.date, line.hour, line.idremote) == (
        "+33612345678", "20261123", "1015", "R7")
    assert line.message == "Stop; merci"
    assert parse_report_line("+33612345678;20261123;1015;R7") is None
    assert fold("  Arrêt ") == fold("ARRET") == "arret"
    # One Kind (naming's); its word is the journal's and the inbox folder's, as before.
    assert report_kind("ACK-12345-20261123-1000-promo.csv") is Kind.ACK
    assert report_kind("SMSMO-12345-20261123-1000-promo.csv") is Kind.SMSMO
    assert (Kind.ACK.word, Kind.STOP.word, Kind.SMSMO.word) == ("ack", "stop", "mo")
    assert all(Kind.from_word(kind.word) is kind for kind in Kind)
    assert report_kind(".STOP-x.csv.1.part") is None
    assert report_kind("ACK-.csv") is None


async def test_every_report_line_is_ingested_exactly_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    pk = world.send()
    await world.run_until_quiet()

    # ACK: figures per status equal to the provider's file, campaign reported, file deleted.
    campaign = world.store.campaign(pk)
    assert campaign.state == CampaignState.REPORTED
    (part,) = world.store.parts(pk)
    ack_name = "ACK-" + part.remote_name.split("-", 1)[1]
    assert not (world.provider / "Report" / ack_name).exists()
    copy = world.settings.paths.inbox / "ack" / ack_name
    statuses = [line.split(";")[-2] for line in copy.read_bytes().decode().split("\r\n") if line]
    assert len(statuses) == ROWS
    expected = {s: statuses.count(s) for s in set(statuses)}
    assert campaign.summary["acks"] == expected
    assert sum(expected.values()) == ROWS and "failed" in expected
    assert [e for e, _ in world.events].count("campaign.reported") == 1

    # STOP: written over three steps, torn, rewritten once in reverse order.
    stops = world.report_lines("STOP")
    assert len(stops) >= 3
    assert world.count("optouts") == len(stops)
    stop_numbers = {line.split(";")[0] for line in stops}

    # SMS-MO: every reply once; those that are stop keywords opt out too.
    replies = world.report_lines("SMSMO")
    assert world.count("replies") == len(replies)
    keywords = {fold(k) for k in world.settings.reports.stop_keywords}
    mo_stops = {line.split(";")[0] for line in replies if fold(line.split(";")[3]) in keywords}
    assert mo_stops, "the seed should give keyword replies"
    assert world.store.suppressed() == stop_numbers | mo_stops
    entries = world.store.suppression_entries()
    assert {e["campaign"] for e in entries} == {campaign.campaign_id}
    assert {e["source"].split("-")[0] for e in entries} == {"STOP", "SMSMO"}
    assert all(e["added_at"].startswith("2026-11-23T09:") for e in entries)  # the reply's time

    # Events: batched per poll, and together they name every opt-out once.
    announced = [n for e, data in world.events if e == "optout.received" for n in data["numbers"]]
    assert sorted(announced) == sorted(stop_numbers | mo_stops)
    assert sum(d["count"] for e, d in world.events if e == "reply.received") == len(replies)

    # Raw copies hold exactly the provider's bytes.
    for kind, prefix in (("stop", "STOP"), ("mo", "SMSMO")):
        for path in (world.provider / "Report").glob(f"{prefix}-*.csv"):
            assert (world.settings.paths.inbox / kind / path.name).read_bytes() == \
                path.read_bytes()

    # Reading everything again from scratch changes nothing.
    before = (world.count("deliveries"), world.count("optouts"), world.count("replies"),
              world.store.suppressed())
    for cursor in world.store.report_cursors():
        if cursor.kind is not Kind.ACK:
            world.store.save_report_cursor(
                dataclasses.replace(cursor, offset=0, size=0, lines=0), world.now)
    events = len(world.events)
    await world.poll()
    assert before == (world.count("deliveries"), world.count("optouts"), world.count("replies"),
                      world.store.suppressed())
    assert len(world.events) == events


async def test_a_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    world = World(tmp_path, report_steps=2, rewrite_step=0, stop_share=0.3)
    world.send()
    report = world.provider / "Report"
    await world.run_until_quiet()
    (stop,) = report.glob("STOP-*.csv")
    complete = stop.read_bytes()
    stop.write_bytes(complete + b"+336999")  # a line being written
    world.now += dt.timedelta(seconds=1)
    os.utime(stop, (world.now.timestamp(), world.now.timestamp()))
    await world.poll()
    assert "+336999" not in "".join(world.store.suppressed())
    copy = world.settings.paths.inbox / "stop" / stop.name
    assert copy.read_bytes() == complete
    with stop.open("ab") as out:
        out.write(b"88877;20261123;1030;STOP;R99\r\n")
    await world.poll()
    assert "+33699988877" in world.store.suppressed()
    assert copy.read_bytes() == stop.read_bytes()


async def test_a_crash_mid_ingestion_counts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports_module, "CHUNK", 200)  # several chunks per file
    world = World(tmp_path, report_steps=1, rewrite_step=0, ack_delay=0, stop_share=0.5,
                  mo_share=0.5, torn_writes=False)
    pk = world.send()
    world.processor.step()
    await world.publisher.round(LocalRemote(world.provider))
    world.processor.step()
    world.now += dt.timedelta(seconds=15)
    world.processor.step()  # the ACK, STOP and SMS-MO files are all there now

    crashes = 0

    def crash(point: str, name: str) -> None:
        nonlocal crashes
        if point == "report_chunk" and crashes < 3:
            crashes += 1
            raise Crash(name)

    for _ in range(4):
        world.reports.hooks = crash
        try:
            await world.poll()
        except Crash:
            world.restart()
    await world.poll()
    await world.poll()
    assert crashes == 3
    assert world.count("deliveries") == ROWS
    assert world.count("optouts") == len(world.report_lines("STOP"))
    assert world.count("replies") == len(world.report_lines("SMSMO"))
    assert sum(world.store.campaign(pk).summary["acks"].values()) == ROWS
    assert world.store.campaign(pk).state == CampaignState.REPORTED
    assert not list((world.settings.paths.inbox).rglob(".*.tmp"))


async def test_a_stop_removes_the_number_from_a_campaign_waiting_for_upload(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, report_steps=1, rewrite_step=0, stop_share=0.2)
    world.send()
    await world.run_until_quiet(6)
    stopped = {line.split(";")[0] for line in world.report_lines("STOP")}
    assert stopped
    # The same recipients again, later: the opted-out ones are not uploaded.
    pk = world.send("promo-2.csv")
    (part,) = world.store.parts(pk)
    sent = world.campaigns.part_file(part).read_text("utf-8")
    assert world.store.campaign(pk).suppressed >= len(stopped)
    assert not any(number in sent for number in stopped)
    assert part.rows == ROWS - world.store.campaign(pk).suppressed


async def test_an_ack_of_another_tool_is_read_but_never_deleted(tmp_path: Path) -> None:
    world = World(tmp_path)
    report = world.provider / "Report" / "ACK-12345-20261123-1000-other.csv"
    report.write_bytes(b"X1;+33612345678;Shop;Hi;2 ;sent;op\r\n"
                       b"X2;+33612345679;Shop;Hi;3 ;failed;op")
    await world.poll()
    await world.poll()  # unchanged over a poll: the last line, with no line end, is taken
    assert world.count("deliveries") == 2
    assert report.exists()
    cursor = world.store.report_cursor(report.name)
    assert cursor is not None and cursor.complete_at is not None and cursor.campaign is None


async def test_a_missing_report_folder_does_not_stop_uploads(tmp_path: Path) -> None:
    world = World(tmp_path)
    (world.provider / "Report").rmdir()
    pk = world.send()
    await world.poll()
    assert world.store.campaign(pk).state == CampaignState.PUBLISHED


async def test_a_shrunk_file_is_read_again_without_double_counting(tmp_path: Path) -> None:
    world = World(tmp_path)
    report = world.provider / "Report" / "STOP-12345-20261123-1000-x.csv"
    lines = [f"+3361234{i:04d};20261123;1000;STOP;R{i}\r\n" for i in range(5)]
    report.write_text("".join(lines), encoding="utf-8")
    await world.poll()
    report.write_text(lines[4] + lines[0], encoding="utf-8")  # rewritten, shorter
    await world.poll()
    report.write_text(lines[4] + lines[0] + lines[0], encoding="utf-8")  # a real second STOP
    world.now += dt.timedelta(seconds=2)
    await world.poll()
    assert world.count("optouts") == 6
    assert len(world.store.suppressed()) == 5
    announced = [n for e, d in world.events if e == "optout.received" for n in d["numbers"]]
    assert len(announced) == 6  # five numbers, then the second STOP of one of them


async def test_a_repeated_line_is_counted_by_occurrence_across_batches_reads_and_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A line's occurrence is found per batch in the journal (no per-file counter in memory):
    # with a line or two per read, every copy of a line lands in another transaction.
    monkeypatch.setattr(reports_module, "CHUNK", 64)
    world = World(tmp_path)
    report = world.provider / "Report" / "STOP-12345-20261123-1000-x.csv"
    same = "+33612340001;20261123;1000;STOP;R1\r\n"
    other = [f"+3361234{i:04d};20261123;1000;STOP;R{i}\r\n" for i in range(2, 6)]

    async def read(text: str) -> int:
        report.write_text(text, encoding="utf-8")
        world.now += dt.timedelta(seconds=2)
        os.utime(report, (world.now.timestamp(), world.now.timestamp()))
        await world.poll()
        return world.count("optouts")

    first = same + other[0] + same + other[1] + same
    assert await read(first) == 5  # a first read: three copies, three lines
    assert await read(first + other[2] + same) == 7  # read on from the cursor: a 4th copy
    # Rewritten in another order, read again from its start: nothing new.
    rewritten = same * 4 + other[2] + other[1] + other[0]
    assert await read(rewritten) == 7
    assert await read(rewritten + same) == 8  # read on from the cursor: a 5th copy
    # Read again from its start (its local copy is gone), one new line: that line alone.
    (world.settings.paths.inbox / "stop" / report.name).unlink()
    assert await read(rewritten + same + other[3]) == 9
    assert len(world.store.suppressed()) == 5
    announced = [d for e, d in world.events if e == "optout.received"]
    assert sum(d["count"] for d in announced) == 9
    assert {n for d in announced for n in d["numbers"]} == {
        "+33612340001", *(line.split(";")[0] for line in other)}


async def test_a_part_still_on_its_way_keeps_its_campaign_from_reported(tmp_path: Path) -> None:
    """Part 1 done with its whole ACK, part 2 still processing (another send time, or slower):
    the round goes on without error, the campaign waits; reported once part 2 is done."""
    world = World(tmp_path)
    world.settings = world.settings.model_copy(update={"campaign": world.settings.campaign
                                                       .model_copy(update={
                                                           "max_rows_per_file": 30})})
    world.restart()
    world.send(rows=ROWS)
    remote = LocalRemote(world.provider)
    await world.publisher.round(remote)
    send = world.provider / "Send"
    first, second = sorted(p for p in send.iterdir() if p.suffix == ".csv")

    def ack(part: Path) -> None:
        lines = [f"{r[0]};{r[1]};{r[2]};{r[3]};2 ;sent;op\r\n" for r in
                 (line.split(";") for line in part.read_text(encoding="utf-8").splitlines())]
        name = part.with_suffix(".csv").name
        (world.provider / "Report" / ("ACK-" + name.split("-", 1)[1])).write_text(
            "".join(lines), encoding="utf-8")

    ack(first)
    first.rename(first.with_suffix(".done"))
    second.rename(second.with_suffix(".lock"))
    for _ in range(3):
        await world.poll(remote)  # no IllegalTransition escapes the round
    (campaign,) = world.store.campaigns()
    assert campaign.state == "processing"
    ack(second.with_suffix(".lock"))
    second.with_suffix(".lock").rename(second.with_suffix(".done"))
    for _ in range(3):
        await world.poll(remote)
    (campaign,) = world.store.campaigns()
    assert campaign.state == "reported"
    assert [name for name, _ in world.events].count("campaign.reported") == 1


# -- the local raw copy, written by a thread of its own ------------------------------------


def test_a_raw_copy_keeps_the_bytes_before_and_adds_the_new_ones_in_order(
        tmp_path: Path) -> None:
    final = tmp_path / "ACK-1.csv"
    final.write_bytes(b"l1\nl2\nold tail")
    copy = reports_module._RawCopy(final, keep=6)
    for n in range(3, 40):
        copy.write(f"l{n}\n".encode())
    assert final.read_bytes() == b"l1\nl2\nold tail"  # replaced only on commit
    copy.commit()
    assert final.read_bytes() == b"".join(f"l{n}\n".encode() for n in range(1, 40))
    assert [p.name for p in tmp_path.iterdir()] == ["ACK-1.csv"]
    copy.discard()  # after commit: nothing more happens
    assert final.read_bytes().startswith(b"l1\nl2\nl3\n")


def test_a_raw_copy_lets_its_pages_go_as_it_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DROP_EVERY bytes: made durable, its pages let go (to their end); the bytes the
    same, in order."""
    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(reports_module, "DROP_EVERY", 10)
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(("sync", 0, 0)))
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: calls.append(
        ("drop" if advice == os.POSIX_FADV_DONTNEED else "other", offset, length)))
    final = tmp_path / "ACK-2.csv"
    copy = reports_module._RawCopy(final, keep=0)
    for n in range(10):
        copy.write(b"line %d\n" % n)  # 7 bytes: let go after every second write
    copy.commit()
    assert final.read_bytes() == b"".join(b"line %d\n" % n for n in range(10))
    assert calls == [("sync", 0, 0), ("drop", 0, 0)] * 5


def test_a_raw_copy_whose_pages_cannot_be_synced_is_not_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(reports_module, "DROP_EVERY", 4)
    monkeypatch.setattr(os, "fdatasync", failing)
    final = tmp_path / "ACK-3.csv"
    final.write_bytes(b"old\n")
    copy = reports_module._RawCopy(final, keep=4)
    copy.write(b"new lines\n")
    with pytest.raises(OSError, match="Input/output error"):
        copy.commit()
    copy.discard()
    assert final.read_bytes() == b"old\n"


class _FullDisk:
    """A file whose second write and those after fail as a full disk does."""

    def __init__(self, out: Any) -> None:
        self.out, self.writes = out, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes >= 2:
            raise OSError(28, "No space left on device")
        return int(self.out.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.out, name)


@pytest.mark.parametrize("then", ["write", "commit"])
def test_a_raw_copy_that_cannot_be_written_raises_and_leaves_the_old_copy(
        tmp_path: Path, then: str) -> None:
    final = tmp_path / "STOP-1.csv"
    final.write_bytes(b"kept\n")
    copy = reports_module._RawCopy(final, keep=5)
    copy._out = _FullDisk(copy._out)  # type: ignore[assignment]
    copy.write(b"first\n")
    copy.write(b"second\n")  # fails in the writer's thread
    with pytest.raises(OSError, match="No space left"):
        if then == "write":
            copy.write(b"third\n")  # says so on the next write...
        else:
            copy.commit()  # ...or when the copy would be kept
    copy.discard()
    assert final.read_bytes() == b"kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["STOP-1.csv"]
