"""Time, injected: the daemon asks a clock, never ``datetime.now()`` directly.

:class:`SystemClock` is the real one. :class:`OffsetClock` is real time shifted by an offset
read from a file (``$SFTPD_AGENT_CLOCK_OFFSET_FILE``, seconds as text), so that a test can move
a running daemon's time forward ("it is now 09:50") without sleeping; it is never set in
production. Scheduling decisions compare this clock with campaign times; timers that wake the
daemon are only hints, re-checked against the clock.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Protocol

CLOCK_OFFSET_ENV = "SFTPD_AGENT_CLOCK_OFFSET_FILE"


class Clock(Protocol):
    def __call__(self) -> datetime.datetime:
        """Now, timezone-aware (UTC)."""
        ...


def system_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class OffsetClock:
    """Real time plus the number of seconds written in ``path`` (0 while it is absent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[int, float] | None = None

    def offset(self) -> float:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0.0
        if self._cache is None or self._cache[0] != stamp:
            text = self.path.read_text(encoding="utf-8").strip()
            self._cache = (stamp, float(text or 0))
        return self._cache[1]

    def __call__(self) -> datetime.datetime:
        return system_clock() + datetime.timedelta(seconds=self.offset())


def clock_from_environment() -> Clock:
    path = os.environ.get(CLOCK_OFFSET_ENV)
    return OffsetClock(Path(path)) if path else system_clock
