"""The one owner of the connection to the provider: connect, reconnect, back off, report.

Every remote step runs through :meth:`RemoteSession.attempt`. A retryable failure (network,
timeout, busy) drops the connection and backs off exponentially with jitter up to a ceiling;
a permanent one (host key, authentication, permission) stops the attempts and is retried
slowly until fixed. ``remote.unreachable`` is raised once per outage with the reason (at once
for a permanent failure, after a few retryable ones), ``remote.recovered`` when a step works
again. A new connection is always reconciled by the step itself: its first act is a listing.

A connection that made progress and was then lost starts the count again: a flaky link that
works between cuts is retried at the base delay, not pushed out by every cut. Progress is
any request the server answered on that connection (a listing, a stat, upload bytes
acknowledged, a read, a rename, a removal), seen by the session through the remote it hands
the step, or told by a step through :meth:`RemoteSession.progress`. Only a lost link
(:class:`~sftpd_agent.remote.base.ConnectionLost`: reset, broken pipe, no answer) is
forgiven so: a server that answers and then refuses (disk full, a failure status) still
backs off, and so does a link cut before it answered anything.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import Clock
from ..errors import PermanentRemoteError, RemoteError
from ..events import Events
from ..logs import get_logger
from ..rules.backoff import Backoff
from .base import ConnectionLost, Remote, RemoteEntry

log = get_logger("sftpd_agent.session")

UNREACHABLE_AFTER = 3
"""Consecutive retryable failures before the outage is reported."""
CUT_UNREACHABLE_AFTER = 30
"""Consecutive failed attempts, even each after progress, before the outage is reported: a
link cut every time before a round completes is down for the operator's purposes."""


@dataclass
class RemoteSession:
    connect: Callable[[], Awaitable[Remote]]
    clock: Clock
    events: Events
    backoff: Backoff = field(default_factory=Backoff)
    remote: Remote | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt: datetime.datetime | None = None
    reported: bool = False
    progressed: bool = False  # the current connection has had an answer
    attempts_failed: int = 0  # consecutive failed attempts, progress or not

    def ready(self) -> bool:
        return self.next_attempt is None or self.clock() >= self.next_attempt

    def progress(self) -> None:
        """The current connection did useful work: a failure now restarts the backoff."""
        self.progressed = True

    async def attempt(self, step: Callable[[Remote], Awaitable[None]]) -> bool:
        """Run ``step`` on a connected remote; False when it failed (and was backed off)."""
        if not self.ready():
            return False
        try:
            if self.remote is None:
                self.remote = await self.connect()
                self.progressed = False
                log.info("remote_connected")
            await step(Watched(self.remote, self.progress))
        except RemoteError as exc:
            await self._failed(exc)
            return False
        self._succeeded()
        return True

    async def close(self) -> None:
        if self.remote is not None:
            remote, self.remote = self.remote, None
            with contextlib.suppress(RemoteError):
                await remote.close()

    async def _failed(self, exc: RemoteError) -> None:
        await self.close()
        permanent = isinstance(exc, PermanentRemoteError)
        progressed, self.progressed = self.progressed, False
        if progressed and isinstance(exc, ConnectionLost):
            self.failures = 0  # the link worked until the cut: retry soon, not later each cut
        self.failures += 1
        self.attempts_failed += 1
        self.last_error = str(exc)
        delay = self.backoff.delay(self.failures, permanent=permanent)
        self.next_attempt = self.clock() + datetime.timedelta(seconds=delay)
        log.warning("remote_failed", error=str(exc), permanent=permanent,
                    failures=self.failures, progressed=progressed, retry_in=round(delay, 1))
        if not self.reported and (permanent or self.failures >= UNREACHABLE_AFTER
                                  or self.attempts_failed >= CUT_UNREACHABLE_AFTER):
            self.reported = True
            self.events("remote.unreachable", None, reason=str(exc), permanent=permanent)

    def _succeeded(self) -> None:
        if self.reported:
            log.info("remote_recovered", after_failures=self.attempts_failed)
            self.events("remote.recovered", None, after_failures=self.attempts_failed)
        self.failures = 0
        self.attempts_failed = 0
        self.last_error = None
        self.next_attempt = None
        self.reported = False


class Watched:
    """A :class:`Remote` that calls ``progress`` whenever the server answers a request."""

    def __init__(self, remote: Remote, progress: Callable[[], None]) -> None:
        self._remote = remote
        self._progress = progress

    async def list(self, directory: str) -> list[RemoteEntry]:
        entries = await self._remote.list(directory)
        self._progress()
        return entries

    async def upload(
        self, local: Path, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> int:
        def moved(done: int) -> None:
            if done:
                self._progress()
            if progress is not None:
                progress(done)

        written = await self._remote.upload(local, remote, progress=moved)
        self._progress()
        return written

    async def rename(self, old: str, new: str) -> None:
        await self._remote.rename(old, new)
        self._progress()

    async def stat(self, path: str) -> RemoteEntry | None:
        entry = await self._remote.stat(path)
        self._progress()
        return entry

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        data = await self._remote.read(path, offset, length)
        self._progress()
        return data

    async def release(self) -> None:
        await self._remote.release()

    async def remove(self, path: str) -> None:
        await self._remote.remove(path)
        self._progress()

    async def close(self) -> None:
        await self._remote.close()
