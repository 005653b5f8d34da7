"""The remote contract: the same cases against every :class:`Remote` the agent has.

- ``local``: :class:`LocalRemote` over a temporary folder, the double most tests use;
- ``openssh``: :class:`SftpRemote` (asyncssh) against OpenSSH's ``sshd`` (``internal-sftp``,
  chrooted), the server the provider runs;
- ``simulator``: :class:`SftpRemote` against the embedded asyncssh simulator.

So the double's "real semantics" are proven, not claimed: rename never replaces, removing a
missing file is no error, the stat of a missing file is None, a listing shows files with
their sizes and whole-second times and leaves out folders, links, ``.`` and ``..``, uploads
replace and reads start anywhere, a name that is not UTF-8 is listed, flagged, and a link
never leads out of the root (the simulator still fails that one: marked). Each case arranges
and inspects the served folder on disk, and acts only through the remote.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sftpd_agent.errors import PermanentRemoteError, RemoteError
from sftpd_agent.remote.base import Remote, RemoteEntry, TargetExists
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.remote.sftp import connect
from tests.servers import SftpServer
from tests.test_sftp import settings_for

MB = 1024 * 1024
DIR = "Contract"  # a folder of our own: the simulator's processing watches Send/ and Report/
FRACTIONAL = 1_790_000_000.75  # a modification time with a fraction SFTP v3 cannot carry


@dataclass(frozen=True)
class Side:
    """One implementation under test, and the folder it shows as ``/``."""

    remote: Remote
    root: Path

    def disk(self, name: str) -> Path:
        """Where ``DIR/name`` lives on disk."""
        return self.root / DIR / name


@pytest.fixture(params=["local", "openssh", "simulator"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, SftpServer | None]:
    """The folder that will be served, and the server serving it (None: the local double).
    Synchronous, as ``sftp_server`` is: the simulator then runs in the test's event loop."""
    if request.param == "local":
        root = tmp_path / "provider"
        root.mkdir()
        return root, None
    server: SftpServer = request.getfixturevalue(request.param)
    return server.root, server


@pytest.fixture
async def side(served: tuple[Path, SftpServer | None]) -> AsyncIterator[Side]:
    root, server = served
    (root / DIR).mkdir()
    remote: Remote = LocalRemote(root) if server is None else await connect(settings_for(server))
    try:
        yield Side(remote, root)
    finally:
        await remote.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entries_of(listing: list[RemoteEntry]) -> dict[str, RemoteEntry]:
    names = [entry.name for entry in listing]
    assert len(names) == len(set(names)), f"a name listed twice: {sorted(names)}"
    return {entry.name: entry for entry in listing}


# --- rename ----------------------------------------------------------------------------------


async def test_a_rename_moves_the_file(side: Side) -> None:
    side.disk("a.tmp").write_bytes(b"campaign")
    await side.remote.rename(f"/{DIR}/a.tmp", f"/{DIR}/a.csv")
    assert not side.disk("a.tmp").exists()
    assert side.disk("a.csv").read_bytes() == b"campaign"
    assert await side.remote.stat(f"/{DIR}/a.tmp") is None
    assert set(entries_of(await side.remote.list(f"/{DIR}"))) == {"a.csv"}


async def test_a_rename_never_replaces_an_existing_file(side: Side) -> None:
    side.disk("a.tmp").write_bytes(b"new")
    side.disk("a.csv").write_bytes(b"old, and longer")
    with pytest.raises(TargetExists, match=r"a\.csv"):
        await side.remote.rename(f"/{DIR}/a.tmp", f"/{DIR}/a.csv")
    assert side.disk("a.csv").read_bytes() == b"old, and longer"
    assert side.disk("a.tmp").read_bytes() == b"new"


