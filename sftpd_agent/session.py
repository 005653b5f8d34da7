"""The one owner of the connection to the provider: connect, reconnect, back off, report.

Every remote step runs through :meth:`RemoteSession.attempt`. A retryable failure (network,
timeout, busy) drops the connection and backs off exponentially with jitter up to a ceiling;
a permanent one (host key, authentication, permission) stops the attempts and is retried
slowly until fixed. ``remote.unreachable`` is raised once per outage with the reason (at once
for a permanent failure, after a few retryable ones), ``remote.recovered`` when a step works
again. A new connection is always reconciled by the step itself: its first act is a listing.
"""

from __future__ import annotations

import contextlib
import datetime
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .errors import PermanentRemoteError, RemoteError
from .logs import get_logger
from .remote import Remote

log = get_logger("sftpd_agent.session")

UNREACHABLE_AFTER = 3
"""Consecutive retryable failures before the outage is reported."""


@dataclass
class Backoff:
    base: float = 1.0
    ceiling: float = 300.0
    permanent: float = 600.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int, *, permanent: bool) -> float:
        if permanent:
            return self.permanent
        raw = min(self.ceiling, self.base * 2.0 ** max(0, failures - 1))
        return float(raw * (0.5 + self.rng.random() / 2))  # "equal jitter": never less than half


@dataclass
class RemoteSession:
    connect: Callable[[], Awaitable[Remote]]
    clock: Callable[[], datetime.datetime]
    events: Callable[..., None]
    backoff: Backoff = field(default_factory=Backoff)
    remote: Remote | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt: datetime.datetime | None = None
    reported: bool = False

    def ready(self) -> bool:
        return self.next_attempt is None or self.clock() >= self.next_attempt

    async def attempt(self, step: Callable[[Remote], Awaitable[None]]) -> bool:
        """Run ``step`` on a connected remote; False when it failed (and was backed off)."""
        if not self.ready():
            return False
        try:
            if self.remote is None:
                self.remote = await self.connect()
                log.info("remote_connected")
            await step(self.remote)
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
        self.failures += 1
        self.last_error = str(exc)
        delay = self.backoff.delay(self.failures, permanent=permanent)
        self.next_attempt = self.clock() + datetime.timedelta(seconds=delay)
        log.warning("remote_failed", error=str(exc), permanent=permanent,
                    failures=self.failures, retry_in=round(delay, 1))
        if not self.reported and (permanent or self.failures >= UNREACHABLE_AFTER):
            self.reported = True
            self.events("remote.unreachable", None, reason=str(exc), permanent=permanent)

    def _succeeded(self) -> None:
        if self.reported:
            log.info("remote_recovered", after_failures=self.failures)
            self.events("remote.recovered", None, after_failures=self.failures)
        self.failures = 0
        self.last_error = None
        self.next_attempt = None
        self.reported = False

