"""Time, injected: the daemon asks a clock, never ``datetime.now()`` directly.

:func:`system_clock` is the real one; tests give the daemon another (``testing.OffsetClock``
moves a running daemon's time forward without sleeping). Scheduling decisions compare this
clock with campaign times; timers that wake the daemon are only hints, re-checked against the
clock.
"""

from __future__ import annotations

import datetime
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> datetime.datetime:
        """Now, timezone-aware (UTC)."""
        ...


def system_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