async def test_a_rename_never_replaces_a_folder_or_a_link(side: Side) -> None:
    side.disk("a.tmp").write_bytes(b"new")
    side.disk("folder.csv").mkdir()
    side.disk("link.csv").symlink_to("nowhere")  # dangling: a name all the same
    for target in ("folder.csv", "link.csv"):
        with pytest.raises(TargetExists, match=target):
            await side.remote.rename(f"/{DIR}/a.tmp", f"/{DIR}/{target}")
    assert side.disk("folder.csv").is_dir() and side.disk("link.csv").is_symlink()
    assert side.disk("a.tmp").read_bytes() == b"new"


async def test_a_rename_whose_source_is_gone_and_target_there_is_target_exists(
        side: Side) -> None:
    # What a retried rename sees when the first one worked but its answer was lost: the
    # publication protocol reads it as "already published".
    side.disk("a.csv").write_bytes(b"published")
    with pytest.raises(TargetExists, match=r"a\.csv"):
        await side.remote.rename(f"/{DIR}/a.tmp", f"/{DIR}/a.csv")
    assert side.disk("a.csv").read_bytes() == b"published"


async def test_renaming_a_missing_file_is_permanent(side: Side) -> None:
    with pytest.raises(PermanentRemoteError, match=r"ghost\.tmp") as caught:
        await side.remote.rename(f"/{DIR}/ghost.tmp", f"/{DIR}/ghost.csv")
    assert not isinstance(caught.value, TargetExists)
    assert not side.disk("ghost.csv").exists()


# --- remove and stat -------------------------------------------------------------------------


async def test_remove_removes_and_a_missing_file_is_no_error(side: Side) -> None:
    side.disk("a.csv").write_bytes(b"x")
    await side.remote.remove(f"/{DIR}/a.csv")
    assert not side.disk("a.csv").exists()
    await side.remote.remove(f"/{DIR}/a.csv")  # already gone
    await side.remote.remove(f"/{DIR}/never-was.csv")
    await side.remote.remove("/Nowhere/never-was.csv")  # nor its folder
    side.disk("b.csv").write_bytes(b"x")
    await side.remote.remove(f"/{DIR}/b.csv/never-was.csv")  # a file is no folder
    assert side.disk("b.csv").read_bytes() == b"x"


async def test_removing_a_folder_is_refused(side: Side) -> None:
    side.disk("folder").mkdir()
    with pytest.raises(RemoteError, match="folder"):
        await side.remote.remove(f"/{DIR}/folder")
    assert side.disk("folder").is_dir()


async def test_stat_of_a_missing_file_is_none(side: Side) -> None:
    assert await side.remote.stat(f"/{DIR}/absent.csv") is None
    assert await side.remote.stat("/Nowhere/absent.csv") is None
    side.disk("a.csv").write_bytes(b"x")
    assert await side.remote.stat(f"/{DIR}/a.csv/absent.csv") is None  # a file is no folder
    side.disk("dangling.csv").symlink_to("absent.csv")
    assert await side.remote.stat(f"/{DIR}/dangling.csv") is None


async def test_stat_of_a_file(side: Side) -> None:
    side.disk("a.csv").write_bytes(b"12345")
    os.utime(side.disk("a.csv"), (FRACTIONAL, FRACTIONAL))
    entry = await side.remote.stat(f"/{DIR}/a.csv")
    assert entry == RemoteEntry("a.csv", 5, 1_790_000_000.0)  # whole seconds, as SFTP v3


# --- listing ---------------------------------------------------------------------------------


async def test_a_listing_shows_files_and_leaves_out_folders_and_links(side: Side) -> None:
    side.disk("a.csv").write_bytes(b"x" * 1234)
    side.disk("empty.csv").write_bytes(b"")
    os.utime(side.disk("a.csv"), (FRACTIONAL, FRACTIONAL))
    side.disk("folder.csv").mkdir()
    side.disk("folder.csv").joinpath("inside.csv").write_bytes(b"x")
    side.disk("link.csv").symlink_to("a.csv")
    side.disk("dangling.csv").symlink_to("absent.csv")
    side.disk("outside.csv").symlink_to("/etc/hostname")
    entries = entries_of(await side.remote.list(f"/{DIR}"))
    assert entries == {
        "a.csv": RemoteEntry("a.csv", 1234, 1_790_000_000.0),
        "empty.csv": RemoteEntry("empty.csv", 0,
                                 float(int(side.disk("empty.csv").stat().st_mtime))),
    }


