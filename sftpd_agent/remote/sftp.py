"""The provider's SFTP server over asyncssh: the only module that talks to the network.

:func:`connect` opens a session that trusts host keys only from ``remote.known_hosts`` (an
unknown or changed key is refused, never learned) and logs in only with the configured key:
no ``~/.ssh/config``, no SSH agent, no default identities, no password or GSS. The session is
a :class:`~sftpd_agent.remote.base.Remote`.

Every asyncssh, OS and timeout error is translated at one edge, :func:`translated`:
:class:`RetryableRemoteError` for what may pass (network, timeout, busy server; its subclass
:class:`~sftpd_agent.remote.base.ConnectionLost` when the link itself failed),
:class:`PermanentRemoteError` for what a person must fix (host key, authentication,
permission, missing path). Each operation is bounded by ``operation_timeout_seconds``; the
transfer of an upload or a read instead by a stall watchdog (no request answered for that
long), so that a large file on a slow link finishes while a dead link is given up. A timed-out
session is dropped: the caller reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO, cast

import asyncssh
from pydantic import SecretStr

from ..config import RemoteSettings
from ..errors import PermanentRemoteError, RemoteError, RetryableRemoteError
from ..rules.display import one_line
from .base import ConnectionLost, RemoteEntry, TargetExists, decode_name

# Uploads: each write request carries BLOCK_SIZE bytes (less if the server's limits say so),
# with at most MAX_REQUESTS of them unacknowledged: 8 MiB in flight.
BLOCK_SIZE = 256 * 1024
MAX_REQUESTS = 32
# A server that does not advertise limits@openssh.com leaves asyncssh at 16 KiB writes: 0.4x
# the speed of OpenSSH's sftp against ProFTPD. Servers known by their SSH banner take more
# (write_block_for); a write too large for the server would end the session, every time:
UNADVERTISED_WRITE_SIZES = (
    # sftp-server (and internal-sftp) take messages up to 256 KiB; OpenSSH advertises 255 KiB
    # writes since 8.6, this is for the older ones.
    ("OpenSSH", 255 * 1024),
    # ProFTPD's mod_sftp takes requests up to 512 KiB (a 1 MiB one ends the session) and
    # sends no limits; 255 KiB fills eight of its 32 KiB channel packets exactly.
    ("mod_sftp", 255 * 1024),
)
# Any other: what every server must take (the SFTP drafts: packets of 34,000 bytes), and
# what OpenSSH's own sftp sends (-B 32768), with as many in flight as it keeps (-R 64).
PORTABLE_WRITE_SIZE = 32 * 1024
MAX_SMALL_REQUESTS = 64
KEEPALIVE_COUNT_MAX = 3  # unanswered keepalives before the connection is declared lost
CREDENTIAL_KEY = "private_key"  # file name of the key in $CREDENTIALS_DIRECTORY
# Ciphers in our order of preference: AES-GCM first, which OpenSSL runs fastest in asyncssh.
ENCRYPTION_ALGS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                   "chacha20-poly1305@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr")

# SFTP status codes worth retrying: the server failed or lost us, not our request.
_RETRYABLE_SFTP = frozenset({
    asyncssh.FX_FAILURE, asyncssh.FX_NO_CONNECTION, asyncssh.FX_CONNECTION_LOST,
    asyncssh.FX_NO_SPACE_ON_FILESYSTEM, asyncssh.FX_QUOTA_EXCEEDED, asyncssh.FX_LOCK_CONFLICT,
})
_LOST_SFTP = frozenset({asyncssh.FX_NO_CONNECTION, asyncssh.FX_CONNECTION_LOST})
# A path through a file ("Send/a.csv/x"): OpenSSH says FX_NO_SUCH_FILE; ProFTPD, to an SFTP v3
# client, a plain FX_FAILURE with this reason (its text for ENOTDIR). Both: it is not there.
_NOT_A_DIRECTORY = "Not a directory"
_TRUST_HINT = ("check remote.known_hosts, or run `sftpd-agent trust-host` after verifying "
               "the fingerprint with the provider")


def translate(exc: BaseException, where: str, timeout: float | None = None) -> RemoteError:
    """The agent's error for a third-party one: retryable or permanent, the reason kept."""
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, asyncssh.Error):
        reason = one_line(exc.reason) or type(exc).__name__
    else:
        reason = one_line(str(exc)) or type(exc).__name__
    match exc:
        case asyncssh.HostKeyNotVerifiable():
            return PermanentRemoteError(f"{where}: host key not trusted ({reason}): "
                                        f"{_TRUST_HINT}")
        case asyncssh.PermissionDenied():
            return PermanentRemoteError(f"{where}: authentication refused ({reason})")
        case asyncssh.IllegalUserName():
            return PermanentRemoteError(f"{where}: user name refused ({reason})")
        case asyncssh.DisconnectError():
            return ConnectionLost(f"{where}: connection lost ({reason})")
        case asyncssh.ChannelOpenError(code=asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED):
            return PermanentRemoteError(f"{where}: SFTP refused ({reason})")
        case asyncssh.ChannelOpenError():
            return RetryableRemoteError(f"{where}: SFTP unavailable ({reason})")
        case asyncssh.SFTPError(code=code) if code in _LOST_SFTP:
            return ConnectionLost(f"{where}: {reason}")
        case asyncssh.SFTPError() if not_there(exc):
            return PermanentRemoteError(f"{where}: {reason}")
        case asyncssh.SFTPError(code=code) if code in _RETRYABLE_SFTP:
            return RetryableRemoteError(f"{where}: {reason}")
        case asyncssh.SFTPError():
            return PermanentRemoteError(f"{where}: {reason}")
        case TimeoutError():  # before OSError, its base class
            within = f" within {timeout:g} s" if timeout is not None else ""
            return ConnectionLost(f"{where}: no answer{within}")
        case OSError():
            return ConnectionLost(f"{where}: {_os_reason(exc) or reason}")
    return RetryableRemoteError(f"{where}: {reason}")


