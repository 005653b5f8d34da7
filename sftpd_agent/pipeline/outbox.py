"""The drop zone: which entries of ``outbox/`` are complete and may be taken, and which never.

Files are found by watchfiles events *and* a periodic full scan (events can be lost or
coalesced, and a file present at start-up must be found too). A file is complete when its
size, mtime and inode have not changed for ``stable_seconds`` of watching, or when it was
already older than that when first seen (moved in atomically, or there before the agent
started). Dotfiles, office lock files (``~$*.csv``), ``*.tmp``, ``*.part`` and anything not
``*.csv`` are ignored.

Every other ``*.csv`` entry gets an outcome. A regular file is taken when complete; a
symbolic link is taken too, never followed, so that it is held ("a symbolic link"). A
folder, FIFO, device or socket named ``*.csv`` is never opened: it is reported once (log and
``status``) and left where it is. How a taken file is opened is in ``entries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from ..config import Settings
from ..errors import ConfigError
from ..files import fsync_dir
from ..logs import get_logger
from ..rules.display import shown
from ..rules.plan import submission_name
from .entries import odd_kind
from .intake import timing_from

log = get_logger("sftpd_agent.outbox")

RESCAN_SECONDS = 5.0
"""Full scan interval when nothing is pending: the safety net under the events (one
``scandir`` of the outbox, cheap)."""
SETTLE_SECONDS = 0.5
"""A second scan this soon after start: files dropped while the watch was being set up
raise no event."""


def eligible(name: str) -> bool:
    """A name the agent takes: ``*.csv`` (any case), not hidden, not a lock or partial file."""
    lowered = name.lower()
    return (not name.startswith((".", "~$")) and lowered.endswith(".csv")
            and not lowered.endswith((".tmp", ".part")))


@dataclass
class _Seen:
    signature: tuple[int, int, int]
    since: float


@dataclass
class Outbox:
    folder: Path
    stable: float | Callable[[], float]
    """``campaign.stable_seconds``, or a callable giving the one in force."""
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _seen: dict[str, _Seen] = field(default_factory=dict)
    odd: dict[str, str] = field(default_factory=dict)
    """Entries that are never taken (folders, FIFOs...): their shown name and why."""

    @property
    def stable_seconds(self) -> float:
        return self.stable() if callable(self.stable) else self.stable

    @property
    def pending(self) -> bool:
        return bool(self._seen)

    def scan(self) -> list[Path]:
        """The entries complete now, oldest first; the others are remembered.

        Entries that can never be taken are kept in :attr:`odd` (and logged the first
        time they are seen)."""
        now, wall = self.monotonic(), self.wall()
        ready: list[tuple[float, Path]] = []
        present = set()
        odd: dict[str, str] = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not eligible(entry.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:  # gone since the listing
                    continue
                kind = odd_kind(info.st_mode)
                if kind is not None:
                    odd[shown(entry.name)] = kind
                    continue
                present.add(entry.name)
                if stat.S_ISLNK(info.st_mode):  # nothing to wait for: it is held at once
                    ready.append((info.st_mtime, Path(entry.path)))
                    continue
                signature = (info.st_size, info.st_mtime_ns, info.st_ino)
                seen = self._seen.get(entry.name)
                if seen is None or seen.signature != signature:
                    old = seen is None and wall - info.st_mtime >= self.stable_seconds
                    self._seen[entry.name] = _Seen(signature, now)
                    if not old:
                        continue
                elif now - seen.since < self.stable_seconds:
                    continue
                ready.append((info.st_mtime, Path(entry.path)))
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        for name, kind in odd.items():
            if self.odd.get(name) != kind:
                log.warning("outbox_entry_ignored", entry=name, reason=kind)
        self.odd = odd
        ready.sort()
        return [path for _, path in ready]

    def taken(self, path: Path) -> None:
        self._seen.pop(path.name, None)

    def next_wait(self) -> float:
        """How long the watcher may sleep before the next scan is useful."""
        if not self._seen:
            return RESCAN_SECONDS
        now = self.monotonic()
        soonest = min(seen.since for seen in self._seen.values()) + self.stable_seconds
        return max(0.05, min(RESCAN_SECONDS, soonest - now + 0.01))


async def watch(
    outbox: Outbox, take: Callable[[Path], object], stop: asyncio.Event,
    progress: Callable[[], None] | None = None,
) -> None:
    """Scan, take what is complete, and wait for an event or the next useful scan.

    ``take`` owns the failures of the entry it is given; a failing scan (the outbox
    removed, permissions changed) is logged once and retried at the next scan."""
    changed = asyncio.Event()

    async def events() -> None:
        while not stop.is_set():
            try:
                async for _ in watchfiles.awatch(outbox.folder, stop_event=stop, debounce=50,
                                                 step=20, recursive=False):
                    changed.set()
            except Exception as exc:  # the rescan is the safety net
                log.warning("outbox_watch_failed", error=str(exc), retry_in=RESCAN_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESCAN_SECONDS)

    watcher = asyncio.create_task(events(), name="outbox-events")
    first = True
    failing: str | None = None
    try:
        while not stop.is_set():
            try:
                ready = outbox.scan()
            except OSError as exc:
                ready = []
                if str(exc) != failing:
                    log.error("outbox_scan_failed", error=str(exc))  # noqa: TRY400
                failing = str(exc)
            else:
                if failing is not None:
                    log.info("outbox_scan_recovered")
                failing = None
            for path in ready:
                if stop.is_set():
                    break
                outcome = take(path)
                if asyncio.iscoroutine(outcome):
                    await outcome
                outbox.taken(path)
            if progress is not None:
                progress()
            changed.clear()
            waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
            wait = min(outbox.next_wait(), SETTLE_SECONDS) if first else outbox.next_wait()
            first = False
            await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await watcher


def submit(source: Path, settings: Settings, *, campaign: str | None,
           at: datetime.datetime | None, now: datetime.datetime) -> tuple[Path, tuple[str, ...]]:
    """Place a copy of ``source`` in the outbox under the provider's file name, as ``sftpd-agent
    submit`` does; the path placed, and notes on what the name changed.

    The name follows the rules of a dropped file (``rules.plan.submission_name``; ``at`` is a
    naive local time). The copy is written to a dotfile the watcher ignores, fsynced, then
    hard-linked under its name: the agent never sees half of it, and a file that waits, or
    arrives meanwhile, under that name is never replaced. ConfigError, in one line, when
    ``source`` is missing, no name can be given, there is no outbox, or the name is taken.
    """
    if not source.is_file():
        raise ConfigError(f"{source}: no such file")
    try:
        name, notes = submission_name(source.name, campaign=campaign, at=at, now=now,
                                      timing=timing_from(settings))
    except ValueError as exc:
        raise ConfigError(f"submit: {exc}") from None
    outbox = settings.paths.outbox
    if not outbox.is_dir():
        raise ConfigError(f"{outbox}: no outbox (is paths.root right, has the agent run?)")
    target = outbox / name
    if target.exists():
        raise ConfigError(f"{target} is already waiting in the outbox")
    temporary = outbox / f".{name}.{uuid.uuid4().hex}.tmp"
    with source.open("rb") as src, temporary.open("xb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    try:
        os.link(temporary, target)  # fails rather than replace a file dropped meanwhile
    except FileExistsError:
        raise ConfigError(f"{target} is already waiting in the outbox") from None
    finally:
        temporary.unlink()
    fsync_dir(outbox)
    return target, notes
