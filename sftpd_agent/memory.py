"""Memory handed back to the system once a big unit of work is done.

CPython frees a million lines' objects as soon as a report file or a campaign is done with,
but the C heap keeps the pages (and a few reference cycles wait for the collector): without
this, the daemon idles at the peak of its biggest unit and starts the next one from there
(measured: a million-line ACK left 95 MB resident where 59 MB were in use).
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable

BIG_UNIT = 8 << 20
"""Bytes of input (a report file read, a campaign file) from which a unit is worth it: a full
collection takes milliseconds to tens of milliseconds, never spent on the idle poll."""
BIG_ROWS = 100_000
"""Rows of a campaign from which its validation is such a unit."""


HEAP_THRESHOLD = 4 << 20
"""Bytes from which glibc maps a block apart, handed back as it is freed, and from which a
heap's free top is handed back at once (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``). glibc
starts both at 128 KiB and raises them, up to 32 and 64 MiB, each time a big mapped block is
freed: from then on a million rows' big buffers (lists of a million items, tables of keys)
come from the heaps and stay resident once freed, until a trim, which does not get them all
back (measured in the daemon: a thread's heap of 24 MB, all of it free, still resident after
``malloc_trim``). Fixed at 4 MiB, 1M rows end to end: 83 MB resident when the ACK phase began
(was 115), 106 MB when the STOP phase began (was 137), the campaign and ACK phases' peaks 167
and 196 MB (were 176 and 242), the same times. At 1 MiB, the same memory, but every 1 MiB
chunk a fresh mapping: validating 1M rows took 0.8 s more of the kernel's time. Either of
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment: the operator's
choice, left alone."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def _libc(name: str) -> Callable[..., int] | None:
    """glibc's function ``name``, when the C library has it (musl and others: None)."""
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    return found


_TRIM = _libc("malloc_trim")
_MALLOPT = _libc("mallopt")


def tune_heap() -> bool:
    """For a long-running process: big blocks handed back when freed (:data:`HEAP_THRESHOLD`);
    whether it was done (not with another C library, nor when the environment says)."""
    if _MALLOPT is None or any(name in os.environ for name in (
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, HEAP_THRESHOLD)) and \
        bool(_MALLOPT(_M_TRIM_THRESHOLD, HEAP_THRESHOLD))


def give_back() -> None:
    """Collect reference cycles, then return the C heap's free pages to the system."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
