"""The remote contract against ProFTPD's mod_sftp, and the write size without limits.

Every case of ``tests/test_remote_contract.py`` runs here too, against :class:`SftpRemote`
connected to ProFTPD (``tests/proftpd.py``): the cases are taken from that module, and only
``served`` is this module's own. They skip, saying why, where ProFTPD and its mod_sftp are not
installed (``apt-get install -y --no-install-recommends proftpd-core proftpd-mod-crypto``)
or the tests do not run as root. The choice of write size is tested without a server.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import asyncssh
import pytest

from sftpd_agent.errors import PermanentRemoteError
from sftpd_agent.remote import sftp
from sftpd_agent.remote.sftp import (
    advertises_limits,
    connect,
    not_there,
    requests_in_flight,
    write_block_for,
)
from tests import test_remote_contract as contract
from tests.proftpd import proftpd
from tests.servers import SftpServer
from tests.test_sftp import settings_for

__all__ = ["proftpd"]  # a fixture: imported to be found

# The contract's cases, and its ``side`` fixture, collected again in this module.
side = contract.side
for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


@pytest.fixture
def served(proftpd: SftpServer) -> tuple[Path, SftpServer | None]:
    """Replaces the contract's: ProFTPD only."""
    return proftpd.root, proftpd


# --- the write size, without a server --------------------------------------------------------


def test_advertised_limits_are_obeyed_whatever_the_server() -> None:
    assert write_block_for(261_120, "SSH-2.0-OpenSSH_9.2p1 Debian-2") == 261_120
    assert write_block_for(4 * 1024 * 1024, "SSH-2.0-AsyncSSH_2.24.1") == sftp.BLOCK_SIZE
    assert write_block_for(16_384, "SSH-2.0-mod_sftp") == 16_384  # its word, even if small
    assert write_block_for(0, "SSH-2.0-Whatever") == sftp.BLOCK_SIZE  # 0: no limit


def test_without_limits_a_known_server_gets_its_size_and_others_32_kib() -> None:
    assert write_block_for(None, "SSH-2.0-mod_sftp") == 255 * 1024
    assert write_block_for(None, "SSH-2.0-mod_sftp/1.1.1") == 255 * 1024
    assert write_block_for(None, "SSH-2.0-OpenSSH_7.4") == 255 * 1024  # before limits (8.6)
    for unknown in ("SSH-2.0-Cerberus", "SSH-2.0-", "", "SSH-2.0-1.82_sshlib GlobalSCAPE",
                    "SSH-2.0-AWS_SFTP_1.1", "SSH-2.0-my_mod_sftp"):
        assert write_block_for(None, unknown) == sftp.PORTABLE_WRITE_SIZE == 32 * 1024


def test_small_blocks_keep_more_requests_in_flight() -> None:
    assert requests_in_flight(sftp.BLOCK_SIZE) == sftp.MAX_REQUESTS == 32
    assert requests_in_flight(255 * 1024) == 32
    assert requests_in_flight(32 * 1024) == sftp.MAX_SMALL_REQUESTS == 64  # as sftp -R 64
    assert requests_in_flight(16 * 1024) == 64
    assert requests_in_flight(1024) == 64  # bounded


def test_a_session_whose_limits_attribute_moved_counts_as_advertising() -> None:
    # asyncssh keeps whether limits came private: if that ever changes, obey what it shows.
    class Bare:
        pass

    assert advertises_limits(Bare()) is True  # type: ignore[arg-type]


def test_not_a_directory_in_either_servers_words_is_not_there() -> None:
    assert not_there(asyncssh.SFTPNoSuchFile("No such file"))
    assert not_there(asyncssh.SFTPError(asyncssh.FX_FAILURE, "Not a directory"))
    assert not not_there(asyncssh.SFTPError(asyncssh.FX_FAILURE, "Failure"))
    assert not not_there(asyncssh.SFTPError(asyncssh.FX_PERMISSION_DENIED, "Not a directory"))
    error = sftp.translate(asyncssh.SFTPError(asyncssh.FX_FAILURE, "Not a directory"), "stat x")
    assert isinstance(error, PermanentRemoteError)  # nothing to wait for


# --- against ProFTPD -------------------------------------------------------------------------


async def test_proftpd_sends_no_limits_and_gets_255_kib_writes(proftpd: SftpServer,
                                                               tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 777)
    local = tmp_path / "campaign.bin"
    local.write_bytes(data)
    remote = await connect(settings_for(proftpd))
    try:
        assert not advertises_limits(remote._sftp)
        assert remote._sftp.limits.max_write_len == 16 * 1024  # asyncssh's fallback
        assert (remote._write_block, remote._write_window) == (255 * 1024, 32)
        seen: list[int] = []
        written = await remote.upload(local, "/Send/c.tmp", progress=seen.append)
    finally:
        await remote.close()
    assert written == len(data)
    assert len(seen) == math.ceil(len(data) / (255 * 1024))  # one report per write
    on_disk = (proftpd.send_dir / "c.tmp").read_bytes()
    assert hashlib.sha256(on_disk).digest() == hashlib.sha256(data).digest()


async def test_proftpd_offers_fsync(proftpd: SftpServer) -> None:
    # The upload's fsync is done here too, not skipped as unsupported.
    remote = await connect(settings_for(proftpd))
    try:
        handle = await remote._sftp.open("/Send/f.tmp", "wb", block_size=0)
        try:
            assert await sftp.flush_to_disk(handle) is True
        finally:
            await handle.close()
    finally:
        await remote.close()
