"""Remote names are data, never paths: odd report names against sshd and the simulator.

The provider's ``Report/`` folder is filled with what nobody planned for: a name that is not
UTF-8, a folder named like a report, ``..``-like names, a 250-byte name, a symbolic link, a
validly named STOP file full of binary data, and beside them a real STOP file whose numbers
must reach the suppression list. A listing of unknown file types (an SFTP v3 server that
sends no type bits) still shows the files; a listing that misses a part's names still never
leads to an upload again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from sftpd_agent.config import Settings
from sftpd_agent.errors import RetryableRemoteError
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.publication import Publisher
from sftpd_agent.pipeline.reports import SKIPPED, Reports, skip_reason
from sftpd_agent.remote.base import RemoteEntry
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.remote.sftp import SftpRemote, connect
from sftpd_agent.rules.display import shown
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.report_lines import report_kind
from sftpd_agent.rules.states import PartState
from sftpd_agent.simulator import SimulatorOptions
from sftpd_agent.store.journal import Store
from tests.servers import SftpServer
from tests.test_sftp import settings_for

MONDAY_10H = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
REAL_STOP = "STOP-12345-20261123-1000-real.csv"
BINARY_STOP = "STOP-12345-20261123-1000-binary.csv"
UNDECODABLE = b"STOP-12345-20261123-1000-caf\xe9.csv"
FOLDER = "ACK-12345-20261123-1000-folder.csv"
DOTTY = ("STOP-..csv", "ACK-..-..-x.csv", "..csv")
LONG = "STOP-" + "a" * 241 + ".csv"  # 250 bytes
LINK = "STOP-12345-20261123-1000-link.csv"
NUMBERS = ("+33612340001", "+33612340002")


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=3, lock_seconds=0, ack_delay=10**6, stop_share=0, mo_share=0)


@pytest.fixture
async def remote(sftp_server: SftpServer) -> AsyncIterator[SftpRemote]:
    async with await connect(settings_for(sftp_server)) as session:
        yield session


def fill_report_dir(folder: Path, secret: Path) -> None:
    """Every odd case of the issue, and one real STOP file."""
    stop = "".join(f"{n};20261123;1005;STOP;R{i}\r\n" for i, n in enumerate(NUMBERS))
    (folder / REAL_STOP).write_bytes(stop.encode())
    (folder / BINARY_STOP).write_bytes(bytes(range(256)) * 64 + b"\x00\xff\r\n\x00" * 100)
    (folder / os.fsdecode(UNDECODABLE)).write_bytes(b"+33699999999;20261123;1005;STOP;R9\r\n")
    (folder / FOLDER).mkdir()
    (folder / FOLDER / "inside.csv").write_bytes(b"+33699999998;20261123;1005;STOP;R8\r\n")
    for name in DOTTY:
        (folder / name).write_bytes(b"+33699999997;20261123;1005;STOP;R7\r\n")
    (folder / LONG).write_bytes(b"+33699999996;20261123;1005;STOP;R6\r\n")
    secret.write_bytes(b"+33699999995;20261123;1005;STOP;R5\r\n")
    (folder / LINK).symlink_to(secret)


class Agent:
    """The pieces of the agent that read reports, over one folder of their own."""

    def __init__(self, tmp: Path) -> None:
        self.settings = Settings(service_id="12345", paths={"root": tmp / "agent"},
                                 campaign={"stable_seconds": 0})
        self.store = Store(self.settings.paths.state_db)
        self.events: list[str] = []
        self.faults: dict[str, BaseException] = {}
        self.reports = Reports(self.store, self.settings, lambda: MONDAY_10H,
                               lambda event, campaign=None, **_: self.events.append(event),
                               hooks=self._hook)

    def _hook(self, point: str, name: str) -> None:
        if name in self.faults:
            raise self.faults[name]

    def skipped(self) -> dict[str, str]:
        found: dict[str, str] = self.store.fact(SKIPPED) or {}
        return found


# --- the listing ---------------------------------------------------------------------------


async def test_a_listing_survives_odd_names(remote: SftpRemote, sftp_server: SftpServer,
                                            tmp_path: Path) -> None:
    fill_report_dir(sftp_server.report_dir, tmp_path / "secret.csv")
    entries = {entry.name: entry for entry in await remote.list("/Report")}
    undecodable = UNDECODABLE.decode("utf-8", "backslashreplace")
    assert entries[undecodable].undecodable
    assert "\\xe9" in undecodable
    assert not entries[REAL_STOP].undecodable
    assert entries[REAL_STOP].size == (sftp_server.report_dir / REAL_STOP).stat().st_size
    assert LONG in entries and all(name in entries for name in DOTTY)
    assert FOLDER not in entries, "a folder is not listed"
    assert LINK not in entries, "a symbolic link is not listed"
    assert not {".", ".."} & entries.keys()


@pytest.mark.parametrize("simulator_options", [SimulatorOptions(file_types=False)],
                         ids=["typeless"])
async def test_a_server_without_file_types_still_lists_files(simulator: SftpServer) -> None:
    (simulator.send_dir / "SEND-12345-20261123-1000-promo.lock").write_bytes(b"x" * 10)
    (simulator.send_dir / "folder").mkdir()
    async with await connect(settings_for(simulator)) as session:
        entries = {entry.name: entry for entry in await session.list("/Send")}
        found = await session.stat("/Send/SEND-12345-20261123-1000-promo.lock")
    assert entries["SEND-12345-20261123-1000-promo.lock"].size == 10
    assert found is not None and found.size == 10
    assert not {".", ".."} & entries.keys()
    # With no type at all a folder cannot be told from a file: it is listed, and a report
    # read of it fails for that one entry only (see the Reports tests).
    assert "folder" in entries


async def test_a_typed_server_lists_only_non_folders(simulator: SftpServer) -> None:
    (simulator.send_dir / "folder").mkdir()
    async with await connect(settings_for(simulator)) as session:
        assert [e.name for e in await session.list("/Send")] == []


# --- reports -------------------------------------------------------------------------------


async def test_odd_report_names_never_stop_a_real_stop_file(
    remote: SftpRemote, sftp_server: SftpServer, tmp_path: Path,
) -> None:
    fill_report_dir(sftp_server.report_dir, tmp_path / "secret.csv")
    agent = Agent(tmp_path)
    with structlog.testing.capture_logs() as first:
        await agent.reports.round(remote)
    assert agent.store.suppressed() == set(NUMBERS), "only the real STOP file's numbers"
    skipped = agent.skipped()
    undecodable = shown(UNDECODABLE.decode("utf-8", "backslashreplace"))
    assert skipped[undecodable] == "name is not UTF-8"
    assert "too long" in skipped[LONG]
    for name in DOTTY:
        assert "not a report name" in skipped[name]
    assert REAL_STOP not in skipped and BINARY_STOP not in skipped
    logged = [line["file"] for line in first if line["event"] == "report_skipped"]
    assert sorted(logged) == sorted(skipped)

    # Local copies: only grammar names, only under inbox/stop, and the real one is whole.
    inbox = agent.settings.paths.inbox
    copies = sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file())
    assert copies == [f"stop/{BINARY_STOP}", f"stop/{REAL_STOP}"]
    assert (inbox / "stop" / REAL_STOP).read_bytes() == \
        (sftp_server.report_dir / REAL_STOP).read_bytes()

    # The next poll says nothing again, and writes nothing for what did not change.
    with structlog.testing.capture_logs() as second:
        await agent.reports.round(remote)
    assert not [line for line in second if line["event"] == "report_skipped"]
    assert agent.skipped() == skipped

    # A file that goes away leaves the list.
    (sftp_server.report_dir / LONG).unlink()
    await agent.reports.round(remote)
    assert LONG not in agent.skipped()
    agent.store.close()


@pytest.mark.parametrize("simulator_options", [SimulatorOptions(file_types=False)],
                         ids=["typeless"])
async def test_a_folder_listed_as_a_file_is_skipped_alone(simulator: SftpServer,
                                                          tmp_path: Path) -> None:
    fill_report_dir(simulator.report_dir, tmp_path / "secret.csv")
    agent = Agent(tmp_path)
    async with await connect(settings_for(simulator)) as session:
        await agent.reports.round(session)
    assert agent.store.suppressed() >= set(NUMBERS)
    assert FOLDER in agent.skipped(), "reading a folder fails for that entry only"
    agent.store.close()


class Faulty(LocalRemote):
    """A local folder whose listing also shows names no file system can hold."""

    def __init__(self, root: Path, extra: list[RemoteEntry]) -> None:
        super().__init__(root)
        self.extra = extra
        self.read_paths: list[str] = []

    async def list(self, directory: str) -> list[RemoteEntry]:
        return [*await super().list(directory), *self.extra]

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        self.read_paths.append(path)
        return await super().read(path, offset, length)


async def test_a_name_with_slashes_is_never_read_or_joined(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    (provider / "Report" / REAL_STOP).write_bytes(f"{NUMBERS[0]};20261123;1005;STOP;R1\r\n"
                                                  .encode())
    hostile = ["ACK-a/../../x.csv", "STOP-12345-20261123-1000-x.csv/../../../etc/passwd",
               "STOP-12345-20261123-1000-a\nb.csv", "STOP-12345-20261123-1000-\x1b[2J.csv",
               "STOP-12345-20261123-1000-promo.csv\x00"]
    remote = Faulty(provider, [RemoteEntry(name, 10, 1.0) for name in hostile])
    agent = Agent(tmp_path)
    await agent.reports.round(remote)
    assert agent.store.suppressed() == {NUMBERS[0]}
    assert remote.read_paths and all(path.endswith(REAL_STOP) for path in remote.read_paths)
    skipped = agent.skipped()
    assert len(skipped) == len(hostile)
    assert all(name.isprintable() for name in skipped), "shown names are escaped"
    assert "STOP-12345-20261123-1000-a\\nb.csv" in skipped
    assert not (tmp_path / "x.csv").exists()
    agent.store.close()


def test_the_report_grammar() -> None:
    assert report_kind("STOP-12345-20261123-1000-promo.csv") is Kind.STOP
    for name in ("STOP-12345-20261123-1000-promo.CSV", "STOP-1234-20261123-1000-promo.csv",
                 "STOP-12345-20261323-1000-promo.csv", "STOP-12345-20261123-2460-promo.csv",
                 "STOP-12345-20261123-1000-" + "a" * 21 + ".csv", "SEND-12345-20261123-1000-p.csv",
                 "STOP-12345-20261123-1000-pro_mo.csv", "STOP-12345-20261123-1000-promé.csv",
                 "STOP-12345-20261123-1000-promo.csv\n",
                 "STOP-\uff11\uff12\uff13\uff14\uff15-20261123-1000-p.csv"):  # full-width digits
        assert report_kind(name) is None, name
    assert skip_reason(RemoteEntry("readme.txt", 1, 0)) is None, "none of our business"
    assert skip_reason(RemoteEntry("stop-12345-20261123-1000-p.csv", 1, 0)) is not None
    assert skip_reason(RemoteEntry("notes.CSV", 1, 0)) is not None
    assert shown("a\tb\x1b") == "a\\tb\\x1b"


async def test_one_failing_report_file_never_stops_the_others(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    names = [f"STOP-12345-20261123-1000-f{n}.csv" for n in range(3)]
    for n, name in enumerate(names):
        (provider / "Report" / name).write_bytes(f"+3361234000{n};20261123;1005;STOP;R\r\n"
                                                 .encode())
    remote = LocalRemote(provider)
    agent = Agent(tmp_path)
    agent.faults[names[0]] = ValueError("bad\nline")
    agent.faults[names[1]] = OSError(28, "No space left on device")
    with structlog.testing.capture_logs() as logs:
        await agent.reports.round(remote)
        await agent.reports.round(remote)
    assert agent.store.suppressed() >= {"+33612340002"}
    skipped = agent.skipped()
    assert skipped[names[0]] == "ValueError: bad line"
    assert "No space left on device" in skipped[names[1]]
    assert names[2] not in skipped
    warnings = [line for line in logs if line["event"] == "report_skipped"]
    assert len(warnings) == 2, "logged once, not every poll"
    assert all("exc_info" not in line for line in warnings), "no traceback but at debug"

    # The fault goes away: the next poll reads the file, and it leaves the list.
    agent.faults.clear()
    await agent.reports.round(remote)
    assert agent.store.suppressed() == {"+33612340000", "+33612340001", "+33612340002"}
    assert agent.skipped() == {}
    assert agent.store.fact(SKIPPED) is None
    agent.store.close()


class Cut(LocalRemote):
    """A connection that is lost while one file is read: everything fails after that."""

    def __init__(self, root: Path, at: str) -> None:
        super().__init__(root)
        self.at = at
        self.lost = False

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        if self.lost or path.endswith(self.at):
            self.lost = True
            raise RetryableRemoteError("connection lost")
        return await super().read(path, offset, length)

    async def stat(self, path: str) -> RemoteEntry | None:
        if self.lost:
            raise RetryableRemoteError("connection lost")
        return await super().stat(path)


async def test_a_lost_connection_still_ends_the_round(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    names = ["STOP-12345-20261123-1000-a.csv", "STOP-12345-20261123-1000-b.csv"]
    for name in names:
        (provider / "Report" / name).write_bytes(b"+33612340000;20261123;1005;STOP;R\r\n")
    agent = Agent(tmp_path)
    with pytest.raises(RetryableRemoteError):
        await agent.reports.round(Cut(provider, names[0]))
    assert agent.skipped() == {}, "a lost connection is not the file's fault"
    assert agent.store.suppressed() == set()

    # A retryable failure of one file on a live connection (a busy file) skips that file.
    class Busy(LocalRemote):
        async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
            if path.endswith(names[0]):
                raise RetryableRemoteError("read: Failure")
            return await super().read(path, offset, length)

    await agent.reports.round(Busy(provider))
    assert agent.skipped() == {names[0]: "RetryableRemoteError: read: Failure"}
    assert agent.store.suppressed() == {"+33612340000"}
    agent.store.close()


# --- publication -----------------------------------------------------------------------------


class Blind(LocalRemote):
    """A server whose listing shows nothing in ``Send/`` (types it cannot tell, a cut-short
    listing), though stat finds the files."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.uploads: list[str] = []
        self.stats: list[str] = []

    async def list(self, directory: str) -> list[RemoteEntry]:
        return []

    async def stat(self, path: str) -> RemoteEntry | None:
        self.stats.append(path)
        return await super().stat(path)

    async def upload(self, local: Path, remote: str, **options: Any) -> int:
        self.uploads.append(remote)
        return await super().upload(local, remote, **options)


