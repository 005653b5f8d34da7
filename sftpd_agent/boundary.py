"""One unit's failure is that unit's alone.

The units of work are an outbox entry, a campaign step (record, validate, prepare, archive),
a part's publication, a report file and a notification. Each runs inside a boundary that
catches *any* exception, says so once (one log line naming the unit and the error; the
traceback only at debug level), records it on that unit (held, skipped, retried) and lets
the loop go on. :class:`Failures` is the memory that makes "once" true: a unit failing the
same way at every poll is logged the first time, and again only when the error changes or
the unit recovers.
"""

from __future__ import annotations

import datetime
import errno
import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .logs import get_logger
from .rules.display import one_line

log = get_logger("sftpd_agent.boundary")

MAX_REASON = 300
"""Characters of an error kept in a one-line reason."""

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def describe(exc: BaseException) -> str:
    """``exc`` as one line of text: its message (or its type when it has none), cut."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        text = exc.strerror
    line = one_line(text)
    if not isinstance(exc, OSError | sqlite3.Error) and type(exc).__name__ not in line:
        line = f"{type(exc).__name__}: {line}"
    return one_line(line, MAX_REASON)


def waits_for_space(exc: BaseException) -> bool:
    """A failure that more disk space would cure (ENOSPC, quota, SQLite's "disk is full"):
    the unit waits and is tried again, never held for it."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


@dataclass
class Failures:
    """The last failure of each unit still failing, so that each is logged once."""

    failing: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] | None = None
    """The most recent failure of any unit (for ``status``): unit, error, at."""

    def record(self, unit: str, exc: BaseException, *, at: datetime.datetime,
               **context: Any) -> str:
        """Note that ``unit`` failed with ``exc``; logged unless it failed so last time.
        The one-line reason."""
        reason = describe(exc)
        self.last = {"unit": unit, "error": reason, "at": at.isoformat(timespec="seconds")}
        if self.failing.get(unit) != reason:
            self.failing[unit] = reason
            debug = logging.getLogger("sftpd_agent").isEnabledFor(logging.DEBUG)
            log.error("unit_failed", unit=unit, error=reason, exc_info=debug, **context)
        return reason

    def cleared(self, unit: str) -> None:
        """``unit`` worked: forget its failure (and say so, if it was failing)."""
        if self.failing.pop(unit, None) is not None:
            log.info("unit_recovered", unit=unit)
