"""``sftpd-agent run``: the one owner of the daemon's lifecycle.

    startup   open the journal; take in files taken before a crash; finish every campaign
              left half-way (validate, plan); rebuild the scheduler's jobs from the journal
    main loop three tasks: the outbox watcher, the remote loop (prepare what is due, then one
              round: list Send/, reconcile, publish, track outcomes), the heartbeat (sd_notify
              WATCHDOG=1 only while both loops make progress)
    shutdown  SIGTERM: stop taking work, let the step in flight finish (every step is
              resumable from the journal anyway), STOPPING=1, exit 0; SIGHUP: reload settings

APScheduler (3.x, AsyncIOScheduler, memory job store, explicit time zone) holds the timers:
the poll every ``poll_seconds`` and one job per scheduled campaign at its upload time. Timers
only wake the remote loop; what is due is decided against the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .boundary import Failures, describe, waits_for_space
from .clock import Clock
from .config import Settings, SettingsSource
from .errors import ConfigError, RemoteError
from .files import private_dir
from .logs import bind_campaign, get_logger
from .memory import BIG_ROWS, BIG_UNIT, give_back, tune_heap
from .notify.payload import event_payload
from .notify.queue import Notifications
from .pipeline.campaigns import Campaigns
from .pipeline.metrics import write_textfile
from .pipeline.outbox import Outbox, watch
from .pipeline.publication import Publisher
from .pipeline.reports import Reports
from .pipeline.results import results_path, write_results
from .pipeline.retention import purge
from .remote.base import Remote
from .remote.session import RemoteSession
from .rules.backoff import Backoff
from .rules.display import shown
from .rules.states import PART_WAITING, WAITING, CampaignState
from .store.journal import Store
from .store.records import Campaign, now_iso
from .systemd import Notifier

log = get_logger("sftpd_agent.daemon")
C = CampaignState

RETRY_SECONDS = (5.0, 600.0)
"""A campaign step that failed without being held (no space, a locked journal) is tried
again after the first figure, doubling up to the second."""


RemoteFactory = Callable[[Settings], Awaitable[Remote]]
"""Opens a session to the provider with the given settings (asyncssh in production)."""


class Agent:
    """Owns the daemon's lifecycle: start-up reconciliation, the loops (outbox intake, the
    remote round, the heartbeat, the notification sender), the timers, signals, ``sd_notify``
    and the stop; and the boundaries that keep one unit's failure that unit's alone.

    It is given its parts: the settings (a :class:`SettingsSource`, read by every component
    at the moment it needs them, so that a reload reaches all of them), the journal, the
    remote factory and the clock. The campaign's path is the components': the
    :class:`Campaigns` (local life), the :class:`Publisher` (``Send/``), the :class:`Reports`
    (``Report/``) and the notifications.
    """

    def __init__(
        self,
        settings: SettingsSource,
        *,
        store: Store,
        connect: RemoteFactory,
        clock: Clock,
        notifier: Notifier | None = None,
        fault_hook: Callable[[str, object], None] | None = None,
    ) -> None:
        self.source = settings
        self.clock = clock
        self.store = store
        self.notifier = notifier or Notifier.from_environment()
        self.campaigns = Campaigns(settings, store, clock, self.emit,
                                   suppressed=store.suppressed)
        self.publisher = Publisher(
            store, lambda: self.settings.remote.send_dir, self.campaigns.part_file, clock,
            self.emit, hooks=fault_hook, on_progress=self._remote_progress)
        self.reports = Reports(store, settings, clock, self.emit,
                               on_reported=self.campaigns.record_report,
                               before_reported=self._write_results, hooks=fault_hook,
                               on_progress=self._remote_progress)
        self.session = RemoteSession(lambda: connect(self.settings), clock, self.emit,
                                     _RemoteBackoff(settings))
        self.outbox = Outbox(self.settings.paths.outbox,
                             lambda: self.settings.campaign.stable_seconds,
                             grace=lambda: self.settings.campaign.contacts_grace_seconds)
        self.scheduler = AsyncIOScheduler(timezone=self.settings.tz)
        self.notifications = Notifications(store, settings, clock)
        self.notify_wake = asyncio.Event()  # its own: the sender clears it
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        # Two locks, so that taking in a new file never waits behind a long upload: the
        # intake (outbox entries, validation) and the remote side (preparing due campaigns,
        # the poll round). They touch different campaigns; the journal serialises writes.
        self.intake_lock = asyncio.Lock()
        self.remote_lock = asyncio.Lock()
        self._progress = {"outbox": time.monotonic(), "remote": time.monotonic()}
        self.failures = Failures()
        self._retry: dict[int, tuple[float, float]] = {}  # campaign pk -> (monotonic, delay)
        self._odd_shown: dict[str, str] = {}
        self._unrecorded = False  # a file in the spool waits to be recorded

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.source()

    # -- events --------------------------------------------------------------------------

    def emit(self, event: str, campaign: Campaign | None = None, *, quiet: bool = False,
             **data: Any) -> None:
        """An event of the contract: logged (unless ``quiet``: a transition's own line said
        it), and queued durably for e-mail and hooks.

        Called from the event loop and from worker threads (validation, preparation)."""
        if quiet:
            pass
        elif campaign is not None:
            with bind_campaign(campaign.campaign_id):
                log.info("event", name=event, state=str(campaign.state), **data)
        else:
            log.info("event", name=event, **data)
        payload = event_payload(event, at=self.clock(), campaign=campaign, data=data)
        try:
            queued = self.notifications.enqueue(event, payload)
        except sqlite3.Error as exc:
            log.error("notification_enqueue_failed", name=event, error=str(exc))  # noqa: TRY400
            return
        if queued and self._loop is not None:
            self._loop.call_soon_threadsafe(self.notify_wake.set)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Start up, run the loops until SIGTERM; 0 after a clean stop, 1 when a loop ended
        on its own (systemd restarts the service)."""
        loop = self._loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        code = 0
        try:
            await self.startup()
            self.notifier.ready("taking campaigns")
            log.info("agent_ready", outbox=str(self.settings.paths.outbox),
                     host=self.settings.remote.host, pid=os.getpid())
            tasks = [
                asyncio.create_task(watch(self.outbox, self._take, self.stop,
                                          progress=self._outbox_progress), name="outbox"),
                asyncio.create_task(self._remote_loop(), name="remote"),
                asyncio.create_task(self._heartbeat(), name="heartbeat"),
                asyncio.create_task(self.notifications.run(self.stop, self.notify_wake),
                                    name="notify"),
            ]
            stopping = asyncio.create_task(self.stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopping, *tasks],
                                         return_when=asyncio.FIRST_COMPLETED)
            if stopping not in done:
                code = 1
                for task in done:
                    error = task.exception() if not task.cancelled() else None
                    log.critical("loop_ended", loop=task.get_name(),
                                 error=describe(error) if error else "returned",
                                 detail="the agent stops so that systemd restarts it")
                self.stop.set()
            self.notifier.stopping()
            log.info("agent_stopping")
            self.wake.set()
            _, pending = await asyncio.wait(tasks, timeout=self.settings.remote
                                            .operation_timeout_seconds)
            for task in pending:
                task.cancel()
        finally:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            await self.session.close()
            self._quietly("stopped", lambda: self.store.set_fact(
                "stopped_at", now_iso(self.clock())))
            self.store.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("agent_stopped", exit_code=code)
        return code

    async def startup(self) -> None:
        """Finish what a crash or a stop left half-way, then arm the timers.

        Nothing found here can stop the start: a file that fails to be recorded is set aside
        in ``failed/``, a campaign that fails to validate is held (or, short of disk space,
        left to be tried again by the remote loop)."""
        self._quietly("started", self._start_facts)
        # Opt-out lines a crash left unlisted join the list now, not at the first poll
        # (uploads count them as opted out meanwhile: Store.suppressed).
        self._quietly("optout_listing", self.store.list_new_optouts)
        async with self.intake_lock, self.remote_lock:
            for source in self.campaigns.recover():
                await self._record(source)
            # Validated but not yet planned is validated again: pure and deterministic.
            for campaign in self.store.campaigns(C.RECEIVED, C.VALIDATED):
                await self._validate(campaign)
        self.scheduler.add_job(self._wake_job, IntervalTrigger(
            seconds=self.settings.remote.poll_seconds, timezone=self.settings.tz), id="poll")
        # every campaign with files still to prepare: scheduled ones, and groups still to go
        for campaign in self.store.due(self.clock() + datetime.timedelta(days=3660)):
            self._schedule(campaign)
        self.scheduler.add_job(self._purge_job, CronTrigger(hour=4, minute=17,
                                                        timezone=self.settings.tz), id="purge")
        self.scheduler.start()
        await self._purge_job()

    def _start_facts(self) -> None:
        self.store.set_fact("pid", os.getpid())
        self.store.set_fact("started_at", now_iso(self.clock()))
        # Times are kept to the second: a restart within the second of the last stop must
        # not read as "stopped" (started_at == stopped_at).
        self.store.set_fact("stopped_at", None)
        self._heartbeat_fact()

    def _request_stop(self, name: str) -> None:
        log.info("signal_received", signal=name)
        self.stop.set()

    def _request_reload(self) -> None:
        log.info("signal_received", signal="SIGHUP")
        try:
            paths_kept = self.source.reload()
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc))  # noqa: TRY400 - one line, no trace
            return
        if paths_kept:
            log.warning("reload_paths_ignored", detail="paths take effect at the next start")
        self.notifier.reloading()
        # Every component reads the settings through the source; only the scheduler's
        # timer holds a copy of a value.
        if self.scheduler.get_job("poll") is not None:  # not yet during start-up
            self.scheduler.reschedule_job("poll", trigger=IntervalTrigger(
                seconds=self.settings.remote.poll_seconds, timezone=self.settings.tz))
        self.notifier.ready("configuration reloaded")
        log.info("config_reloaded")
        self.wake.set()

    # -- boundaries ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _unit(self, unit: str, **context: Any) -> Iterator[None]:
        """A unit of work: any exception is logged once, remembered for ``status``, and
        swallowed; the caller's loop goes on."""
        try:
            yield
        except Exception as exc:  # the boundary: every failure stays with its unit
            self._failed(unit, exc, **context)
        else:
            self.failures.cleared(unit)

    def _failed(self, unit: str, exc: Exception, **context: Any) -> str:
        """Say once that ``unit`` failed, and keep it for ``status``; the one-line reason."""
        reason = self.failures.record(unit, exc, at=self.clock(), **context)
        self._quietly("last_local_error", lambda: self.store.set_fact(
            "last_local_error", self.failures.last))
        return reason

    def _guarded(self, unit: str, step: Callable[[], object]) -> None:
        with self._unit(unit):
            step()

    def _quietly(self, what: str, step: Callable[[], object]) -> None:
        """A bookkeeping write (a fact) that may fail when the journal is locked or the disk
        is full: said once, never fatal, never recorded in the journal (it is the journal
        that failed)."""
        unit = f"journal write ({what})"
        try:
            step()
        except Exception as exc:  # the boundary of a bookkeeping write
            self.failures.record(unit, exc, at=self.clock())
        else:
            self.failures.cleared(unit)

    def _retry_due(self, pk: int) -> bool:
        at, _ = self._retry.get(pk, (0.0, 0.0))
        return time.monotonic() >= at

    def _retry_later(self, pk: int) -> float:
        _, last = self._retry.get(pk, (0.0, 0.0))
        delay = min(RETRY_SECONDS[1], max(RETRY_SECONDS[0], last * 2))
        self._retry[pk] = (time.monotonic() + delay, delay)
        return delay

    def _failed_step(self, campaign: Campaign, step: str, exc: Exception) -> None:
        """A campaign step failed: short of space (or the journal busy) it waits and is
        tried again; otherwise the campaign is held with the reason."""
        unit = f"campaign {campaign.campaign_id} ({campaign.file}): {step}"
        reason = self._failed(unit, exc, campaign=campaign.id)
        transient = waits_for_space(exc) or isinstance(exc, sqlite3.OperationalError)
        if transient or step == "prepare":
            try:
                current = self.store.campaign(campaign.id)
            except Exception:  # the journal itself failing: as it was, tried again
                current = campaign
            if current.state not in WAITING:  # the step got through before it failed
                self._retry.pop(campaign.id, None)
                return
            delay = self._retry_later(campaign.id)
            self._quietly("waiting", lambda: self.store.update_campaign(
                campaign.id, reason=f"waiting ({step} failed: {reason}); "
                                    f"tried again in {delay:.0f} s"))
            return
        try:
            current = self.store.campaign(campaign.id)
            if current.state in WAITING:
                self.campaigns.hold(current, f"{step} failed: {reason}")
        except Exception as again:  # holding failed too (the disk, the journal): try later
            self._failed(unit + " (hold)", again)
            self._retry_later(campaign.id)

    def _waited(self, campaign: Campaign, step: str) -> None:
        """A step that had failed went through: its failure and its "waiting" reason go."""
        self.failures.cleared(f"campaign {campaign.campaign_id} ({campaign.file}): {step}")

        def forget_waiting() -> None:
            current = self.store.campaign(campaign.id)
            if current.state != C.HELD and (current.reason or "").startswith("waiting ("):
                self.store.update_campaign(campaign.id, reason=None)

        self._quietly("waited", forget_waiting)

    # -- the outbox ----------------------------------------------------------------------

    async def _take(self, path: Path) -> None:
        """One outbox entry: taken, recorded, validated and planned, or its failure said."""
        if self.stop.is_set():
            return
        async with self.intake_lock:
            with self._unit(f"outbox entry {shown(path.name)}"):
                source = self.campaigns.move_in(path, self.outbox.companions.get(path.name))
                orphan = self.outbox.orphans.get(path.name)
                if orphan is None:
                    await self._record(source)
                    return
                campaign = self.campaigns.record(source)  # never taken alone: held at once
                self.campaigns.hold(campaign, orphan)

    async def _record(self, source: Path) -> None:
        try:
            campaign = self.campaigns.record(source)
        except Exception as exc:  # the boundary: set aside, never tripped on again
            if waits_for_space(exc) or isinstance(exc, sqlite3.OperationalError):
                # Short of space or the journal busy: the file stays in the spool and is
                # recorded at a later round (never set aside for it).
                self._failed(f"spool file {source.name}", exc)
                self._unrecorded = True
                return
            reason = self._failed(f"spool file {source.name}", exc)
            with self._unit(f"spool file {source.name} (set aside)"):
                target = self.campaigns.set_aside(source, f"could not be recorded: {reason}")
                log.warning("spool_file_set_aside", file=shown(str(target)), reason=reason)
            return
        await self._validate(campaign)

    async def _validate(self, campaign: Campaign) -> None:
        try:
            campaign = await asyncio.to_thread(self.campaigns.validate, campaign)
        except Exception as exc:  # the boundary: held with the reason, or tried again
            self._failed_step(campaign, "validation", exc)
            return
        if self._retry.pop(campaign.id, None) is not None:
            self._waited(campaign, "validation")
        if campaign.rows >= BIG_ROWS:
            give_back()  # a million rows' memory, not kept until the upload
        if campaign.state == C.SCHEDULED:
            self._schedule(campaign)
            self.wake.set()

    def _write_results(self, campaign: Campaign) -> dict[str, object]:
        """A campaign's every ACK is in: its results for the CRM (one row per contact row,
        what a French spreadsheet opens) in its archive folder, named in the event. A
        failure is said and named; it never keeps the campaign from being reported."""
        path = results_path(self.settings, campaign)
        try:
            private_dir(path.parent)
            figures = write_results(self.store, self.settings, campaign, path, excel=True)
        except Exception as exc:  # the boundary: the campaign is reported all the same
            reason = self._failed(f"campaign {campaign.campaign_id}: results file", exc)
            return {"results_error": reason}
        if path.stat().st_size >= BIG_UNIT:
            give_back()  # a million rows' memory, not kept while idle
        with bind_campaign(campaign.campaign_id):
            log.info("campaign_results_written", file=str(path), **figures.as_dict())
        return {"results_file": str(path), "results": figures.line()}

    def _outbox_progress(self) -> None:
        self._mark("outbox")
        odd = {**self.outbox.odd, **self.outbox.waiting}
        if odd != self._odd_shown:
            self._odd_shown = dict(odd)
            self._quietly("outbox_odd", lambda: self.store.set_fact("outbox_odd", odd))

    def _schedule(self, campaign: Campaign) -> None:
        """A timer at the campaign's next upload time (a hint: the clock decides)."""
        at = campaign.next_upload_at or (
            campaign.upload_at if campaign.state == C.SCHEDULED else None)
        if at is None:
            return
        delay = (at - self.clock()).total_seconds()
        run_at = datetime.datetime.now(self.settings.tz) + datetime.timedelta(
            seconds=max(0.0, delay))
        self.scheduler.add_job(self._wake_job, DateTrigger(run_date=run_at),
                               id=f"upload-{campaign.id}", replace_existing=True,
                               misfire_grace_time=None)

    # -- the remote side -----------------------------------------------------------------

    async def _remote_loop(self) -> None:
        while not self.stop.is_set():
            self._mark("remote")
            async with self.intake_lock:
                with self._unit("intake retry"):
                    await self._retry_intake()
            async with self.remote_lock:
                with self._unit("uploads due"):
                    await self._prepare_due()
            if not self.stop.is_set() and self.session.ready():
                async with self.remote_lock:
                    ok = await self._attempt_round()
                    with self._unit("after the poll"):
                        self._after_round(ok)
            self._guarded("metrics", self._write_metrics)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self._idle_wait())

    async def _retry_intake(self) -> None:
        """Files taken but not recorded, and campaigns whose validation failed short of
        space, tried again."""
        if self._unrecorded:
            self._unrecorded = False
            for source in self.campaigns.recover():
                await self._record(source)
        waiting = [c for c in self.store.campaigns(C.RECEIVED, C.VALIDATED)
                   if c.id in self._retry and self._retry_due(c.id)]
        for campaign in waiting:
            await self._validate(campaign)

    async def _prepare_due(self) -> None:
        """The campaigns due for upload: their provider files, the suppression list applied
        now."""
        for campaign in self.campaigns.due():
            if self.stop.is_set():
                break
            if not self._retry_due(campaign.id):
                continue
            try:
                await asyncio.to_thread(self.campaigns.prepare, campaign)
            except Exception as exc:  # the boundary: the campaign waits, the loop goes on
                self._failed_step(campaign, "prepare", exc)
            else:
                if self._retry.pop(campaign.id, None) is not None:
                    self._waited(campaign, "prepare")
                self._schedule(self.store.campaign(campaign.id))  # its next group, if any

    async def _attempt_round(self) -> bool:
        """One poll through the session; a failure that is not the remote's (the journal, a
        local file) is said once and the round is tried again at the next poll."""
        try:
            ok = await self.session.attempt(self._round)
        except Exception as exc:  # the boundary: RemoteErrors are the session's
            if isinstance(exc, RemoteError):
                raise
            self._failed("poll round", exc)
            return False
        self.failures.cleared("poll round")
        return ok

    async def _round(self, remote: Remote) -> None:
        """One poll of the provider: ``Send/`` (publish, outcomes), then ``report_dir``."""
        await self.publisher.round(remote)
        self._mark("remote")
        await self.reports.round(remote)

    # Scheduler jobs are coroutines: APScheduler runs them on the event loop, where the
    # journal and the events live (a plain function would run in a worker thread).
    async def _wake_job(self) -> None:
        self.wake.set()

    async def _purge_job(self) -> None:
        """The purge deletes in short batches: in a worker thread, the loop goes on."""
        async with self.intake_lock, self.remote_lock:
            with self._unit("retention purge"):
                await asyncio.to_thread(self._purge)

    def _purge(self) -> None:
        """The daily retention purge (the suppression list is never purged)."""
        purge(self.store, self.settings.paths, self.settings.paths.retention_days,
              now=self.clock())

    def _idle_wait(self) -> float:
        wait = self.settings.remote.poll_seconds
        if self.session.next_attempt is not None:
            wait = min(wait, max(0.1, (self.session.next_attempt - self.clock()).total_seconds()))
        if self._retry:
            soonest = min(at for at, _ in self._retry.values()) - time.monotonic()
            wait = min(wait, max(0.1, soonest))
        return wait

    def _after_round(self, ok: bool) -> None:
        now = self.clock()
        if ok:
            self.store.set_fact("last_poll", now_iso(now))
        else:
            self.store.set_fact("remote_errors_total",
                                int(self.store.fact("remote_errors_total", 0)) + 1)
        self.store.set_fact("remote_error", self.session.last_error)
        for campaign in self.campaigns.unarchived():
            with self._unit(f"campaign {campaign.campaign_id} ({campaign.file}): archive"):
                self.campaigns.archive(campaign)
        timeout = datetime.timedelta(minutes=self.settings.campaign.outcome_timeout_minutes)
        for part in self.store.parts(None, *PART_WAITING):
            key = f"overdue:{part.id}"
            if part.published_at and now - part.published_at > timeout and not self.store.fact(key):
                self.store.set_fact(key, True)
                campaign = self.store.campaign(part.campaign)
                with bind_campaign(campaign.campaign_id):
                    log.warning("campaign_overdue", remote_name=part.remote_name)
                self.emit("campaign.overdue", campaign, remote_name=part.remote_name)

    def _write_metrics(self) -> None:
        """The Prometheus text file, when configured: after every poll, even a failed one."""
        if not self.settings.metrics.textfile:
            return
        try:
            write_textfile(Path(self.settings.metrics.textfile), self.store, now=self.clock(),
                           pending_notifications=self.notifications.pending())
        except (ConfigError, OSError) as exc:
            log.warning("metrics_write_failed", error=str(exc))

    def _remote_progress(self) -> None:
        self._mark("remote")

    # -- liveness ------------------------------------------------------------------------

    def _mark(self, loop: str) -> None:
        self._progress[loop] = time.monotonic()

    def _heartbeat_fact(self) -> None:
        self.store.set_fact("heartbeat", now_iso(self.clock()))

    async def _heartbeat(self) -> None:
        interval = self.notifier.watchdog_interval()
        period = min(5.0, interval / 2) if interval else 5.0
        stalled_before = False
        while not self.stop.is_set():
            # poll_seconds is read at each beat: a reload that lengthens it must not make
            # an idle remote loop look stalled.
            limit = max(interval or 0.0, 2 * self.settings.remote.poll_seconds + 30)
            now = time.monotonic()
            if all(now - seen < limit for seen in self._progress.values()):
                self.notifier.watchdog()
                self._quietly("heartbeat", self._heartbeat_fact)
                stalled_before = False
            elif not stalled_before:
                stalled = {k: round(now - v) for k, v in self._progress.items()}
                log.warning("loop_stalled", **stalled)
                stalled_before = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=period)


