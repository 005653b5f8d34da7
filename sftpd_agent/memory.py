"""Memory handed back to the system once a big unit of work is done.

CPython frees a million lines' objects as soon as a report file or a campaign is done with,
but the C heap keeps the pages (and a few reference cycles wait for the collector): without
this, the daemon idles at the peak of its biggest unit and starts the next one from there
(measured: a million-line ACK left 95 MB resident where 59 MB were in use).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

BIG_UNIT = 8 << 20
"""Bytes of input (a report file read, a campaign file) from which a unit is worth it: a full
collection takes milliseconds to tens of milliseconds, never spent on the idle poll."""
BIG_ROWS = 100_000
"""Rows of a campaign from which its validation is such a unit."""


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, when the C library has one (musl and others: None)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


_TRIM = _malloc_trim()


def give_back() -> None:
    """Collect reference cycles, then return the C heap's free pages to the system."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
