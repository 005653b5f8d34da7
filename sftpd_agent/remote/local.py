"""The local double: a :class:`~sftpd_agent.remote.base.Remote` over a folder.

:class:`LocalRemote` serves a local folder as OpenSSH's ``internal-sftp`` chrooted there
serves it to the agent through ``sftp.SftpRemote``: the same listing, rename, stat and error
semantics, proven by ``tests/test_remote_contract.py``, which runs the same cases against
this double, a real ``sshd`` and the embedded simulator. OS errors become the agent's as the
real path makes them (``sftp-server.c`` turns an errno into a status, ``sftp.translate`` the
status into an error): a missing path or a refused permission is permanent, anything else
(a full disk, an I/O error) retryable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from ..errors import PermanentRemoteError, RetryableRemoteError
from .base import RemoteEntry, TargetExists, decode_name

# The errnos sftp-server.c reports as "no such file", "permission denied", "bad message" or
# "unsupported": statuses that ``sftp.translate`` makes permanent. Any other is "failure".
_PERMANENT_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP,
    errno.EPERM, errno.EACCES, errno.EFAULT,
    errno.ENAMETOOLONG, errno.EINVAL, errno.ENOSYS,
})


@contextlib.contextmanager
def _translated(where: str) -> Iterator[None]:
    """OS errors as the agent's remote errors, worded ``where: reason`` like ``sftp``'s."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        kind = PermanentRemoteError if exc.errno in _PERMANENT_ERRNOS else RetryableRemoteError
        raise kind(f"{where}: {reason}") from exc


def _seconds(mtime: float) -> float:
    """A modification time as SFTP v3 carries it: whole seconds."""
    return float(int(mtime))


class LocalRemote:
    """A :class:`~sftpd_agent.remote.base.Remote` over a local folder, shown as ``/``."""

    def __init__(self, root: Path, *, block_size: int = 1 << 20) -> None:
        self.root = Path(root)
        self.block_size = block_size

    def _path(self, path: str, *, follow: bool = True) -> Path:
        """The local path of a remote one: ``..`` stops at the root (as in a chroot), and a
        symbolic link that leads out of the root leads nowhere (a chroot's links resolve
        inside it, where such a target is rarely found): ENOENT. With ``follow`` False the
        last name is not followed (rename, remove: they act on a link itself)."""
        inside = posixpath.normpath(posixpath.join("/", path)).lstrip("/")
        local = self.root / inside
        followed = local.resolve() if follow else local.parent.resolve() / local.name
        if not followed.is_relative_to(self.root.resolve()):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return local

    async def list(self, directory: str) -> list[RemoteEntry]:
        entries = []
        with _translated(f"list {directory}"), os.scandir(self._path(directory)) as found:
            for entry in found:
                try:
                    if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while listed
                name, undecodable = decode_name(os.fsencode(entry.name))
                entries.append(RemoteEntry(name, info.st_size, _seconds(info.st_mtime),
                                           undecodable))
        return entries

    async def upload(
        self, local: Path, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> int:
        written = 0
        with local.open("rb") as source, _translated(f"upload {remote}"), \
                self._path(remote).open("wb") as out:  # a missing local file: not the server's
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
        """Link then unlink, as sftp-server.c renames a file: no moment without either name,
        and an existing target is never replaced. Like ``SftpRemote``, any failure while
        the target exists is :class:`TargetExists`."""
        with _translated(f"rename {old} -> {new}"):
            source, target = self._path(old, follow=False), self._path(new, follow=False)
            try:
                if source.is_symlink() or not source.is_file():
                    if target.is_symlink() or target.exists():
                        raise FileExistsError(errno.EEXIST, "File exists")
                    source.rename(target)  # a folder or a link: as sftp-server.c does
                    return
                os.link(source, target)
            except OSError:
                if target.is_symlink() or target.exists():
                    raise TargetExists(f"rename {old} -> {new}: {new} already exists") from None
                raise
            source.unlink()

    async def stat(self, path: str) -> RemoteEntry | None:
        with _translated(f"stat {path}"):
            try:
                info = self._path(path).stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        return RemoteEntry(PurePosixPath(path).name, info.st_size, _seconds(info.st_mtime))

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        with _translated(f"read {path}"), self._path(path).open("rb") as handle:
            handle.seek(offset)
            return handle.read() if length is None else handle.read(length)

    async def release(self) -> None:
        """Nothing is kept open between reads."""

    async def remove(self, path: str) -> None:
        with _translated(f"remove {path}"), \
                contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._path(path, follow=False).unlink()

    async def close(self) -> None:
        return None
