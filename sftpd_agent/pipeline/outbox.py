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
import io
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import watchfiles
from pydantic import ValidationError

from ..config import Settings
from ..errors import ConfigError
from ..files import fsync_dir
from ..logs import get_logger
from ..rules.contacts import looks_like_contacts
from ..rules.display import shown
from ..rules.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    claimed_contacts,
    is_manifest_name,
    manifest_text,
)
from ..rules.plan import submission_name
from . import manifests
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
    """A name the agent takes: ``*.csv`` or a manifest ``*.campaign.toml`` (any case), not
    hidden, not a lock or partial file."""
    lowered = name.lower()
    return (not name.startswith((".", "~$")) and lowered.endswith((".csv", MANIFEST_SUFFIX))
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
    grace: float | Callable[[], float] = 300.0
    """``campaign.contacts_grace_seconds``: how long a contacts file waits for a manifest
    naming it, and a manifest for its contacts file, once complete."""
    orphans: dict[str, str] = field(default_factory=dict)
    """Entries handed over to be held at once: a contacts file no manifest named, a manifest
    whose contacts file never came; name -> the reason."""
    companions: dict[str, Path] = field(default_factory=dict)
    """A manifest handed over -> its contacts file, taken with it."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Complete entries that wait for their other half: shown name -> what for."""
    _again: dict[str, float] = field(default_factory=dict)
    _contacts_like: dict[str, tuple[tuple[int, int, int], bool]] = field(default_factory=dict)

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
        return self._pair([path for _, path in ready], present, now)

    def _pair(self, ready: list[Path], present: set[str], now: float) -> list[Path]:
        """Manifests and contact files among the complete entries: a manifest goes with its
        contacts file once both are complete; a contacts file never goes alone. Either waits
        ``grace`` seconds for the other, then is handed over to be held with the reason."""
        grace = self.grace() if callable(self.grace) else self.grace
        self.waiting = {}
        self._again = {}
        manifests = [name for name in present if is_manifest_name(name)]
        claimed = claimed_contacts(self.folder) if manifests else {}
        names = {path.name for path in ready}
        out = []
        for path in ready:
            name = path.name
            complete_for = now - self._seen[name].since if name in self._seen else grace
            if is_manifest_name(name):
                contacts = next((c for c, m in claimed.items() if m.name == name), None)
                if contacts is None or contacts in names:  # unreadable (held), or both here
                    if contacts is not None:
                        self.companions[name] = self.folder / contacts
                    out.append(path)
                elif contacts in present:
                    self.waiting[shown(name)] = f"its contacts file {shown(contacts)} is " \
                                                "still being written"
                elif complete_for >= grace:
                    self.orphans[name] = (
                        f"its contacts file {shown(contacts)} did not arrive within "
                        f"{grace:g} s: drop it in the outbox, then the manifest again")
                    out.append(path)
                else:
                    self._wait(name, f"waits for its contacts file {shown(contacts)}",
                               now, grace - complete_for)
            elif name in claimed:
                if claimed[name].name not in present:  # its manifest went meanwhile
                    self._wait(name, "claimed by a manifest", now, RESCAN_SECONDS)
                # else it goes with its manifest
            elif self._is_contacts(path):
                if complete_for >= grace:
                    self.orphans[name] = (
                        f"no campaign manifest names this file within {grace:g} s: a "
                        "contact export goes with a <name>.campaign.toml naming it "
                        "(contacts = \"...\"), or `sftpd-agent submit CONTACTS "
                        "--message-file T.txt`")
                    out.append(path)
                else:
                    self._wait(name, "a contact export: waits for a manifest naming it",
                               now, grace - complete_for)
            else:
                out.append(path)
        for name in list(self._contacts_like):
            if name not in present:
                del self._contacts_like[name]
        return out

    def _wait(self, name: str, what: str, now: float, seconds: float) -> None:
        self.waiting[shown(name)] = what
        self._again[name] = now + max(0.05, seconds)

    def _is_contacts(self, path: Path) -> bool:
        """Whether a complete ``*.csv`` is a contact export (a header with a phone column,
        not the provider's shape); read once per version of the file."""
        seen = self._seen.get(path.name)
        signature = seen.signature if seen else (0, 0, 0)
        known = self._contacts_like.get(path.name)
        if known is None or known[0] != signature:
            known = (signature, path.name.lower().endswith(".csv")
                     and not path.is_symlink() and looks_like_contacts(path))
            self._contacts_like[path.name] = known
        return known[1]

    def taken(self, path: Path) -> None:
        self._seen.pop(path.name, None)
        self.orphans.pop(path.name, None)
        companion = self.companions.pop(path.name, None)
        if companion is not None:
            self._seen.pop(companion.name, None)

    def next_wait(self) -> float:
        """How long the watcher may sleep before the next scan is useful."""
        now = self.monotonic()
        settling = [seen.since + self.stable_seconds for name, seen in self._seen.items()
                    if name not in self._again and now - seen.since < self.stable_seconds]
        soonest = min([*settling, *self._again.values()], default=now + RESCAN_SECONDS)
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
    if (_outbox_of(settings) / name).exists():
        raise ConfigError(f"{settings.paths.outbox / name} is already waiting in the outbox")
    outbox = _outbox_of(settings)
    with source.open("rb") as src:
        _place(src, outbox / name)
    fsync_dir(outbox)
    return outbox / name, notes


def submit_contacts(source: Path, template: str, settings: Settings, *, campaign: str | None,
                    at: datetime.datetime | None, sender: str | None,
                    now: datetime.datetime) -> tuple[Path, Path]:
    """Place a contact export and a manifest naming it in the outbox, as ``sftpd-agent
    submit CONTACTS --message-file T.txt`` does: the contacts first, then the manifest
    (``<campaign>.campaign.toml``), each written aside and linked in whole. Everything a
    manifest would be held for (the columns, the placeholders, the sender, a time already
    past) is refused here first, in one line (ConfigError)."""
    if not source.is_file():
        raise ConfigError(f"{source}: no such file")
    campaign_id = campaign or source.stem
    try:
        # the rules of a dropped file's time and id: a past time refused, the id made safe
        submission_name(f"{campaign_id}.csv", campaign=campaign_id, at=at, now=now,
                        timing=timing_from(settings))
        manifest = Manifest(contacts=source.name, message=template, campaign=campaign_id,
                            sender=sender, send_at=at)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"submit: {key}: {error['msg'].removeprefix('Value error, ')}") \
            from None
    except ValueError as exc:
        raise ConfigError(f"submit: {exc}") from None
    assert manifest.campaign is not None  # noqa: S101 - given above
    try:
        manifests.describe(manifest, source, source, settings)
    except manifests.ManifestHeld as exc:
        raise ConfigError(f"submit: {exc}") from None
    outbox = _outbox_of(settings)
    contacts, manifest_path = outbox / source.name, outbox / f"{manifest.campaign}{MANIFEST_SUFFIX}"
    for target in (contacts, manifest_path):
        if os.path.lexists(target):
            raise ConfigError(f"{target} is already waiting in the outbox")
    with source.open("rb") as src:
        _place(src, contacts)
    _place(io.BytesIO(manifest_text(manifest).encode("utf-8")), manifest_path)
    fsync_dir(outbox)
    return contacts, manifest_path


def _outbox_of(settings: Settings) -> Path:
    outbox = settings.paths.outbox
    if not outbox.is_dir():
        raise ConfigError(f"{outbox}: no outbox (is paths.root right, has the agent run?)")
    return outbox


def _place(data: BinaryIO, target: Path) -> None:
    """``data`` into ``target`` whole: written to a dotfile the watcher ignores, fsynced,
    then hard-linked under its name (never replacing a file that arrived meanwhile)."""
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with temporary.open("xb") as dst:
        shutil.copyfileobj(data, dst)
        dst.flush()
        os.fsync(dst.fileno())
    try:
        os.link(temporary, target)  # fails rather than replace a file dropped meanwhile
    except FileExistsError:
        raise ConfigError(f"{target} is already waiting in the outbox") from None
    finally:
        temporary.unlink()
