"""Exactly-once publication to the provider's ``Send/`` directory, and outcome tracking.

For each provider file (part): the intent is recorded first (part ``uploading``), then the file
is written as ``<name>.tmp``, its remote size checked, and renamed ``<name>.csv``; the result is
recorded. Every round starts from ONE listing of ``send_dir``, and that listing decides:

- a part whose name is there as ``.csv``, ``.lock``, ``.done`` or ``.reject`` is published (or
  further) whatever the journal says: it is never uploaded again;
- its own stale ``.tmp`` (a crash or a cut mid-upload) is removed and the upload redone;
- otherwise each of its four names is asked for with ``stat``, one by one (a listing may
  leave out what a server cannot type, or be cut short): any one found counts as seen;
- only then is it uploaded.

A rename that finds its target present means the part was already published. A connection
lost around the rename is not guessed about: the next round's listing tells. The same listing
moves parts ``published -> processing -> done | rejected``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..boundary import Failures
from ..clock import Clock
from ..errors import RemoteError, RetryableRemoteError
from ..events import Events
from ..logs import get_logger
from ..memory import BIG_UNIT, give_back
from ..remote.base import Remote, RemoteEntry, TargetExists, join
from ..rules.backoff import Backoff
from ..rules.states import EXTENSION_STATE, PART_WAITING, PartState, advanced
from ..store.journal import Store
from ..store.records import Part
from .transitions import Transitions

log = get_logger("sftpd_agent.publication")


def seen_state(stem: str, names: dict[str, RemoteEntry]) -> PartState | None:
    """The furthest state the listing proves for ``stem``, or None when it is absent."""
    found = [state for ext, state in EXTENSION_STATE.items() if stem + ext in names]
    if not found:
        return None
    if PartState.REJECTED in found:
        return PartState.REJECTED
    order = list(EXTENSION_STATE.values())
    return max(found, key=order.index)


@dataclass
class Publisher:
    """Owns the provider's ``Send/`` side of every part: one listing per round decides what
    is published already (never uploaded again), what to upload (``.tmp``, size checked,
    renamed ``.csv``), and how far each part got (``.lock``, ``.done``, ``.reject``)."""

    store: Store
    send_folder: str | Callable[[], str]
    """``remote.send_dir``, or a callable giving the one in force (a reload reaches it)."""
    local_file: Callable[[Part], Path]
    clock: Clock
    events: Events
    hooks: Callable[[str, Part], None] | None = None  # test fault points, see ``_point``
    on_progress: Callable[[], None] | None = None  # liveness, for the watchdog

    @property
    def send_dir(self) -> str:
        return self.send_folder() if callable(self.send_folder) else self.send_folder

    def __post_init__(self) -> None:
        self.transitions = Transitions(self.store, self.clock, self.events)
        self.failures = Failures()
        self._retry: dict[int, tuple[float, int]] = {}  # part id -> (monotonic, failures)

    async def round(self, remote: Remote) -> None:
        """One listing of ``send_dir``; reconcile, track outcomes, publish what is pending.

        Each part is a unit: a failure of its own (a local file gone, the journal) is said
        once and the part is tried again later with backoff, while the others go on; a
        failure of the connection (:class:`RemoteError`) ends the round for the session."""
        names = {entry.name: entry for entry in await remote.list(self.send_dir)}
        for part in self.store.parts(None, PartState.UPLOADING, *PART_WAITING):
            at, _ = self._retry.get(part.id, (0.0, 0))
            if time.monotonic() < at:
                continue
            try:
                await self._reconcile(remote, part, names)
            except RemoteError:
                raise
            except Exception as exc:  # the part's boundary
                self._failed(part, exc)
            else:
                if self._retry.pop(part.id, None) is not None:
                    self.failures.cleared(f"part {part.remote_name}")

    async def _reconcile(self, remote: Remote, part: Part,
                         names: dict[str, RemoteEntry]) -> None:
        seen = seen_state(part.stem, names)
        if seen is not None and advanced(part.state, seen):
            self._move(part, seen)
        elif part.state == PartState.UPLOADING and seen is None:
            seen = await self._stat_names(remote, part)
            if seen is not None:
                self._move(part, seen)
            else:
                await self._publish(remote, part, stale_tmp=part.stem + ".tmp" in names)

    def _failed(self, part: Part, exc: Exception) -> None:
        _, count = self._retry.get(part.id, (0.0, 0))
        delay = PART_BACKOFF.delay(count + 1)
        self._retry[part.id] = (time.monotonic() + delay, count + 1)
        self.failures.record(f"part {part.remote_name}", exc, at=self.clock(),
                             retry_in=round(delay, 1))

    async def _stat_names(self, remote: Remote, part: Part) -> PartState | None:
        """Before an upload: the furthest state any of the part's four names proves when
        asked one by one, or None when none of them exists."""
        found: dict[str, RemoteEntry] = {}
        for ext in EXTENSION_STATE:
            name = part.stem + ext
            entry = await remote.stat(join(self.send_dir, name))
            if entry is not None:
                found[name] = entry
        seen = seen_state(part.stem, found)
        if seen is not None:
            log.warning("part_found_by_stat", campaign_pk=part.campaign,
                        remote_name=part.remote_name, state=str(seen))
        return seen

    async def _publish(self, remote: Remote, part: Part, *, stale_tmp: bool) -> None:
        tmp = join(self.send_dir, part.stem + ".tmp")
        final = join(self.send_dir, part.remote_name)
        with_log = log.bind(campaign_pk=part.campaign, remote_name=part.remote_name)
        if stale_tmp:
            with_log.info("stale_tmp_removed")
            await remote.remove(tmp)
        local = self.local_file(part)
        self._point("before_upload", part)
        started = time.monotonic()
        written = await remote.upload(local, tmp, progress=self._progress(part))
        self._count_upload(written, time.monotonic() - started)
        self._point("after_upload", part)
        entry = await remote.stat(tmp)
        if entry is None or entry.size != part.size or written != part.size:
            await remote.remove(tmp)
            raise RetryableRemoteError(
                f"{tmp}: {entry.size if entry else 'no'} bytes on the server after writing "
                f"{written}, expected {part.size}"
            )
        try:
            await remote.rename(tmp, final)
        except TargetExists:
            # Already published (by an earlier attempt): ours is a redundant copy.
            with_log.info("already_published")
            await remote.remove(tmp)
        self._point("after_rename", part)
        self._move(part, PartState.PUBLISHED, bytes=part.size, rows=part.rows)
        if written >= BIG_UNIT:
            give_back()  # the upload's buffers (a 100 MB part: ~25 MB), not kept while idle

    def _count_upload(self, written: int, seconds: float) -> None:
        """Running totals for the metrics: every byte sent, re-uploads included."""
        self.store.set_fact("upload_bytes_total",
                            int(self.store.fact("upload_bytes_total", 0)) + written)
        self.store.set_fact("upload_seconds_total",
                            float(self.store.fact("upload_seconds_total", 0.0)) + seconds)

    def _progress(self, part: Part) -> Callable[[int], None]:
        hooks, alive = self.hooks, self.on_progress

        def progress(done: int) -> None:
            if alive is not None:
                alive()
            if hooks is not None and done < part.size:
                hooks("mid_upload", part)

        return progress

    def _point(self, name: str, part: Part) -> None:
        if self.hooks is not None:
            self.hooks(name, part)

    def _move(self, part: Part, to: PartState, **say: object) -> None:
        self.transitions.part(part, to, **say)


PART_BACKOFF = Backoff(base=5.0, ceiling=600.0)
"""A part whose publication failed locally is tried again after 5 s, doubling to 10 min."""