@pytest.mark.parametrize("extension", [".csv", ".lock", ".done", ".reject"])
async def test_a_part_is_never_uploaded_again_when_stat_finds_it(tmp_path: Path,
                                                                 extension: str) -> None:
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"stable_seconds": 0, "marketing": False})
    store = Store(settings.paths.state_db)
    campaigns = Campaigns(settings, store, lambda: MONDAY_10H, lambda *a, **k: None,
                          suppressed=store.suppressed)
    publisher = Publisher(store, "Send", campaigns.part_file, lambda: MONDAY_10H,
                          lambda *a, **k: None)
    dropped = settings.paths.outbox / "promo.csv"
    dropped.write_text("R1;+33612345678;Shop;Bonjour\n", encoding="utf-8")
    campaign = campaigns.validate(campaigns.take(dropped))
    assert campaigns.prepare(campaign) is not None
    (part,) = store.parts(campaign.id)
    assert part.state == PartState.UPLOADING
    send = tmp_path / "provider" / "Send"
    send.mkdir(parents=True)
    (send / (part.stem + extension)).write_bytes(b"already there")
    remote = Blind(tmp_path / "provider")
    await publisher.round(remote)
    assert remote.uploads == [], "found by stat: never uploaded again"
    assert [Path(p).name for p in remote.stats][:1] == [part.stem + ".csv"]
    (moved,) = store.parts(campaign.id)
    assert moved.state != PartState.UPLOADING

    # With none of the four names anywhere, it is uploaded, after asking for all four.
    (send / (part.stem + extension)).unlink()
    other = Settings(service_id="12345", paths={"root": tmp_path / "agent2"},
                     campaign={"stable_seconds": 0, "marketing": False})
    store.close()
    store = Store(other.paths.state_db)
    campaigns = Campaigns(other, store, lambda: MONDAY_10H, lambda *a, **k: None,
                          suppressed=store.suppressed)
    publisher = Publisher(store, "Send", campaigns.part_file, lambda: MONDAY_10H,
                          lambda *a, **k: None)
    dropped = other.paths.outbox / "promo.csv"
    dropped.write_text("R1;+33612345678;Shop;Bonjour\n", encoding="utf-8")
    assert campaigns.prepare(campaigns.validate(campaigns.take(dropped))) is not None
    remote = Blind(tmp_path / "provider")
    await publisher.round(remote)
    assert {Path(p).suffix for p in remote.stats} >= {".csv", ".lock", ".done", ".reject"}
    assert len(remote.uploads) == 1
    store.close()
