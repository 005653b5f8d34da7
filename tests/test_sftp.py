"""The SFTP session against the asyncssh simulator and a real OpenSSH sshd, and its faults."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from pydantic import SecretStr

from sftpd_agent.config import RemoteSettings
from sftpd_agent.errors import PermanentRemoteError, RemoteError, RetryableRemoteError
from sftpd_agent.remote import sftp
from sftpd_agent.remote.base import ConnectionLost, Remote, TargetExists
from sftpd_agent.remote.sftp import SftpRemote, connect, translate
from tests.faults import FaultProxy
from tests.servers import SftpServer

MB = 1024 * 1024


def settings_for(server: SftpServer, **overrides: Any) -> RemoteSettings:
    values: dict[str, Any] = {
        "host": server.host, "port": server.port, "username": server.username,
        "private_key": server.client_key, "known_hosts": server.known_hosts,
        "connect_timeout_seconds": 10, "operation_timeout_seconds": 10,
        "keepalive_seconds": 15,
    }
    values.update(overrides)
    return RemoteSettings(**values)


def host_key_blob(server: SftpServer) -> str:
    """``algorithm base64`` of the server's host key, from the fixture's known_hosts."""
    _where, algorithm, blob = server.known_hosts.read_text().split()[:3]
    return f"{algorithm} {blob}"


def write_known_hosts(path: Path, port: int, key: str, host: str = "127.0.0.1") -> Path:
    path.write_text(f"[{host}]:{port} {key}\n")
    return path


def through(proxy: FaultProxy, server: SftpServer, tmp_path: Path,
            **overrides: Any) -> RemoteSettings:
    """Settings that reach ``server`` through ``proxy`` (the same host key, on its port)."""
    known = write_known_hosts(tmp_path / f"known_hosts_{proxy.port}", proxy.port,
                              host_key_blob(server))
    return settings_for(server, port=proxy.port, known_hosts=known, **overrides)


def new_key(path: Path, *, passphrase: str | None = None, fmt: str = "openssh") -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key(fmt, passphrase=passphrase))
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
async def remote(sftp_server: SftpServer) -> AsyncIterator[SftpRemote]:
    async with await connect(settings_for(sftp_server)) as session:
        yield session


# --- what the session does -------------------------------------------------------------------


async def test_a_file_goes_up_is_renamed_read_and_removed(
        remote: SftpRemote, sftp_server: SftpServer, tmp_path: Path) -> None:
    local = random_file(tmp_path / "campaign.bin", 3 * MB + 12345)
    seen: list[int] = []
    written = await remote.upload(local, "/Send/c.tmp", progress=seen.append)
    assert written == local.stat().st_size
    assert sha256(sftp_server.send_dir / "c.tmp") == sha256(local)
    assert seen == sorted(seen) and seen[-1] == written
    assert len(seen) >= written / sftp.BLOCK_SIZE  # a report per acknowledged write

    (sftp_server.send_dir / "sub").mkdir()
    (sftp_server.send_dir / "link").symlink_to("c.tmp")
    entries = {entry.name: entry for entry in await remote.list("/Send")}
    assert set(entries) == {"c.tmp"}  # regular files only: no directory, no symlink
    on_disk = (sftp_server.send_dir / "c.tmp").stat()
    assert entries["c.tmp"].size == on_disk.st_size
    assert entries["c.tmp"].mtime == pytest.approx(on_disk.st_mtime, abs=1)

    await remote.rename("/Send/c.tmp", "/Send/c.part")
    assert await remote.stat("/Send/c.tmp") is None
    entry = await remote.stat("/Send/c.part")
    assert entry is not None and (entry.name, entry.size) == ("c.part", written)

    data = local.read_bytes()
    assert await remote.read("/Send/c.part", 0) == data
    assert await remote.read("/Send/c.part", MB + 7) == data[MB + 7:]
    assert await remote.read("/Send/c.part", 1000, 10) == data[1000:1010]
    assert await remote.read("/Send/c.part", len(data)) == b""

    await remote.remove("/Send/c.part")
    assert not (sftp_server.send_dir / "c.part").exists()
    await remote.remove("/Send/c.part")  # already gone: no error
    assert await remote.stat("/Send/c.part") is None


async def test_reads_of_one_file_in_a_row_open_it_once(
        remote: SftpRemote, sftp_server: SftpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A report's chunks share one handle (the next chunk's reads go out at once); another
    file, another operation or a release closes it; a failed read does not keep it."""
    for name in ("a.csv", "b.csv"):
        random_file(sftp_server.report_dir / name, 300_000)
    opened: list[str] = []
    closed: list[int] = []
    real_open = remote._sftp.open

    async def counting_open(path: str, *args: Any, **kwargs: Any) -> asyncssh.SFTPClientFile:
        opened.append(path)
        handle = await real_open(path, *args, **kwargs)
        real_close = handle.close

        async def counting_close() -> None:
            closed.append(1)
            await real_close()

        handle.close = counting_close  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(remote._sftp, "open", counting_open)
    data = sftp_server.report_dir.joinpath("a.csv").read_bytes()
    assert b"".join([await remote.read("/Report/a.csv", at, 100_000)
                     for at in range(0, 300_000, 100_000)]) == data
    assert (opened, closed) == (["/Report/a.csv"], [])
    await remote.read("/Report/b.csv", 0, 10)  # another file: the first closed
    assert (len(opened), len(closed)) == (2, 1)
    assert await remote.stat("/Report/b.csv") is not None  # another operation: closed
    assert (len(opened), len(closed)) == (2, 2)
    await remote.read("/Report/b.csv", 0, 10)
    await remote.release()
    assert (len(opened), len(closed)) == (3, 3)
    with pytest.raises(PermanentRemoteError):
        await remote.read("/Report/missing.csv", 0)
    assert remote._held is None
    await remote.read("/Report/a.csv", 0, 10)
    await remote.list("/Report")
    assert remote._held is None and len(closed) == len(opened) - 1  # the missing one: none


