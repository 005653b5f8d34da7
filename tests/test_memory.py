"""After a big unit of work the daemon hands its free memory back (``memory.give_back``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from sftpd_agent import memory

_RSS_MB = textwrap.dedent("""
    def rss_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")
""")
"""The children's measure: their resident memory, MB."""

# A heap a million-line unit leaves behind: 150 MB of objects malloc'd one by one, freed,
# with every 16th kept alive, so that the heap cannot shrink from its top by itself.
_CHILD = _RSS_MB + textwrap.dedent("""
    import sys
    from sftpd_agent.memory import give_back

    blocks = [bytes(2000) + bytes([n % 251]) for n in range(75_000)]
    kept = blocks[::16]
    del blocks
    before = rss_mb()
    give_back()
    print(before, rss_mb(), len(kept))
""")


def test_free_memory_goes_back_to_the_system_after_a_big_unit() -> None:
    assert memory._TRIM is not None  # glibc, as on the hosts the unit runs on
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=60, check=True)
    before, after, kept = done.stdout.split()
    assert int(kept) == 4688
    assert float(before) - float(after) > 80, done.stdout  # most of the 140 MB freed


# The daemon's case: a big block freed (glibc then raises its thresholds to 16 and 32 MiB),
# then a thread's 4 MiB buffers, 24 MB, freed. Untuned, they stay resident in the thread's
# heap until something trims it (and a trim does not always get them back: the daemon's
# campaign thread kept 24 MB so); tuned, each is mapped apart and handed back as it is freed.
_THREAD_HEAP = _RSS_MB + textwrap.dedent("""
    import sys, threading
    from sftpd_agent.memory import tune_heap

    tuned = tune_heap() if sys.argv[1] == "tuned" else None
    big = bytearray(16 << 20)  # a big block, mapped, filled, freed
    del big
    freed = []

    def unit():
        buffers = [bytearray(4 << 20) for _ in range(6)]
        before = rss_mb()
        del buffers
        freed.append(before - rss_mb())

    worker = threading.Thread(target=unit)
    worker.start()
    worker.join()
    print(tuned, freed[0])
""")


def _thread_heap(mode: str) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", _THREAD_HEAP, mode], capture_output=True,
                          text=True, timeout=60, check=True,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("MALLOC_")})
    tuned, freed = done.stdout.split()
    return tuned, float(freed)


def test_a_threads_big_buffers_go_back_to_the_system_once_the_heap_is_tuned() -> None:
    assert memory._MALLOPT is not None  # glibc, as on the hosts the unit runs on
    tuned, freed = _thread_heap("tuned")
    assert tuned == "True"
    assert freed > 22, freed  # the 24 MB of buffers, as they were freed
    # The control: untuned, the same buffers stay resident (what tune_heap is for).
    _, freed = _thread_heap("default")
    assert freed < 2, freed


def test_the_operators_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(option: int, value: int) -> int:
        calls.append((option, value))
        return 1

    monkeypatch.setattr(memory, "_MALLOPT", mallopt)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert memory.tune_heap() is False
    assert calls == []
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert memory.tune_heap() is True
    assert sorted(calls) == [(-3, memory.HEAP_THRESHOLD), (-1, memory.HEAP_THRESHOLD)]
