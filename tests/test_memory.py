"""After a big unit of work the daemon hands its free memory back (``memory.give_back``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sftpd_agent import memory

# A heap a million-line unit leaves behind: 150 MB of objects malloc'd one by one, freed,
# with every 16th kept alive, so that the heap cannot shrink from its top by itself.
_CHILD = textwrap.dedent("""
    import sys
    from sftpd_agent.memory import give_back

    def rss_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")

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