async def test_relative_paths_start_at_the_login_folder(
        remote: SftpRemote, sftp_server: SftpServer) -> None:
    (sftp_server.send_dir / "r.tmp").write_bytes(b"relative")
    assert await remote.list("Send") == await remote.list("/Send")
    assert await remote.read("Send/r.tmp", 3) == b"ative"


async def test_an_upload_replaces_and_truncates(
        remote: SftpRemote, sftp_server: SftpServer, tmp_path: Path) -> None:
    (sftp_server.send_dir / "x.tmp").write_bytes(b"a much longer previous content")
    local = tmp_path / "short"
    local.write_bytes(b"short")
    assert await remote.upload(local, "/Send/x.tmp") == 5
    assert (sftp_server.send_dir / "x.tmp").read_bytes() == b"short"


async def test_an_empty_file_uploads(remote: SftpRemote, sftp_server: SftpServer,
                                     tmp_path: Path) -> None:
    local = tmp_path / "empty"
    local.write_bytes(b"")
    assert await remote.upload(local, "/Send/e.tmp") == 0
    assert (sftp_server.send_dir / "e.tmp").read_bytes() == b""


async def test_a_rename_onto_an_existing_name_is_target_exists(
        remote: SftpRemote, sftp_server: SftpServer) -> None:
    (sftp_server.send_dir / "a.tmp").write_bytes(b"new")
    (sftp_server.send_dir / "a.done").write_bytes(b"old")
    with pytest.raises(TargetExists, match=r"a\.done"):
        await remote.rename("/Send/a.tmp", "/Send/a.done")
    assert (sftp_server.send_dir / "a.done").read_bytes() == b"old"
    assert (sftp_server.send_dir / "a.tmp").read_bytes() == b"new"


async def test_renaming_a_missing_file_is_not_target_exists(remote: SftpRemote) -> None:
    with pytest.raises(PermanentRemoteError, match=r"ghost\.tmp") as caught:
        await remote.rename("/Send/ghost.tmp", "/Send/ghost.part")
    assert not isinstance(caught.value, TargetExists)