async def test_a_special_file_is_listed(side: Side) -> None:
    # Only folders and links are left out: what the type does not exclude is listed.
    os.mkfifo(side.disk("fifo.csv"))
    entries = entries_of(await side.remote.list(f"/{DIR}"))
    assert set(entries) == {"fifo.csv"} and entries["fifo.csv"].size == 0


async def test_dot_and_dot_dot_are_never_listed(side: Side) -> None:
    side.disk(".hidden.csv").write_bytes(b"x")
    side.disk("..csv").write_bytes(b"y")  # a name, not a way up
    (side.root / "top.csv").write_bytes(b"top")
    assert set(entries_of(await side.remote.list(f"/{DIR}"))) == {".hidden.csv", "..csv"}
    assert set(entries_of(await side.remote.list("/"))) == {"top.csv"}  # the folders not


async def test_paths_start_at_the_root_and_never_leave_it(side: Side) -> None:
    side.disk("a.csv").write_bytes(b"relative")
    listing = entries_of(await side.remote.list(f"/{DIR}"))
    assert entries_of(await side.remote.list(DIR)) == listing
    assert entries_of(await side.remote.list(f"/../../{DIR}")) == listing  # ".." stops at /
    assert await side.remote.read(f"{DIR}/a.csv", 3) == b"ative"
    assert await side.remote.stat(f"/{DIR}/../{DIR}/./a.csv") == await side.remote.stat(
        f"{DIR}/a.csv")


