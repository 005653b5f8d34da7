"""The simulated provider as a server: asyncssh SFTP over a folder, plus its processing loop.

Shaped like aiosmtpd's ``Controller``: ``Simulator`` starts and stops in the caller's event
loop (``async with``); ``SimulatorThread`` runs one in a daemon thread with its own loop, for
callers that block or run the agent elsewhere.

The server behaves like the provider's OpenSSH ``internal-sftp`` where the agent can tell:
public-key authentication only, the folder as the SFTP root (chroot), SFTP version 3, and a
plain rename that refuses an existing target (``posix-rename@openssh.com`` replaces it).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import asyncssh

from ..clock import Clock
from ..errors import ConfigError
from .processing import (
    Processor,
    SimulatorOptions,
    system_clock,
)

# Errors for which link() cannot stand in for a no-replace rename (as sftp-server.c has it).
_NO_LINK = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EPERM, errno.EACCES,
                      errno.EMLINK, errno.ENOTSUP})


class ProviderSFTPServer(asyncssh.SFTPServer):
    """asyncssh's file server, chrooted, with OpenSSH's rename semantics."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path, *,
                 file_types: bool = True) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self._file_types = file_types
        self._root = os.path.realpath(os.fsencode(root))

    # asyncssh's chroot maps names lexically; the OS still follows a symbolic link. As in
    # OpenSSH's chroot, no path may lead out of the root: the folders on the way are
    # resolved for every request, and the last name too where the request follows it
    # (stat, open, listing); a link that leads out is "No such file".

    def _inside(self, local: bytes, *, follow: bool) -> bytes:
        resolved = os.path.realpath(local)
        if not follow and resolved != self._root:  # the last name itself, not its target
            parent, name = os.path.split(local)
            resolved = os.path.realpath(parent).rstrip(b"/") + b"/" + name
        if resolved != self._root and not resolved.startswith(self._root.rstrip(b"/") + b"/"):
            raise asyncssh.SFTPNoSuchFile("No such file")
        return local

    def map_path(self, path: bytes) -> bytes:
        return self._inside(super().map_path(path), follow=False)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._inside(self.map_path(path), follow=True)  # truncate, chmod, utime follow links
        super().setstat(path, attrs)

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        self._inside(self.map_path(path), follow=True)
        return super().open(path, pflags, attrs)

    # With ``file_types=False`` no attributes carry a file type: neither the SFTP v3 mode's
    # S_IFMT bits nor a type, as some servers send them.

    def _typed(self, attrs: asyncssh.SFTPAttrs) -> asyncssh.SFTPAttrs:
        if not self._file_types:
            attrs.type = asyncssh.FILEXFER_TYPE_UNKNOWN
            if attrs.permissions is not None:
                attrs.permissions = stat.S_IMODE(attrs.permissions)
        return attrs

    def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._typed(asyncssh.SFTPAttrs.from_local(os.lstat(self.map_path(path))))

    def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        local = self._inside(self.map_path(path), follow=True)
        return self._typed(asyncssh.SFTPAttrs.from_local(Path(os.fsdecode(local)).stat()))

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        return self._typed(asyncssh.SFTPAttrs.from_local(
            os.fstat(file_obj.fileno())))  # type: ignore[attr-defined]

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        self._inside(self.map_path(path), follow=True)
        async for name in super().scandir(path):
            name.attrs = self._typed(name.attrs)
            yield name

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename without replacing: link then unlink, so no window lets a target be lost."""
        old = Path(os.fsdecode(self.map_path(oldpath)))
        new = Path(os.fsdecode(self.map_path(newpath)))
        if old.is_file() and not old.is_symlink():
            try:
                new.hardlink_to(old)
            except FileExistsError:
                raise asyncssh.SFTPFailure("File already exists") from None
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
            else:
                try:
                    old.unlink()
                except OSError:
                    new.unlink()
                    raise
                return
        if new.is_symlink() or new.exists():
            raise asyncssh.SFTPFailure("File already exists")
        old.rename(new)


class _Tracked(asyncssh.SSHServer):
    """Keeps the set of live connections, so that stop() can close them."""

    def __init__(self, live: set[asyncssh.SSHServerConnection]) -> None:
        self._live = live
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._live.discard(self._conn)


class Simulator:
    """The provider: an SFTP server on ``root`` and the processing of its ``Send/`` folder.

    With ``serve=False`` only the processing runs, over a folder another SFTP server (e.g.
    OpenSSH) exposes. ``host_key``: a private key file; created (0600) when it does not
    exist yet, so that the fingerprint survives restarts; a fresh key when None.
    ``interval``: seconds between processing steps.
    """

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0,
                 authorized_keys: Path | None = None, host_key: Path | None = None,
                 options: SimulatorOptions | None = None, serve: bool = True,
                 clock: Clock = system_clock, interval: float = 0.2) -> None:
        self.root = Path(root)
        self.host = host
        self.serve = serve
        self._port = port
        self._authorized_keys = authorized_keys
        self._host_key = _host_key(host_key)
        self._interval = interval
        self._processor = Processor(self.root, options, clock=clock)
        self._file_types = options.file_types if options is not None else True
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def processor(self) -> Processor:
        return self._processor

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked)."""
        if self._acceptor is None:
            raise RuntimeError("the simulator is not listening")
        return self._acceptor.get_port()

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:...``, as ``ssh-keygen -l`` prints it."""
        return self._host_key.get_fingerprint("sha256")

    @property
    def host_public_key(self) -> str:
        """The host key in OpenSSH public format: ``ssh-ed25519 AAAA...``."""
        algorithm, blob = self._host_key.export_public_key("openssh").decode().split()[:2]
        return f"{algorithm} {blob}"

    def known_hosts_line(self) -> str:
        """This server's line for an OpenSSH ``known_hosts`` file."""
        where = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{where} {self.host_public_key}"

    @property
    def connections(self) -> int:
        """How many SSH connections are open now."""
        return len(self._live)

    async def start(self) -> None:
        self._processor.make_layout()
        if self.serve:
            if self._authorized_keys is None:
                raise ConfigError("the simulator needs authorized_keys to serve SFTP")
            try:
                self._acceptor = await asyncssh.listen(
                    self.host, self._port,
                    server_factory=lambda: _Tracked(self._live),
                    server_host_keys=[self._host_key],
                    authorized_client_keys=str(self._authorized_keys),
                    password_auth=False, kbdint_auth=False, gss_host=None,
                    sftp_factory=lambda chan: ProviderSFTPServer(
                        chan, self.root, file_types=self._file_types),
                    allow_scp=False, sftp_version=3,
                )
            except (OSError, asyncssh.KeyImportError) as exc:
                raise ConfigError(f"simulator cannot serve on {self.host}:{self._port}: "
                                  f"{exc}") from exc
        self._task = asyncio.create_task(self._processor.run(self._interval),
                                         name="simulator-processing")

    async def stop(self) -> None:
        """Stop listening, close open connections, stop processing after the current step."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        await self.drop_connections()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():  # we were cancelled ourselves
                    raise

    async def drop_connections(self) -> None:
        """Close every open connection, as a provider restart or a network cut would."""
        live = list(self._live)
        for conn in live:
            conn.close()
        for conn in live:
            await conn.wait_closed()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _host_key(path: Path | None) -> asyncssh.SSHKey:
    """The key in ``path``, or a new one (written to ``path`` when given)."""
    if path is not None and path.exists():
        try:
            return asyncssh.read_private_key(path)
        except (OSError, asyncssh.KeyImportError) as exc:
            raise ConfigError(f"simulator host key {path}: {exc}") from exc
    key = asyncssh.generate_private_key("ssh-ed25519")
    if path is not None:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.export_private_key("openssh"))
    return key


class SimulatorThread:
    """A ``Simulator`` in a daemon thread with its own event loop; start() and stop() block.

    Takes the same arguments as ``Simulator``. ``processor.step()`` may be called from the
    caller's thread while the loop runs.
    """

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0,
                 authorized_keys: Path | None = None, host_key: Path | None = None,
                 options: SimulatorOptions | None = None, serve: bool = True,
                 clock: Clock = system_clock, interval: float = 0.2) -> None:
        self.simulator = Simulator(root, host=host, port=port, authorized_keys=authorized_keys,
                                   host_key=host_key, options=options, serve=serve,
                                   clock=clock, interval=interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def processor(self) -> Processor:
        return self.simulator.processor

    @property
    def port(self) -> int:
        return self.simulator.port

    @property
    def host_key_fingerprint(self) -> str:
        return self.simulator.host_key_fingerprint

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait (at most ``timeout`` seconds) until it serves."""
        if self._thread is not None:
            raise RuntimeError("the simulator thread is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[Exception] = []
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop, ready, failed),
                                        name="sftpd-agent-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the simulator did not start within {timeout} s")
        if failed:
            self._thread.join(timeout)
            self._thread = self._loop = None
            raise failed[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator and its thread; errors of the simulator are raised here."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = self._loop = None

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event,
             failed: list[Exception]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.simulator.start())
            except Exception as exc:  # handed to the thread that called start()
                failed.append(exc)
                return
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
