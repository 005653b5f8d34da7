"""Which outbox files are complete, with time injected."""

from __future__ import annotations

import os
from pathlib import Path

from sftpd_agent.pipeline.outbox import Outbox, eligible


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_csv_files_that_are_not_temporary_or_hidden() -> None:
    assert eligible("promo.csv") and eligible("PROMO.CSV")
    for name in (".promo.csv", "promo.csv.tmp", "promo.tmp", "promo.part", "promo.txt",
                 "promo.csv.part"):
        assert not eligible(name), name


def test_a_file_is_taken_once_unchanged_for_stable_seconds(tmp_path: Path) -> None:
    mono = Clock()
    outbox = Outbox(tmp_path, 2.0, monotonic=mono, wall=lambda: os.path.getmtime(
        tmp_path / "a.csv") + 0.1 if (tmp_path / "a.csv").exists() else 0.0)
    (tmp_path / "a.csv").write_text("x")
    assert outbox.scan() == []  # just written: watch it
    mono.now += 1.0
    with (tmp_path / "a.csv").open("a") as f:
        f.write("more")  # still being written: the clock restarts
    assert outbox.scan() == []
    mono.now += 1.9
    assert outbox.scan() == []
    mono.now += 0.2
    assert outbox.scan() == [tmp_path / "a.csv"]


def test_a_file_moved_in_or_present_at_start_is_taken_at_once(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("x")
    old = os.path.getmtime(tmp_path / "old.csv") - 60
    os.utime(tmp_path / "old.csv", (old, old))
    (tmp_path / ".hidden.csv").write_text("x")
    outbox = Outbox(tmp_path, 2.0, monotonic=Clock())
    assert outbox.scan() == [tmp_path / "old.csv"]


def test_a_vanished_file_is_forgotten_and_waits_are_bounded(tmp_path: Path) -> None:
    mono = Clock()
    outbox = Outbox(tmp_path, 2.0, monotonic=mono)
    (tmp_path / "b.csv").write_text("x")
    outbox.scan()
    assert outbox.pending and 0 < outbox.next_wait() <= 2.1
    (tmp_path / "b.csv").unlink()
    outbox.scan()
    assert not outbox.pending and outbox.next_wait() == 5.0