async def sftp_connect(settings: Settings) -> Remote:
    """The production :data:`RemoteFactory`: asyncssh, the key possibly a systemd
    credential."""
    from .remote.sftp import connect  # noqa: PLC0415  (asyncssh only in the daemon)

    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    return await connect(settings.remote, credentials_dir=Path(directory) if directory else None)


def open_agent(settings: Settings, *, config_path: str | None, clock: Clock,
               fault_hook: Callable[[str, object], None] | None = None) -> Agent:
    """The agent with its production parts: the journal at ``paths.state_db``, asyncssh;
    the process's heap tuned for a daemon that meets million-row units (:func:`tune_heap`)."""
    tune_heap()
    return Agent(SettingsSource(settings, config_path), store=Store(settings.paths.state_db),
                 connect=sftp_connect, clock=clock, fault_hook=fault_hook)


class _RemoteBackoff(Backoff):
    """The connection's backoff, with the ``remote.retry_*`` settings in force."""

    def __init__(self, settings: Callable[[], Settings]) -> None:
        super().__init__()
        self._settings = settings

    def delay(self, failures: int, *, permanent: bool = False) -> float:
        remote = self._settings().remote
        self.base, self.ceiling = remote.retry_base_seconds, remote.retry_ceiling_seconds
        self.permanent = remote.permanent_retry_seconds
        return super().delay(failures, permanent=permanent)