def not_there(exc: asyncssh.SFTPError) -> bool:
    """Whether the server says the path does not exist, in either server's words."""
    return isinstance(exc, asyncssh.SFTPNoSuchFile) or (
        exc.code == asyncssh.FX_FAILURE and exc.reason == _NOT_A_DIRECTORY)


def _os_reason(exc: OSError) -> str:
    """The system's words for an errno ("Connection refused"), not asyncio's wrapping."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return one_line(exc.strerror or "")


@contextlib.contextmanager
def translated(where: str, timeout: float | None = None) -> Iterator[None]:
    """The one edge where asyncssh, OS and timeout errors become the agent's own."""
    try:
        yield
    except (asyncssh.Error, OSError) as exc:  # TimeoutError is an OSError
        raise translate(exc, where, timeout) from exc


def _mode_problem(mode: int) -> str | None:
    """What is wrong with a private key file's permissions, if anything."""
    loose = stat.S_IMODE(mode) & 0o077
    if not loose:
        return None
    kind = "readable" if loose & 0o044 else "writable" if loose & 0o022 else "accessible"
    return f"is {kind} by group/others (mode {stat.S_IMODE(mode):04o}): chmod 600 it"


def key_file(settings: RemoteSettings, credentials_dir: Path | None) -> Path:
    """The client key: systemd's credential when there is one, else ``remote.private_key``."""
    if credentials_dir is not None:
        credential = credentials_dir / CREDENTIAL_KEY
        if credential.is_file():
            return credential
    return settings.private_key


def load_client_key(path: Path, passphrase: SecretStr | None) -> asyncssh.SSHKey:
    """Read the private key, refusing a file others may read; never repeats the passphrase."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PermanentRemoteError(f"private key {path}: no such file") from None
    except OSError as exc:
        raise PermanentRemoteError(f"private key {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        problem = _mode_problem(os.fstat(file.fileno()).st_mode)
        if problem:
            raise PermanentRemoteError(f"private key {path} {problem}")
        data = file.read()
    secret = passphrase.get_secret_value() if passphrase is not None else None
    try:
        return asyncssh.import_private_key(data, secret)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        reason = one_line(str(exc))
        if "bcrypt" in reason:
            reason += " (install the bcrypt package: pip install 'asyncssh[bcrypt]')"
        elif "ncorrect passphrase" in reason or "nable to decrypt" in reason:
            reason = "wrong passphrase (remote.private_key_passphrase)"
        raise PermanentRemoteError(f"private key {path}: {reason}") from None


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """The only host keys the agent trusts."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PermanentRemoteError(
            f"known_hosts {path} not found: run `sftpd-agent trust-host` to fetch and confirm "
            "the server's host key") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentRemoteError(f"known_hosts {path}: {one_line(str(exc))}") from None
    try:
        return asyncssh.import_known_hosts(text)
    except ValueError as exc:
        raise PermanentRemoteError(f"known_hosts {path}: {one_line(str(exc))}") from None


