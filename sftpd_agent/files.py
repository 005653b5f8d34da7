"""Files the agent writes: private (0600 in 0700 folders, whatever the umask), durable
(fsynced, the folder too) and, where a reader may look at any moment, replaced atomically.

Every file the agent writes holds personal data or is read by another program mid-write (the
metrics file, an export): one home for how that is done, so that no writer forgets a step.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, cast, overload


def private_dir(path: Path) -> Path:
    """``path`` created 0700, and so are its missing parents, whatever the umask (``mkdir``'s
    own ``parents=True`` would make those with the umask's mode)."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        created.chmod(0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> int:
    """Open ``path`` for writing, created 0600 whatever the umask; the file descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@overload
def replaced(path: Path, *, text: Literal[True] = ..., mode: int = ...,
             newline: str | None = ...) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def replaced(path: Path, *, text: Literal[False], mode: int = ...,
             newline: str | None = ...) -> contextlib.AbstractContextManager[IO[bytes]]: ...
def replaced(path: Path, *, text: bool = True, mode: int = 0o600,
             newline: str | None = None) -> contextlib.AbstractContextManager[IO[str]] | \
        contextlib.AbstractContextManager[IO[bytes]]:
    """Write ``path`` anew, atomically: a temporary file beside it (``mode``, whatever the
    umask), fsynced, renamed over ``path``, the folder fsynced. A reader sees the old file or
    the new one, never half; a failure leaves the old file and no temporary behind."""
    return cast("contextlib.AbstractContextManager[IO[str]]",
                _replaced(path, text=text, mode=mode, newline=newline))


@contextlib.contextmanager
def _replaced(path: Path, *, text: bool, mode: int,
              newline: str | None) -> Iterator[IO[str] | IO[bytes]]:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        try:
            os.fchmod(fd, mode)
            handle: IO[str] | IO[bytes] = (
                os.fdopen(fd, "w", encoding="utf-8", newline=newline) if text
                else os.fdopen(fd, "wb"))
        except BaseException:
            os.close(fd)
            raise
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_dir(path.parent)


COPY_BLOCK = 1 << 20


def append_copy(source: IO[bytes], out: IO[bytes], start: int, count: int) -> None:
    """``count`` bytes of file ``source`` from byte ``start`` appended to ``out``, a file
    written in order (left at its end): copied by the kernel (``copy_file_range``: no pass
    through this process) where it can, else, or for what it left, read and written.
    ValueError when ``source`` ends first."""
    out.flush()
    copied = _kernel_copy(source, out, start, count)
    if copied:
        out.seek(0, os.SEEK_END)  # the writer's position after the kernel moved the file's
    source.seek(start + copied)
    left = count - copied
    while left:
        data = source.read(min(left, COPY_BLOCK))
        if not data:
            raise ValueError(f"{getattr(source, 'name', 'a file')}: ended before its copy")
        view = memoryview(data)
        while view:  # a raw file may write a part
            view = view[out.write(view) or 0:]
        left -= len(data)


def _kernel_copy(source: IO[bytes], out: IO[bytes], start: int, count: int) -> int:
    """What ``copy_file_range`` copied of it: all, or less where it stopped (not offered by
    the kernel, the file system or the stream, the source shorter)."""
    copied = 0
    with contextlib.suppress(OSError):  # io.UnsupportedOperation (no file) is one
        while copied < count:
            done = os.copy_file_range(source.fileno(), out.fileno(), count - copied,
                                      start + copied)
            if not done:
                break
            copied += done
    return copied
