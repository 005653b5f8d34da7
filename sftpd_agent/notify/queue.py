"""The notification queue: every event of the contract, routed to its channels, sent.

    emit -> event_payload() -> Notifications.enqueue()   one journal row per channel, durable
         -> Notifications.run()                           the sender task: send_due() in a loop

A row is a *channel* (``email``, or ``hook:<argv as JSON>``) and the event's JSON payload. It
stays in the journal (``notifications`` table, ``store/notifications.py``) until it is sent: a
failure is logged (``notification_failed``) and retried with a backoff (30 s doubling to 1 h,
jittered), for as long as it takes; a row still failing after a day is logged
``notification_stale`` once. When the channel itself is down (SMTP unreachable, a hook that
hangs or cannot start) the rows behind wait with it; a hook's non-zero exit fails that row
only. Channels are sent in parallel, each in queue order, every send under a timeout (a hook's
whole process group is killed). A restart sends what was left. Delivery is at least once: a
crash between a send and its record sends it again (hooks get ``SFTPD_NOTIFICATION_ID``,
e-mails a stable ``Message-ID``). A channel removed from the configuration (SIGHUP) drops its
rows, logged, instead of retrying them forever. No password or passphrase reaches a log line,
an error string, an e-mail or a hook's environment.

A new kind of channel: its settings in ``config.NotifySettings``, its name in
:func:`channels_for` and :func:`_target`, its sending in ``Notifications._deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import random
import signal
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import aiosmtplib

from ..clock import Clock
from ..config import EmailSettings, HookSettings, NotifySettings, Settings
from ..logs import get_logger
from ..rules.backoff import Backoff
from ..rules.display import one_line
from ..store.journal import Store
from ..store.notifications import NotificationRows, Queued, QueueFigures
from ..store.records import now_iso
from .email import render_email, smtp_send
from .hooks import hook_environment, run_hook
from .payload import ERROR_CHARS, redact, scrub

log = get_logger("sftpd_agent.notify")

EMAIL = "email"
HOOK_PREFIX = "hook:"

RETRY_BASE_SECONDS = 30.0
RETRY_CEILING_SECONDS = 3600.0
STALE_AFTER = datetime.timedelta(hours=24)
MAX_IDLE_SECONDS = 30.0
MIN_IDLE_SECONDS = 0.5
BATCH = 200  # rows read per pass; the rest follow on the next pass


# -- channels ---------------------------------------------------------------------------


def hook_channel(command: Iterable[str]) -> str:
    return HOOK_PREFIX + json.dumps(list(command), ensure_ascii=False)


def channels_for(event: str, notify: NotifySettings) -> list[str]:
    """The channels whose filter takes ``event``, in configuration order."""
    found = []
    email = notify.email
    if email is not None and email.to and event in email.events:
        found.append(EMAIL)
    for hook in notify.hooks:
        channel = hook_channel(hook.command)
        if event in hook.events and channel not in found:
            found.append(channel)
    return found


def _target(channel: str, notify: NotifySettings) -> EmailSettings | HookSettings | None:
    if channel == EMAIL:
        return notify.email if notify.email is not None and notify.email.to else None
    return next((hook for hook in notify.hooks if hook_channel(hook.command) == channel), None)


def _shown(channel: str) -> str:
    """The channel for a log line: a hook by its program only (its arguments may be secret)."""
    if channel.startswith(HOOK_PREFIX):
        with contextlib.suppress(ValueError, IndexError, TypeError):
            return HOOK_PREFIX + str(json.loads(channel[len(HOOK_PREFIX):])[0])
    return channel


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before attempt ``attempts + 1``: 30 s doubling to 1 h, "equal jitter"."""
    return Backoff(RETRY_BASE_SECONDS, RETRY_CEILING_SECONDS, rng=rng).delay(attempts)


# -- the queue and its sender (the shell) -------------------------------------------


