"""What a dropped entry is, and how it is opened: by ``check`` and the daemon alike.

A campaign file is read only if it is a regular file: a symbolic link is never followed (a
link to ``/etc/shadow`` must not be sent), a FIFO or a device is never waited on, and a
file the service user cannot read is refused with the system's reason, in one line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def odd_kind(mode: int) -> str | None:
    """Why an entry of this ``st_mode`` is never opened, or None for a file or a link."""
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "not a regular file"


class NotRegular(OSError):
    """An entry that is not a readable regular file; ``reason`` says what it is, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file: a symbolic link is not followed
    and a FIFO or device is not waited on (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``).

    Raises :class:`NotRegular` with a one-line reason otherwise (a link, a folder, a FIFO,
    permission denied...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular("a symbolic link (never followed)") from None
        raise NotRegular(exc.strerror or str(exc)) from None
    kind = odd_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotRegular(kind)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def refusal(path: Path) -> str | None:
    """Why ``path`` cannot be taken as a campaign file (see :func:`open_regular`), or None."""
    try:
        with open_regular(path) as handle:
            handle.read(1)  # permissions can allow open() and still refuse the read
    except NotRegular as exc:
        return exc.reason
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