async def test_a_link_never_leads_out_of_the_root(side: Side, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_bytes(b"not the provider's")
    side.disk("absolute.csv").symlink_to(secret)
    side.disk("relative.csv").symlink_to(os.path.relpath(secret, side.disk("")))
    for name in ("absolute.csv", "relative.csv"):
        assert await side.remote.stat(f"/{DIR}/{name}") is None
        with pytest.raises(PermanentRemoteError, match=name):
            await side.remote.read(f"/{DIR}/{name}", 0)
        await side.remote.remove(f"/{DIR}/{name}")  # the link itself
        assert not side.disk(name).is_symlink()
    assert secret.read_bytes() == b"not the provider's"


async def test_a_name_that_is_not_utf8_is_listed_flagged(side: Side) -> None:
    raw = b"STOP-caf\xe9.csv"
    side.disk(os.fsdecode(raw)).write_bytes(b"latin-1")
    side.disk("STOP-café.csv").write_bytes(b"utf-8")
    entries = entries_of(await side.remote.list(f"/{DIR}"))
    escaped = raw.decode("utf-8", "backslashreplace")
    assert escaped == "STOP-caf\\xe9.csv"
    assert entries == {
        escaped: RemoteEntry(escaped, 7, entries[escaped].mtime, undecodable=True),
        "STOP-café.csv": RemoteEntry("STOP-café.csv", 5, entries["STOP-café.csv"].mtime),
    }


async def test_listing_a_missing_folder_or_a_file_is_permanent(side: Side) -> None:
    with pytest.raises(PermanentRemoteError, match="Nowhere"):
        await side.remote.list("/Nowhere")
    side.disk("a.csv").write_bytes(b"x")
    with pytest.raises(PermanentRemoteError, match=r"a\.csv"):
        await side.remote.list(f"/{DIR}/a.csv")


# --- upload and read -------------------------------------------------------------------------


async def test_an_upload_is_read_back_from_any_offset(side: Side, tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 12345)
    local = tmp_path / "campaign.bin"
    local.write_bytes(data)
    seen: list[int] = []
    written = await side.remote.upload(local, f"/{DIR}/c.tmp", progress=seen.append)
    assert written == len(data)
    assert sha256(side.disk("c.tmp").read_bytes()) == sha256(data)
    assert seen and seen == sorted(seen) and seen[-1] == written

    path = f"/{DIR}/c.tmp"
    assert sha256(await side.remote.read(path, 0)) == sha256(data)  # to the end
    assert await side.remote.read(path, MB + 7) == data[MB + 7:]
    assert await side.remote.read(path, 1000, 10) == data[1000:1010]
    assert await side.remote.read(path, len(data) - 3, 100) == data[-3:]  # short at the end
    assert await side.remote.read(path, 1000, 0) == b""
    assert await side.remote.read(path, len(data)) == b""
    assert await side.remote.read(path, len(data) + 100) == b""
    entry = await side.remote.stat(path)
    assert entry is not None and (entry.name, entry.size) == ("c.tmp", len(data))


async def test_an_upload_replaces_and_truncates(side: Side, tmp_path: Path) -> None:
    side.disk("x.tmp").write_bytes(b"a much longer previous content")
    local = tmp_path / "short"
    local.write_bytes(b"short")
    assert await side.remote.upload(local, f"/{DIR}/x.tmp") == 5
    assert side.disk("x.tmp").read_bytes() == b"short"
    assert await side.remote.read(f"/{DIR}/x.tmp", 0) == b"short"


async def test_an_empty_file_uploads(side: Side, tmp_path: Path) -> None:
    local = tmp_path / "empty"
    local.write_bytes(b"")
    assert await side.remote.upload(local, f"/{DIR}/e.tmp") == 0
    assert side.disk("e.tmp").read_bytes() == b""
    assert await side.remote.stat(f"/{DIR}/e.tmp") is not None


async def test_what_is_not_there_cannot_be_read_or_written(side: Side, tmp_path: Path) -> None:
    with pytest.raises(PermanentRemoteError, match=r"absent\.csv"):
        await side.remote.read(f"/{DIR}/absent.csv", 0)
    local = tmp_path / "here"
    local.write_bytes(b"x")
    with pytest.raises(PermanentRemoteError, match="Nowhere"):
        await side.remote.upload(local, "/Nowhere/x.tmp")
    with pytest.raises(FileNotFoundError):  # a missing local file is not the server's fault
        await side.remote.upload(tmp_path / "absent", f"/{DIR}/x.tmp")
    assert not side.disk("x.tmp").exists()


async def test_reads_in_a_row_then_a_release_or_another_operation_see_the_file_anew(
        side: Side) -> None:
    """Reads of one file in a row may share what they opened (a report read a chunk at a
    time); a release, or any other operation, lets go of it: the next read meets the file
    as it is then (replaced, removed)."""
    path = f"/{DIR}/STOP-r.csv"
    side.disk("STOP-r.csv").write_bytes(b"0123456789" * 1000)
    chunks = [await side.remote.read(path, at, 1000) for at in range(0, 10_000, 1000)]
    assert b"".join(chunks) == b"0123456789" * 1000
    replacement = side.disk("new.part")
    replacement.write_bytes(b"the provider's new file")
    replacement.replace(side.disk("STOP-r.csv"))  # another file under the name
    await side.remote.release()
    assert await side.remote.read(path, 0) == b"the provider's new file"
    assert await side.remote.read(path, 4, 3) == b"pro"
    await side.remote.remove(path)
    with pytest.raises(PermanentRemoteError, match=r"STOP-r\.csv"):
        await side.remote.read(path, 0)
    await side.remote.release()  # nothing held: nothing to do
    await side.remote.release()


async def test_close_twice_is_fine(side: Side) -> None:
    await side.remote.close()
    await side.remote.close()
