"""The provider's SFTP server as the agent sees it: a small interface.

Everything the agent does remotely goes through :class:`Remote`: list a directory, upload a
file, rename, stat, read from an offset, remove. The asyncssh implementation is in ``sftp``;
``local.LocalRemote`` serves a local folder the same way (the test double).
``tests/test_remote_contract.py`` runs the same cases against the double, OpenSSH's ``sshd``
and the embedded simulator. Errors are the ``errors`` module's: :class:`RetryableRemoteError`
for what may pass (network, timeout, busy), :class:`PermanentRemoteError` for what a person
must fix.

The semantics every implementation keeps (as OpenSSH's ``internal-sftp`` has them):

- paths are POSIX, relative ones start at the login folder, ``..`` stops at the root,
  and a symbolic link never leads out of it;
- a listing shows every entry but folders and symbolic links, never ``.`` or ``..``, with
  whole-second modification times (SFTP v3), and a name that is not UTF-8 flagged;
- a rename never replaces an existing target: like SFTP v3 and OpenSSH's plain rename, it
  fails with :class:`TargetExists`, which the publication protocol reads as "already
  published"; so does a rename whose source is gone while its target is there;
- removing a missing file is no error; the stat of a missing file is None; reading,
  listing or writing what is not there is a :class:`PermanentRemoteError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ..errors import RemoteError, RetryableRemoteError


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
        """Bytes of ``path`` from ``offset`` (to the end when ``length`` is None). Reads of
        one file in a row may keep it open between them, until :meth:`release` or another
        operation."""
        ...

    async def release(self) -> None:
        """Let go of the file reads kept open, if any: a reader calls it when done."""
        ...

    async def remove(self, path: str) -> None:
        """Remove ``path``; no error when it is already gone."""
        ...

    async def close(self) -> None: ...


def join(directory: str, name: str) -> str:
    """``directory/name``, or ``name`` alone when ``directory`` is empty (the login folder)."""
    return str(PurePosixPath(directory) / name) if directory else name
