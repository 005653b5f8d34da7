"""The provider's SFTP server as the agent sees it: a small interface, and a local double.

Everything the agent does remotely goes through :class:`Remote`: list a directory, upload a
file, rename, stat, read from an offset, remove. The asyncssh implementation is in ``sftp``;
:class:`LocalRemote` serves a local folder the same way (tests, and the simulator without a
network). Errors are the ``errors`` module's: :class:`RetryableRemoteError` for what may pass
(network, timeout, busy), :class:`PermanentRemoteError` for what a person must fix.

A rename never replaces an existing target: like SFTP v3 and OpenSSH's plain rename, it fails
with :class:`TargetExists`, which the publication protocol reads as "already published".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ..errors import PermanentRemoteError, RemoteError, RetryableRemoteError


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One name in a listing. ``name`` is text for logs and comparisons; when the server's
    bytes were not UTF-8 it is their escaped form (``caf\\xe9.csv``) and ``undecodable`` is
    set: such a name is shown, never used as a path."""

    name: str
    size: int
    mtime: float
    undecodable: bool = False


def decode_name(raw: bytes) -> tuple[str, bool]:
    """A remote name as text: UTF-8, or its escaped form and True when it is not UTF-8."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), True


class TargetExists(RemoteError):
    """A rename found its target already there."""


class ConnectionLost(RetryableRemoteError):
    """The link was cut or stopped answering (reset, broken pipe, no answer in time): the
    server refused nothing. After a connection that worked, such a cut does not push the
    next attempt out (see ``session``)."""


class Remote(Protocol):
    """One connected session to the provider (or a stand-in)."""

    async def list(self, directory: str) -> list[RemoteEntry]:
        """The entries of ``directory`` other than folders and symbolic links (one listing;
        no stat per file). An entry of unknown type is listed: some servers send no type."""
        ...

    async def upload(
        self, local: Path, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Write ``local`` to ``remote`` (created or truncated), flushed to disk where the
        server offers it; the bytes written."""
        ...

    async def rename(self, old: str, new: str) -> None:
        """Rename, never replacing: :class:`TargetExists` when ``new`` exists."""
        ...

    async def stat(self, path: str) -> RemoteEntry | None:
        """The file's entry, or None when there is no such file."""
        ...

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        """Bytes of ``path`` from ``offset`` (to the end when ``length`` is None)."""
        ...

    async def remove(self, path: str) -> None:
        """Remove ``path``; no error when it is already gone."""
        ...

    async def close(self) -> None: ...


def join(directory: str, name: str) -> str:
    return str(PurePosixPath(directory) / name) if directory else name


class LocalRemote:
    """A :class:`Remote` over a local folder: a test double with the real semantics."""

    def __init__(self, root: Path, *, block_size: int = 1 << 20) -> None:
        self.root = Path(root)
        self.block_size = block_size

    def _path(self, path: str) -> Path:
        resolved = (self.root / path.lstrip("/")).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise PermanentRemoteError(f"{path}: outside the root")
        return resolved

    async def list(self, directory: str) -> list[RemoteEntry]:
        folder = self._path(directory)
        if not folder.is_dir():
            raise PermanentRemoteError(f"{directory}: no such directory")
        entries = []
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                name, undecodable = decode_name(os.fsencode(entry.name))
                entries.append(RemoteEntry(name, info.st_size, info.st_mtime, undecodable))
        return entries

    async def upload(
        self, local: Path, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> int:
        target = self._path(remote)
        written = 0
        with local.open("rb") as source, target.open("wb") as out:
            while chunk := source.read(self.block_size):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
                await asyncio.sleep(0)
            out.flush()
            os.fsync(out.fileno())
        return written

    async def rename(self, old: str, new: str) -> None:
        source, target = self._path(old), self._path(new)
        try:
            os.link(source, target)
        except FileExistsError:
            raise TargetExists(f"{new} already exists") from None
        except FileNotFoundError:
            raise PermanentRemoteError(f"{old}: no such file") from None
        source.unlink()

    async def stat(self, path: str) -> RemoteEntry | None:
        try:
            info = self._path(path).stat()
        except FileNotFoundError:
            return None
        return RemoteEntry(PurePosixPath(path).name, info.st_size, info.st_mtime)

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        with self._path(path).open("rb") as handle:
            handle.seek(offset)
            return handle.read() if length is None else handle.read(length)

    async def remove(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    async def close(self) -> None:
        return None