def describe_endpoint(settings: RemoteSettings) -> str:
    """``user@host:port``, for messages."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    user = f"{settings.username}@" if settings.username else ""
    return f"{user}{host}:{settings.port}"


async def connect(settings: RemoteSettings, *, credentials_dir: Path | None = None) -> SftpRemote:
    """A logged-in SFTP session, within ``connect_timeout_seconds``; no retry here."""
    for name, value in (("host", settings.host), ("username", settings.username)):
        if not value:
            raise PermanentRemoteError(f"remote.{name} is not set")
    known_hosts = load_known_hosts(settings.known_hosts)
    # Decrypting an OpenSSH key runs bcrypt for a while: not on the event loop.
    key = await asyncio.to_thread(load_client_key, key_file(settings, credentials_dir),
                                  settings.private_key_passphrase)
    where = describe_endpoint(settings)
    timeout = settings.connect_timeout_seconds
    with translated(where, timeout):
        async with asyncio.timeout(timeout):
            conn = await asyncssh.connect(
                settings.host, settings.port, username=settings.username,
                known_hosts=known_hosts, client_keys=[key], client_certs=(),
                # Nothing from the environment or the home directory:
                config=None, agent_path=None, agent_identities=None, agent_forwarding=False,
                pkcs11_provider=None, x509_trusted_certs=None, x509_trusted_cert_paths=None,
                password=None, password_auth=False, kbdint_auth=False, gss_auth=False,
                gss_kex=False, gss_host=None, host_based_auth=False,
                preferred_auth="publickey", encryption_algs=ENCRYPTION_ALGS,
                compression_algs=None,
                connect_timeout=timeout, keepalive_interval=settings.keepalive_seconds,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
            )
            try:
                sftp = await conn.start_sftp_client(sftp_version=3)
            except BaseException:
                conn.abort()
                raise
    return SftpRemote(conn, sftp, timeout=settings.operation_timeout_seconds)


class SftpRemote:
    """One SFTP session to the provider: the production
    :class:`~sftpd_agent.remote.base.Remote`.

    Not thread-safe; one event loop. After a timeout or a lost connection every call raises
    :class:`RetryableRemoteError`: close it and connect again.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, *,
                 timeout: float) -> None:
        self._conn = conn
        self._sftp = sftp
        self._timeout = timeout
        limits = sftp.limits
        self._write_block = write_block_for(
            limits.max_write_len if advertises_limits(sftp) else None,
            str(conn.get_extra_info("server_version", "")))
        self._write_window = requests_in_flight(self._write_block)
        self._read_block = min(BLOCK_SIZE, limits.max_read_len or BLOCK_SIZE)
        # The file the last reads were of, kept open for the next read of it (a report is
        # read a chunk at a time, the next asked for while one is ingested) until
        # ``release`` or any other operation.
        self._held: tuple[str, asyncssh.SFTPClientFile] | None = None

    @contextlib.asynccontextmanager
    async def _edge(self, what: str, *, bounded: bool = True,
                    reading: bool = False) -> AsyncIterator[None]:
        """Around every operation: the file reads kept open let go (but by a read), the time
        bound, the translation, a stalled session dropped."""
        if not reading:
            await self._let_go()
        with translated(what, self._timeout):
            try:
                if bounded:
                    async with asyncio.timeout(self._timeout):
                        yield
                else:
                    yield
            except TimeoutError:
                self._conn.abort()  # waiting on it again would only stall again
                raise

    async def list(self, directory: str) -> list[RemoteEntry]:
        """Every entry but folders and symbolic links, even one of unknown type (an SFTP v3
        server may send no type bits). Names are read as bytes: one that is not UTF-8 is
        listed in an escaped form, flagged, instead of failing the whole listing."""
        async with self._edge(f"list {directory}"):
            names = await self._sftp.readdir(os.fsencode(directory))
        entries = []
        for name in names:
            raw = name.filename
            if not isinstance(raw, bytes):  # a bytes path lists bytes names
                raw = str(raw).encode("utf-8", "surrogateescape")
            if raw in (b".", b"..") or not listed(name.attrs):
                continue
            text, undecodable = decode_name(raw)
            entries.append(RemoteEntry(text, name.attrs.size or 0,
                                       float(name.attrs.mtime or 0), undecodable))
        return entries

    async def upload(
        self, local: Path, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> int:
        with local.open("rb") as source:  # a missing local file is not the server's fault
            async with self._edge(f"upload {remote}", bounded=False), \
                    self._opened(remote, "wb") as handle:
                written = await send(source, handle, block=self._write_block,
                                     window=self._write_window, stall=self._timeout,
                                     progress=progress)
                async with asyncio.timeout(self._timeout):
                    await flush_to_disk(handle)
        return written

    @contextlib.asynccontextmanager
    async def _opened(self, path: str, mode: str) -> AsyncIterator[asyncssh.SFTPClientFile]:
        """A remote file, opened and closed within the operation timeout.

        ``block_size=0``: each read or write is one request, issued by us (see :func:`send`),
        so that nothing of asyncssh's is left running when an operation is given up. After a
        failure the handle is closed only if the session lives: a dead one would stall again.
        """
        async with asyncio.timeout(self._timeout):
            handle = await self._sftp.open(path, mode, block_size=0)
        try:
            yield handle
        except asyncssh.SFTPError as exc:
            if exc.code not in _LOST_SFTP:
                with contextlib.suppress(asyncssh.Error, OSError):
                    async with asyncio.timeout(self._timeout):
                        await handle.close()
            raise
        async with asyncio.timeout(self._timeout):
            await handle.close()

    async def rename(self, old: str, new: str) -> None:
        async with self._edge(f"rename {old} -> {new}"):
            try:
                # SFTP v3 rename never replaces; posix-rename@openssh.com would.
                await self._sftp.rename(old, new)
            except asyncssh.SFTPError as exc:
                if exc.code not in _LOST_SFTP and await self._exists(new):
                    raise TargetExists(f"rename {old} -> {new}: {new} already exists") from None
                raise

    async def _exists(self, path: str) -> bool:
        try:
            await self._sftp.lstat(path)
        except asyncssh.SFTPError as exc:
            if not_there(exc):
                return False
            raise
        return True

    async def stat(self, path: str) -> RemoteEntry | None:
        async with self._edge(f"stat {path}"):
            try:
                attrs = await self._sftp.stat(path)
            except asyncssh.SFTPError as exc:
                if not_there(exc):
                    return None
                raise
        return _entry(PurePosixPath(path).name, attrs)

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        """Reads of one file in a row share its handle, opened by the first: the next
        read's requests go out at once, not after an open whose answer waits for the event
        loop (busy ingesting the chunk before). Closed by :meth:`release`, by any other
        operation, or after a failed read."""
        async with self._edge(f"read {path}", bounded=False, reading=True):
            handle = await self._reading(path)
            try:
                if length is None:  # to the end as it is now
                    async with asyncio.timeout(self._timeout):
                        attrs = await handle.stat()
                    length = max(0, (attrs.size or 0) - offset)
                return await receive(handle, offset, length, block=self._read_block,
                                     window=MAX_REQUESTS, stall=self._timeout)
            except asyncssh.SFTPError as exc:
                await self._let_go(close=exc.code not in _LOST_SFTP)
                raise
            except BaseException:
                await self._let_go(close=False)  # a lost or stalled session would stall again
                raise

    async def release(self) -> None:
        await self._let_go()

    async def _reading(self, path: str) -> asyncssh.SFTPClientFile:
        """The handle the reads of ``path`` share, opened if need be."""
        if self._held is not None and self._held[0] == path:
            return self._held[1]
        await self._let_go()
        async with asyncio.timeout(self._timeout):
            handle = await self._sftp.open(path, "rb", block_size=0)
        self._held = (path, handle)
        return handle

    async def _let_go(self, *, close: bool = True) -> None:
        """Close the file reads kept open, if any (its error ignored: it was read)."""
        held, self._held = self._held, None
        if held is not None and close:
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await held[1].close()

    async def remove(self, path: str) -> None:
        async with self._edge(f"remove {path}"):
            try:
                await self._sftp.remove(path)
            except asyncssh.SFTPError as exc:
                if not not_there(exc):
                    raise

    async def close(self) -> None:
        """End the session; never raises, never waits longer than the operation timeout."""
        self._held = None  # closed with the session
        self._sftp.exit()
        self._conn.close()
        try:
            async with asyncio.timeout(self._timeout):
                await self._conn.wait_closed()
        except TimeoutError:
            self._conn.abort()

    async def __aenter__(self) -> SftpRemote:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def advertises_limits(sftp: asyncssh.SFTPClient) -> bool:
    """Whether the server sent limits@openssh.com (then ``sftp.limits`` are its own).

    asyncssh keeps this private; should it move, the answer is True: the limits it shows are
    then obeyed as they are, which is always safe.
    """
    return bool(getattr(getattr(sftp, "_handler", None), "_supports_limits", True))


def write_block_for(max_write_len: int | None, server_version: str) -> int:
    """Bytes per write request: within the server's advertised ``max_write_len``; without one
    (None), what the server is known by its banner to take, else PORTABLE_WRITE_SIZE."""
    if max_write_len is not None:
        return min(BLOCK_SIZE, max_write_len or BLOCK_SIZE)
    software = server_version.split("-", 2)[-1]  # "SSH-2.0-mod_sftp" -> "mod_sftp"
    for prefix, size in UNADVERTISED_WRITE_SIZES:
        if software.startswith(prefix):
            return size
    return PORTABLE_WRITE_SIZE


def requests_in_flight(block: int) -> int:
    """Write requests left unacknowledged at once: MAX_REQUESTS of large blocks (8 MiB), up to
    MAX_SMALL_REQUESTS of small ones."""
    return max(MAX_REQUESTS, min(MAX_SMALL_REQUESTS, BLOCK_SIZE * MAX_REQUESTS // block))


_LEFT_OUT = frozenset({asyncssh.FILEXFER_TYPE_DIRECTORY, asyncssh.FILEXFER_TYPE_SYMLINK})


def listed(attrs: asyncssh.SFTPAttrs) -> bool:
    """Whether a listing keeps an entry: anything but a folder or a symbolic link, read from
    the type, or, when the type is unknown, from the mode's file-type bits if it has any."""
    if attrs.type in _LEFT_OUT:
        return False
    if attrs.type == asyncssh.FILEXFER_TYPE_UNKNOWN and attrs.permissions is not None:
        return stat.S_IFMT(attrs.permissions) not in (stat.S_IFDIR, stat.S_IFLNK)
    return True


def _entry(name: str, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
    return RemoteEntry(name, attrs.size or 0, float(attrs.mtime or 0))


async def send(source: BinaryIO, handle: asyncssh.SFTPClientFile, *, block: int, window: int,
               stall: float, progress: Callable[[int], None] | None = None) -> int:
    """Copy ``source`` to ``handle`` with up to ``window`` writes in flight; bytes written.

    ``handle`` must be opened with ``block_size=0``: one request per write, none left behind.

    Raises TimeoutError when no write is acknowledged for ``stall`` seconds: a slow link
    still progresses, a dead one does not.
    """
    pending: set[asyncio.Future[int]] = set()
    offset = written = 0
    exhausted = False
    try:
        while True:  # each pass completes at least one write, or raises
            while not exhausted and len(pending) < window:
                data = source.read(block)
                if not data:
                    exhausted = True
                    break
                pending.add(asyncio.ensure_future(handle.write(data, offset)))
                offset += len(data)
            if not pending:
                return written
            done, pending = await asyncio.wait(pending, timeout=stall,
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError(f"no write acknowledged for {stall:g} s")
            failures = [error for task in done if (error := task.exception()) is not None]
            if failures:
                raise failures[0]
            for task in done:  # one report per acknowledged write
                written += task.result()
                if progress is not None:
                    progress(written)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def receive(handle: asyncssh.SFTPClientFile, offset: int, length: int, *, block: int,
                  window: int, stall: float) -> bytes:
    """``length`` bytes from ``offset`` (fewer at the end of the file), with up to ``window``
    reads in flight; TimeoutError when no read is answered for ``stall`` seconds."""
    pieces: dict[int, bytes] = {}
    pending: dict[asyncio.Future[bytes], tuple[int, int]] = {}
    cursor, end = offset, offset + length  # end: as far as the file is known to go
    try:
        while True:  # each pass answers at least one read, or raises
            while cursor < end and len(pending) < window:
                size = min(block, end - cursor)
                pending[asyncio.ensure_future(_read_at(handle, cursor, size))] = (cursor, size)
                cursor += size
            if not pending:
                break
            done, _ = await asyncio.wait(pending, timeout=stall,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError(f"no read answered for {stall:g} s")
            failures = [error for task in done if (error := task.exception()) is not None]
            if failures:
                raise failures[0]
            for task in done:
                start, size = pending.pop(task)
                data = task.result()
                pieces[start] = data
                if not data:
                    end = min(end, start)
                elif len(data) < size:  # a short answer: ask for the rest
                    rest = (start + len(data), size - len(data))
                    pending[asyncio.ensure_future(_read_at(handle, *rest))] = rest
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    out = bytearray()
    while piece := pieces.get(offset + len(out)):
        out += piece
    return bytes(out[:length])


async def _read_at(handle: asyncssh.SFTPClientFile, offset: int, size: int) -> bytes:
    """One read request; b"" at the end of the file."""
    return cast(bytes, await handle.read(size, offset))  # opened in binary mode


async def flush_to_disk(handle: asyncssh.SFTPClientFile) -> bool:
    """fsync@openssh.com where the server offers it; whether it was done."""
    try:
        await handle.fsync()
    except asyncssh.SFTPOpUnsupported:
        return False
    return True