class Notifications:
    """The durable queue and the sender task.

    ``settings`` is called at every pass, so a reload (SIGHUP) takes effect at once.
    ``tls_context`` verifies the SMTP server (default: the system's CAs, ``SSL_CERT_FILE``).
    """

    def __init__(
        self, store: Store, settings: Callable[[], Settings],
        clock: Clock, *, tls_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.rows = NotificationRows(store)
        self.settings = settings
        self.clock = clock
        self.tls_context = tls_context
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.host = socket.gethostname()
        self._stale_logged: set[int] = set()

    # -- the queue -----------------------------------------------------------------------

    def enqueue(self, event: str, payload: dict[str, Any]) -> int:
        """One row per channel that wants ``event``, in one durable transaction."""
        channels = channels_for(event, self.settings().notify)
        if not channels:
            return 0
        self.rows.add(event, channels, json.dumps(payload, ensure_ascii=False), self.clock())
        log.debug("notification_queued", name=event, channels=[_shown(c) for c in channels])
        return len(channels)

    def pending(self) -> int:
        """Rows not sent yet."""
        return self.rows.figures()["pending"]

    def next_due(self) -> datetime.datetime | None:
        return self.rows.next_due()

    # -- sending -------------------------------------------------------------------------

    async def send_due(self) -> int:
        """Send every row that is due; the number sent. Never raises (failures are retried)."""
        return await self._send_due(None)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The sender task, until ``stop``. ``wake`` (set after an enqueue) is cleared here:
        give it to this task alone."""
        log.info("notifier_started", pending=self.pending())
        while not stop.is_set():
            wake.clear()
            await self._send_due(stop)
            if stop.is_set():
                break
            await _first_of(stop, wake, seconds=self._idle_seconds())

    def _idle_seconds(self) -> float:
        try:
            due = self.next_due()
        except sqlite3.Error:
            return MAX_IDLE_SECONDS
        if due is None:
            return MAX_IDLE_SECONDS
        wait = (due - self.clock()).total_seconds()
        return min(MAX_IDLE_SECONDS, max(MIN_IDLE_SECONDS, wait))

    async def _send_due(self, stop: asyncio.Event | None) -> int:
        try:
            settings = self.settings()
            rows = self.rows.due(self.clock(), BATCH)
        except Exception as exc:
            log.error("notification_queue_error", error=one_line(str(exc), ERROR_CHARS))  # noqa: TRY400
            return 0
        channels: dict[str, list[Queued]] = {}
        for row in rows:
            channels.setdefault(row.channel, []).append(row)
        # Channels in parallel (a hanging hook does not hold the e-mail back), rows of one
        # channel in order.
        results = await asyncio.gather(
            *(self._send_channel(channel, queued, settings, stop)
              for channel, queued in channels.items()),
            return_exceptions=True)
        sent = 0
        for channel, result in zip(channels, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.error("notification_queue_error", channel=_shown(channel),
                          error=scrub(f"{type(result).__name__}: {result}", settings))
            else:
                sent += result
        return sent

    async def _send_channel(
        self, channel: str, rows: list[Queued], settings: Settings, stop: asyncio.Event | None,
    ) -> int:
        target = _target(channel, settings.notify)
        sent = 0
        for index, row in enumerate(rows):
            if stop is not None and stop.is_set():
                break
            if target is None:
                self.rows.dropped(row.id, at=self.clock(), reason="channel removed")
                log.warning("notification_dropped", name=row.event, channel=_shown(channel),
                            campaign_id=row.campaign_id, reason="channel removed")
                continue
            failure = await self._deliver(row, target, settings)
            now = self.clock()
            if failure is None:
                self.rows.sent(row.id, at=now, attempts=row.attempts + 1)
                log.info("notification_sent", name=row.event, channel=_shown(channel),
                         campaign_id=row.campaign_id, attempt=row.attempts + 1)
                sent += 1
                continue
            detail = {key: redact(text, settings) for key, text in failure.detail.items()}
            next_at = self._failed(row, scrub(failure.error, settings), now, detail)
            if failure.channel_down:
                # The rows behind wait as long (not attempted, not counted); a failure of one
                # row only (a hook's exit status) lets the next ones go: no head-of-line block.
                self.rows.postpone((later.id for later in rows[index + 1:]), next_at)
                break
        return sent

    def _failed(
        self, row: Queued, error: str, now: datetime.datetime,
        detail: Mapping[str, str] | None = None,
    ) -> datetime.datetime:
        attempts = row.attempts + 1
        delay = retry_delay(attempts, self.rng)
        next_at = now + datetime.timedelta(seconds=delay)
        self.rows.failed(row.id, attempts=attempts, error=error, next_at=next_at)
        log.warning("notification_failed", name=row.event, channel=_shown(row.channel),
                    campaign_id=row.campaign_id, attempt=attempts, error=error,
                    retry_in=round(delay), **(detail or {}))
        if now - row.created_at >= STALE_AFTER and row.id not in self._stale_logged:
            self._stale_logged.add(row.id)
            log.error("notification_stale", name=row.event, channel=_shown(row.channel),
                      campaign_id=row.campaign_id, attempts=attempts,
                      since=now_iso(row.created_at), error=error)
        return next_at

    async def _deliver(
        self, row: Queued, target: EmailSettings | HookSettings, settings: Settings,
    ) -> _Failure | None:
        """None when sent, else what went wrong (not yet scrubbed of secrets)."""
        try:
            if isinstance(target, EmailSettings):
                await self._send_email(row, target, settings)
                return None
            return await self._run_hook(row, target)
        except Exception as exc:
            # Connection, TLS, authentication, refused addresses, a program that cannot start:
            # the channel is down. Only a refused message (DATA) is about this row alone.
            return _Failure(f"{type(exc).__name__}: {exc}",
                            channel_down=not isinstance(exc, aiosmtplib.SMTPDataError))

    async def _send_email(self, row: Queued, email: EmailSettings, settings: Settings) -> None:
        domain = email.sender.rpartition("@")[2] or "localhost"
        message = render_email(
            row.payload, email, tz=settings.tz, host=self.host,
            message_id=f"<sftpd-agent.{row.id}.{row.created_at:%Y%m%d%H%M%S}@{domain}>")
        await smtp_send(message, email, tls_context=self.tls_context)

    async def _run_hook(self, row: Queued, hook: HookSettings) -> _Failure | None:
        stdin = json.dumps(row.payload, ensure_ascii=False).encode() + b"\n"
        env = hook_environment(row.event, row.campaign_id, row.id)
        ran = await run_hook(hook.command, stdin, env=env, seconds=hook.timeout_seconds)
        if ran.timed_out:
            return _Failure(f"timed out after {hook.timeout_seconds:g} s, killed",
                            channel_down=True, detail=ran.detail())
        code = ran.returncode
        if code == 0:
            return None
        status = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                  else f"exit status {code}")
        last = ran.last_line()
        return _Failure(f"{status}: {one_line(last, 200)}" if last else status,
                        channel_down=False, detail=ran.detail())


class _Failure(NamedTuple):
    error: str
    channel_down: bool  # True: the rows behind on this channel would fail too: wait
    detail: Mapping[str, str] = {}  # a hook's output tails (read only)


def queue_status(store: Store) -> QueueFigures:
    """The queue's figures for ``status`` and metrics (works on a read-only store): see
    :class:`~sftpd_agent.store.notifications.QueueFigures`."""
    return NotificationRows(store).figures()


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