async def test_an_upload_is_flushed_to_disk(remote: SftpRemote, sftp_server: SftpServer,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[bool] = []
    real = sftp.flush_to_disk

    async def spy(handle: asyncssh.SFTPClientFile) -> bool:
        outcomes.append(await real(handle))
        return outcomes[-1]

    monkeypatch.setattr(sftp, "flush_to_disk", spy)
    local = random_file(tmp_path / "f", 100_000)
    await remote.upload(local, "/Send/f.tmp")
    assert outcomes == [True]  # both servers offer fsync@openssh.com, and it succeeded
    assert sha256(sftp_server.send_dir / "f.tmp") == sha256(local)


async def test_without_fsync_the_upload_still_succeeds(
        remote: SftpRemote, sftp_server: SftpServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def unsupported(self: asyncssh.SFTPClientFile) -> None:
        raise asyncssh.SFTPOpUnsupported("fsync not supported")  # what asyncssh raises then

    monkeypatch.setattr(asyncssh.SFTPClientFile, "fsync", unsupported)
    local = random_file(tmp_path / "g", 1000)
    assert await remote.upload(local, "/Send/g.tmp") == 1000
    assert (sftp_server.send_dir / "g.tmp").read_bytes() == local.read_bytes()


async def test_listing_a_missing_directory_is_permanent(remote: SftpRemote) -> None:
    with pytest.raises(PermanentRemoteError, match="Nowhere"):
        await remote.list("/Nowhere")


async def test_a_missing_local_file_is_not_a_remote_error(remote: SftpRemote,
                                                          tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await remote.upload(tmp_path / "absent", "/Send/absent.tmp")


async def test_a_closed_session_raises_retryable(sftp_server: SftpServer) -> None:
    session = await connect(settings_for(sftp_server))
    await session.close()
    await session.close()  # twice is fine
    with pytest.raises(RetryableRemoteError):
        await session.list("/Send")


def test_the_session_is_a_remote() -> None:
    def accepts(_remote: Remote) -> None: ...

    accepts(SftpRemote.__new__(SftpRemote))  # mypy checks the Protocol; this, the names
    for name in ("list", "upload", "rename", "stat", "read", "remove", "close"):
        assert callable(getattr(SftpRemote, name))


# --- whom the session trusts ----------------------------------------------------------------


async def test_a_wrong_host_key_is_refused(sftp_server: SftpServer, tmp_path: Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    line = stranger.export_public_key("openssh").decode().split()[:2]
    known = write_known_hosts(tmp_path / "kh", sftp_server.port, " ".join(line))
    with pytest.raises(PermanentRemoteError, match="host key not trusted") as caught:
        await connect(settings_for(sftp_server, known_hosts=known))
    assert "127.0.0.1" in str(caught.value)
    assert "trust-host" in str(caught.value)


async def test_a_host_without_an_entry_is_refused(sftp_server: SftpServer,
                                                  tmp_path: Path) -> None:
    # The right key, but recorded for another port: it is not this host's.
    known = write_known_hosts(tmp_path / "kh", free_port(), host_key_blob(sftp_server))
    with pytest.raises(PermanentRemoteError, match=r"127\.0\.0\.1.*host key not trusted"):
        await connect(settings_for(sftp_server, known_hosts=known))
    (tmp_path / "empty").write_text("")
    with pytest.raises(PermanentRemoteError, match="host key not trusted"):
        await connect(settings_for(sftp_server, known_hosts=tmp_path / "empty"))


async def test_a_refused_host_key_is_not_learned(sftp_server: SftpServer,
                                                 tmp_path: Path) -> None:
    known = tmp_path / "kh"
    known.write_text("")
    with pytest.raises(PermanentRemoteError):
        await connect(settings_for(sftp_server, known_hosts=known))
    assert known.read_text() == ""
    assert not (tmp_path / ".ssh").exists()


async def test_a_missing_known_hosts_says_to_run_trust_host(sftp_server: SftpServer,
                                                            tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    with pytest.raises(PermanentRemoteError, match="sftpd-agent trust-host") as caught:
        await connect(settings_for(sftp_server, known_hosts=missing))
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
async def test_a_key_others_can_open_is_refused_before_connecting(
        simulator: SftpServer, tmp_path: Path, mode: int) -> None:
    key = tmp_path / "loose_key"
    shutil.copy(simulator.client_key, key)
    key.chmod(mode)
    async with FaultProxy(simulator.host, simulator.port) as proxy:
        with pytest.raises(PermanentRemoteError) as caught:
            await connect(through(proxy, simulator, tmp_path, private_key=key))
        assert proxy.accepted == 0  # refused before any connection
    message = str(caught.value)
    assert str(key) in message and f"mode {mode:04o}" in message and "chmod 600" in message
    assert "\n" not in message


async def test_a_missing_key_file_is_permanent(simulator: SftpServer, tmp_path: Path) -> None:
    with pytest.raises(PermanentRemoteError, match="no such file"):
        await connect(settings_for(simulator, private_key=tmp_path / "absent"))


async def test_a_wrong_passphrase_is_permanent_and_not_repeated(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    # PKCS#8: encrypted without the optional bcrypt package (see the OpenSSH-format test).
    key = asyncssh.read_private_key(sftp_server.client_key)
    encrypted = tmp_path / "encrypted_key"
    encrypted.write_bytes(key.export_private_key("pkcs8-pem", passphrase="right horse"))
    encrypted.chmod(0o600)
    with pytest.raises(PermanentRemoteError, match="passphrase") as caught:
        await connect(settings_for(sftp_server, private_key=encrypted,
                                   private_key_passphrase=SecretStr("wrong battery")))
    assert "wrong battery" not in str(caught.value) and "right horse" not in str(caught.value)
    with pytest.raises(PermanentRemoteError, match="Passphrase must be specified"):
        await connect(settings_for(sftp_server, private_key=encrypted))
    async with await connect(settings_for(sftp_server, private_key=encrypted,
                                          private_key_passphrase=SecretStr("right horse"))) as ok:
        assert await ok.list("/Send") == []


async def test_an_openssh_format_encrypted_key(simulator: SftpServer, tmp_path: Path) -> None:
    encrypted = tmp_path / "ssh_keygen_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(encrypted)],
                   check=True, timeout=30, capture_output=True)
    settings = settings_for(simulator, private_key=encrypted,
                            private_key_passphrase=SecretStr("s3cret"))
    try:
        import bcrypt  # noqa: F401, PLC0415
    except ImportError:
        with pytest.raises(PermanentRemoteError, match="bcrypt") as caught:
            await connect(settings)
        assert "s3cret" not in str(caught.value)
        return
    with pytest.raises(PermanentRemoteError, match="authentication refused"):
        await connect(settings)  # decrypted, but not authorized on the server


async def test_an_unauthorized_key_fails_fast_and_permanently(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(PermanentRemoteError, match="authentication refused") as caught:
        await connect(settings_for(sftp_server, private_key=new_key(tmp_path / "stranger")))
    assert time.monotonic() - started < 5
    assert sftp_server.username in str(caught.value)


async def test_a_closed_port_is_retryable(tmp_path: Path) -> None:
    known = write_known_hosts(tmp_path / "kh", 1, "ssh-ed25519 AAAA")
    settings = RemoteSettings(host="127.0.0.1", port=free_port(), username="nobody",
                              private_key=new_key(tmp_path / "k"), known_hosts=known,
                              connect_timeout_seconds=5)
    with pytest.raises(RetryableRemoteError, match=r"127\.0\.0\.1:\d+: Connection refused"):
        await connect(settings)


async def test_the_credentials_directory_key_wins(sftp_server: SftpServer,
                                                  tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(sftp_server.client_key, credentials / "private_key")
    (credentials / "private_key").chmod(0o400)
    settings = settings_for(sftp_server, private_key=new_key(tmp_path / "stranger"))
    async with await connect(settings, credentials_dir=credentials) as session:
        assert await session.list("/Send") == []
    with pytest.raises(PermanentRemoteError, match="authentication refused"):
        await connect(settings, credentials_dir=tmp_path)  # no private_key there: the setting


# --- nothing from the home directory or the agent --------------------------------------------


@pytest.fixture
def fake_home(sftp_server: SftpServer, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh holds the key the server authorizes, and a config naming it."""
    home = tmp_path / "home"
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(parents=True, mode=0o700)
    shutil.copy(sftp_server.client_key, dot_ssh / "id_ed25519")
    (dot_ssh / "id_ed25519").chmod(0o600)
    shutil.copy(sftp_server.known_hosts, dot_ssh / "known_hosts")
    (dot_ssh / "config").write_text(
        f"Host *\n  IdentityFile {dot_ssh / 'id_ed25519'}\n  User {sftp_server.username}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


async def test_keys_in_the_home_directory_are_never_used(
        sftp_server: SftpServer, fake_home: Path, tmp_path: Path) -> None:
    # The trap is real: asyncssh's defaults log in with the home directory's key.
    async with asyncssh.connect(sftp_server.host, sftp_server.port,
                                username=sftp_server.username) as conn:
        assert conn.get_extra_info("username") == sftp_server.username
    stranger = new_key(tmp_path / "configured_key")
    with pytest.raises(PermanentRemoteError, match="authentication refused"):
        await connect(settings_for(sftp_server, private_key=stranger))


async def test_the_ssh_config_file_is_never_read(sftp_server: SftpServer,
                                                 fake_home: Path) -> None:
    # Read, it would send us elsewhere (nothing listens on 127.0.0.2:1).
    config = fake_home / ".ssh" / "config"
    config.write_text("Host *\n  Hostname 127.0.0.2\n  Port 1\n  User nobody\n")
    with pytest.raises(OSError):  # the trap is real
        await asyncssh.connect(sftp_server.host, sftp_server.port, connect_timeout=5)
    async with await connect(settings_for(sftp_server)) as session:
        assert await session.list("/Send") == []


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[Path]:
    """A real ssh-agent on a socket of its own, stopped afterwards."""
    if shutil.which("ssh-agent") is None:
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists(), "ssh-agent did not start"
        yield sock
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_ssh_agent_is_never_used(sftp_server: SftpServer, ssh_agent: Path,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "empty_home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
    added = subprocess.run(["ssh-add", str(sftp_server.client_key)], capture_output=True,
                           timeout=30, check=False)
    assert added.returncode == 0, added.stderr
    # The trap is real: asyncssh's defaults log in with the agent's key.
    async with asyncssh.connect(sftp_server.host, sftp_server.port,
                                username=sftp_server.username,
                                known_hosts=str(sftp_server.known_hosts)) as conn:
        assert conn.get_extra_info("username") == sftp_server.username
    stranger = new_key(tmp_path / "configured_key")
    with pytest.raises(PermanentRemoteError, match="authentication refused"):
        await connect(settings_for(sftp_server, private_key=stranger))


async def test_a_bogus_agent_socket_does_not_matter(sftp_server: SftpServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no" / "agent.sock"))
    monkeypatch.setenv("HOME", str(tmp_path))
    async with await connect(settings_for(sftp_server)) as session:
        assert await session.list("/Send") == []


# --- faults ---------------------------------------------------------------------------------


async def _list(session: SftpRemote, _local: Path) -> object:
    return await session.list("/Send")


async def _stat(session: SftpRemote, _local: Path) -> object:
    return await session.stat("/Send/s.tmp")


async def _read(session: SftpRemote, _local: Path) -> object:
    return await session.read("/Send/s.tmp", 1)


async def _rename(session: SftpRemote, _local: Path) -> object:
    return await session.rename("/Send/s.tmp", "/Send/s.part")


async def _remove(session: SftpRemote, _local: Path) -> object:
    return await session.remove("/Send/s.tmp")


async def _upload(session: SftpRemote, local: Path) -> object:
    return await session.upload(local, "/Send/u.tmp")


@pytest.mark.parametrize("operation", [_list, _stat, _read, _rename, _remove, _upload],
                         ids=lambda op: op.__name__.lstrip("_"))
async def test_a_stalled_link_fails_every_operation_within_the_timeout(
        sftp_server: SftpServer, tmp_path: Path, operation: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    (sftp_server.send_dir / "s.tmp").write_bytes(b"stalled")
    local = random_file(tmp_path / "u", 1000)
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        settings = through(proxy, sftp_server, tmp_path, operation_timeout_seconds=1)
        async with await connect(settings) as session:
            assert await session.stat("/Send/s.tmp") is not None
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(RetryableRemoteError, match="within 1 s"):
                await operation(session, local)
            assert 0.9 <= time.monotonic() - started < 3
            started = time.monotonic()  # the stalled session was dropped: no second wait
            with pytest.raises(RetryableRemoteError):
                await session.list("/Send")
            assert time.monotonic() - started < 0.5
            proxy.resume()
        async with await connect(settings) as again:
            # A request the proxy held may reach the server late: compare with its disk.
            names = {entry.name for entry in await again.list("/Send")}
            assert names == {p.name for p in sftp_server.send_dir.iterdir() if p.is_file()}
    assert_nothing_left_behind(caplog)


async def test_a_link_stalled_mid_upload_trips_the_watchdog(
        sftp_server: SftpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    local = random_file(tmp_path / "big", 24 * MB)
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        settings = through(proxy, sftp_server, tmp_path, operation_timeout_seconds=1)
        async with await connect(settings) as session:
            progress: list[int] = []

            def stall_once(done: int) -> None:
                progress.append(done)
                proxy.stall()

            started = time.monotonic()
            with pytest.raises(RetryableRemoteError, match="within 1 s"):
                await session.upload(local, "/Send/big.tmp", progress=stall_once)
            assert time.monotonic() - started < 4
            assert progress and progress[-1] < local.stat().st_size
    assert_nothing_left_behind(caplog)


async def test_a_slow_link_is_not_a_stalled_one(sftp_server: SftpServer,
                                                tmp_path: Path) -> None:
    local = random_file(tmp_path / "slow", 2 * MB + 500_000)
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        settings = through(proxy, sftp_server, tmp_path, operation_timeout_seconds=1)
        async with await connect(settings) as session:
            proxy.throttle(1 * MB)
            started = time.monotonic()
            assert await session.upload(local, "/Send/slow.tmp") == local.stat().st_size
            assert time.monotonic() - started > 1.5  # longer than one operation timeout
    assert sha256(sftp_server.send_dir / "slow.tmp") == sha256(local)


async def test_a_cut_mid_upload_is_retryable(sftp_server: SftpServer, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    local = random_file(tmp_path / "cut", 16 * MB)
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        settings = through(proxy, sftp_server, tmp_path)
        async with await connect(settings) as session:
            with pytest.raises(RetryableRemoteError, match=r"upload /Send/cut\.tmp"):
                await session.upload(local, "/Send/cut.tmp", progress=lambda _: proxy.cut())
        assert proxy.cuts == 1
        async with await connect(settings) as again:  # the next session finishes the job
            assert await again.upload(local, "/Send/cut.tmp") == local.stat().st_size
    assert sha256(sftp_server.send_dir / "cut.tmp") == sha256(local)
    assert_nothing_left_behind(caplog)


async def test_random_cuts_are_retryable_until_they_stop(sftp_server: SftpServer,
                                                         tmp_path: Path) -> None:
    local = random_file(tmp_path / "r", 4 * MB)
    failures: list[RemoteError] = []
    async with FaultProxy(sftp_server.host, sftp_server.port, seed=20160728,
                          cut_after=(100_000, 3 * MB), max_cuts=2) as proxy:
        settings = through(proxy, sftp_server, tmp_path)
        for _attempt in range(4):
            try:
                async with await connect(settings) as session:
                    await session.upload(local, "/Send/r.tmp")
                    break
            except RetryableRemoteError as exc:
                failures.append(exc)
        assert proxy.cuts == 2
    assert len(failures) == 2
    assert sha256(sftp_server.send_dir / "r.tmp") == sha256(local)


async def test_keepalives_notice_a_dead_link(sftp_server: SftpServer, tmp_path: Path) -> None:
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        settings = through(proxy, sftp_server, tmp_path, operation_timeout_seconds=60,
                           keepalive_seconds=0.3)
        async with await connect(settings) as session:
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(RetryableRemoteError):
                await session.list("/Send")
            assert time.monotonic() - started < 5  # keepalives, not the 60 s timeout


async def test_a_server_that_never_answers_bounds_the_connect(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    async with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(RetryableRemoteError, match="within 1 s"):
            await connect(through(proxy, sftp_server, tmp_path, connect_timeout_seconds=1))
        assert time.monotonic() - started < 3
        assert proxy.accepted == 1


def assert_nothing_left_behind(caplog: pytest.LogCaptureFixture) -> None:
    """No task or future of ours or asyncssh's failed unseen (a leak after a given-up call)."""
    gc.collect()
    leaked = [r.getMessage() for r in caplog.records
              if r.name == "asyncio" and "never retrieved" in r.getMessage()]
    assert leaked == []


class _ShortReads:
    """A stand-in file handle whose reads answer at most ``most`` bytes, or never."""

    def __init__(self, data: bytes, most: int, *, hang: bool = False) -> None:
        self.data, self.most, self.hang = data, most, hang
        self.requests = 0

    async def read(self, size: int, offset: int) -> bytes:
        self.requests += 1
        if self.hang:
            await asyncio.Event().wait()
        return self.data[offset:offset + min(size, self.most)]


@pytest.mark.parametrize(("offset", "length"), [(0, 10_000), (5, 9_995), (5, 100_000),
                                                (9_999, 1), (10_000, 5), (20_000, 5),
                                                (123, 0)])
async def test_receive_assembles_short_answers(offset: int, length: int) -> None:
    data = os.urandom(10_000)
    handle = _ShortReads(data, most=700)
    got = await sftp.receive(handle, offset, length, block=1024,  # type: ignore[arg-type]
                             window=4, stall=5)
    assert got == data[offset:offset + length]


async def test_receive_gives_up_a_silent_server_and_leaves_nothing_running() -> None:
    handle = _ShortReads(b"x" * 100, most=100, hang=True)
    before = asyncio.all_tasks()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await sftp.receive(handle, 0, 100_000, block=10, window=3,  # type: ignore[arg-type]
                           stall=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert handle.requests == 3
    assert asyncio.all_tasks() == before


# --- the edge -------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "kind", "words"), [
    (ConnectionRefusedError(111, "Connection refused"), ConnectionLost,
     "Connection refused"),
    (ConnectionResetError(104, "Connection reset by peer"), ConnectionLost, "reset"),
    (OSError(113, "Connect call failed ('192.0.2.1', 22)"), ConnectionLost,
     "No route to host"),
    (socket.gaierror(-2, "Name or service not known"), ConnectionLost,
     "Name or service not known"),
    (TimeoutError(), ConnectionLost, "no answer within 2 s"),
    (asyncssh.ConnectionLost("Connection lost"), ConnectionLost, "connection lost"),
    (asyncssh.ProtocolError("bad\npacket"), ConnectionLost, "bad packet"),
    (asyncssh.SFTPConnectionLost("gone"), ConnectionLost, "gone"),
    (asyncssh.SFTPFailure("Failure"), RetryableRemoteError, "Failure"),
    (asyncssh.SFTPNoSpaceOnFilesystem("full"), RetryableRemoteError, "full"),
    (asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE, "busy"), RetryableRemoteError,
     "busy"),
    (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), PermanentRemoteError,
     "trust-host"),
    (asyncssh.PermissionDenied("Permission denied"), PermanentRemoteError,
     "authentication refused"),
    (asyncssh.IllegalUserName("Illegal"), PermanentRemoteError, "user name"),
    (asyncssh.SFTPPermissionDenied("Permission denied"), PermanentRemoteError,
     "Permission denied"),
    (asyncssh.SFTPNoSuchFile("No such file"), PermanentRemoteError, "No such file"),
    (asyncssh.SFTPOpUnsupported("nope"), PermanentRemoteError, "nope"),
    (asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no sftp"),
     PermanentRemoteError, "no sftp"),
])
def test_errors_are_translated_at_the_edge(error: BaseException, kind: type[RemoteError],
                                           words: str) -> None:
    translated = translate(error, "where", timeout=2)
    assert type(translated) is kind
    message = str(translated)
    assert message.startswith("where: ") and words in message and "\n" not in message
    with pytest.raises(kind) as caught, sftp.translated("where", 2):
        raise error
    assert caught.value.__cause__ is error


def test_other_errors_are_not_swallowed_by_the_edge() -> None:
    with pytest.raises(KeyError), sftp.translated("where"):
        raise KeyError("a bug, not a remote failure")


def test_loose_modes_are_described() -> None:
    assert sftp._mode_problem(stat.S_IFREG | 0o600) is None
    assert sftp._mode_problem(stat.S_IFREG | 0o400) is None
    assert "readable" in (sftp._mode_problem(stat.S_IFREG | 0o640) or "")
    assert "writable" in (sftp._mode_problem(stat.S_IFREG | 0o620) or "")
