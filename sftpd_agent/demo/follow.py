"""Following the agent for a person: its JSON log lines turned into one readable line per
step (phone numbers masked), milestones to wait for with a bounded wait, and read-only looks
at what the agent and the provider wrote (the journal, the STOP files)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..rules.masking import mask_numbers
from ..rules.report_lines import parse_report_line
from ..rules.states import CampaignState

if TYPE_CHECKING:
    from ..store.journal import Store
    from ..testing import DaemonProcess

_T = TypeVar("_T")

CLEANUP_RESERVE = 8.0  # seconds kept back from the demo's deadline to stop everything


_STATES = frozenset(str(state) for state in CampaignState)


class DemoFailed(Exception):
    """A step that did not happen: ``step`` names it, the message says why (one line)."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(why)
        self.step = step


class Screen:
    """Lines for a person, each step prefixed with the seconds since the demo began."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, campaign: str, what: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.say(f"  {elapsed:5.1f}s  {campaign:<12} {what:<11} {mask_numbers(detail)}".rstrip())


@dataclass
class Campaign:
    """What the demo has seen of one campaign."""

    label: str  # "campaign 1"
    campaign_id: str
    reached: set[str] = field(default_factory=set)
    state: str = "not received"
    suppressed: int | None = None
    problem: str | None = None  # held or rejected


class Follower:
    """Turns the daemon's log lines into steps on the screen and milestones to wait for."""

    def __init__(self, screen: Screen, daemon: DaemonProcess, state_db: Path,
                 deadline: float) -> None:
        self.screen = screen
        self.daemon = daemon
        self.state_db = state_db
        self.deadline = deadline
        self.campaigns: dict[str, Campaign] = {}
        self.ready = False
        self.remote_error: str | None = None
        self._pending: deque[dict[str, Any]] = deque()  # read from the log, not yet shown

    def track(self, label: str, campaign_id: str) -> Campaign:
        self.campaigns[campaign_id] = Campaign(label, campaign_id)
        return self.campaigns[campaign_id]

    def wait(self, step: str, condition: Callable[[], _T | None], seconds: float,
             waiting_for: str) -> _T:
        """Show what the daemon logs until ``condition`` holds; DemoFailed after ``seconds``
        (or the demo's deadline), when the daemon exits, or when a campaign goes wrong."""
        left = self.deadline - CLEANUP_RESERVE - time.monotonic()
        limit = max(0.0, min(seconds, left))
        end = time.monotonic() + limit
        while True:
            line = self._next_line(step)
            if line is not None:
                self._show(line)
            value = condition()
            if value:
                return value
            for campaign in self.campaigns.values():
                if campaign.problem:
                    raise DemoFailed(step, campaign.problem)
            if time.monotonic() >= end:
                context = f" (remote: {self.remote_error})" if self.remote_error else ""
                if left < seconds:
                    context += " (the demo's time is up)"
                raise DemoFailed(step, f"no {waiting_for} within {limit:.0f} s{context}")

    def pause(self, step: str, seconds: float) -> None:
        """Show what the daemon logs for ``seconds``."""
        end = time.monotonic() + seconds
        self.wait(step, lambda: time.monotonic() >= end, seconds + 1, "pause")

    def wait_for(self, step: str, campaign: Campaign, *milestones: str,
                 seconds: float) -> str:
        """Wait until ``campaign`` reached one of ``milestones``; the one reached."""
        def reached() -> str | None:
            return next((m for m in milestones if m in campaign.reached), None)
        return self.wait(step, reached, seconds,
                         f"{' or '.join(milestones)} (campaign {campaign.campaign_id} is "
                         f"{campaign.state})")

    def why_exited(self) -> str:
        """``the agent exited with code N: <its last line that is not JSON, masked>``."""
        code = self.daemon.exit_code()
        last = self.daemon.last_words()
        shown = f": {mask_numbers(last)}" if last else ""
        return f"the agent exited with code {code}{shown}"

    def _next_line(self, step: str) -> dict[str, Any] | None:
        """The daemon's next log line, one at a time (a step waiting for a milestone then
        goes on right after the line that reached it); None after 0.05 s without one.
        DemoFailed once the daemon has exited and every line of it was shown."""
        if not self._pending:
            exited = self.daemon.exited()  # before reading: its last lines are then in the file
            self._pending.extend(self.daemon.new_lines())
            if not self._pending:
                if exited:
                    raise DemoFailed(step, self.why_exited())
                time.sleep(0.05)
                return None
        return self._pending.popleft()

    def _campaign(self, line: Mapping[str, Any]) -> Campaign | None:
        campaign_id = line.get("campaign_id")
        if campaign_id is None and isinstance(line.get("remote_name"), str):
            stem = line["remote_name"].removesuffix(".csv")
            campaign_id = next((c for c in self.campaigns if stem.endswith(f"-{c}")), None)
        return self.campaigns.get(campaign_id) if isinstance(campaign_id, str) else None

    def _show(self, line: Mapping[str, Any]) -> None:
        event = line.get("event")
        # An event is said in an ``event`` line, or (a state transition) in the transition's
        # own line, which names it in ``announces``.
        name = line.get("name") if event == "event" else line.get("announces")
        if event == "agent_ready":
            self.ready = True
            return
        if name in ("optout.received", "reply.received", "remote.unreachable",
                    "remote.recovered"):
            self._show_agent_event(str(name), line)
            return
        campaign = self._campaign(line)
        if campaign is None:
            return
        label = campaign.label

        def say(what: str, detail: str = "") -> None:
            self.screen.step(label, what, detail)

        if "state" in line and isinstance(line["state"], str):
            campaign.state = line["state"]
        if isinstance(event, str) and event.removeprefix("campaign_") in _STATES:
            campaign.state = event.removeprefix("campaign_")
        if event == "campaign_received":
            campaign.reached.add("received")
            campaign.state = "received"
            say("received", f"{line.get('file')}")
        elif event == "campaign_validated":
            campaign.reached.add("validated")
            campaign.state = "validated"
            say("validated", f"{line.get('rows')} rows: {line.get('valid')} valid, "
                             f"{line.get('invalid')} invalid, {line.get('duplicates')} "
                             f"duplicate(s), {line.get('segments')} SMS segments")
            details = validation_details(self.state_db, campaign.campaign_id)
            if details:
                say("", details)
        elif event == "campaign_scheduled":
            campaign.reached.add("scheduled")
            when = str(line.get("send_at", ""))[11:16]
            note = line.get("note")
            say("scheduled", f"send at {when}" + (f" ({note})" if note else " (now)"))
        elif event == "campaign_uploading":
            campaign.reached.add("uploading")
            suppressed = line.get("suppressed")
            campaign.suppressed = suppressed if isinstance(suppressed, int) else None
            say("uploading", f"{line.get('rows')} rows in {line.get('parts')} file(s), "
                             f"suppressed: {suppressed}")
        elif event == "part_published":
            campaign.reached.add("published")
            say("published", f"Send/{line.get('remote_name')} ({line.get('rows')} rows, "
                             f"{line.get('bytes')} bytes: .tmp, size checked, renamed .csv)")
        elif event == "campaign_processing":
            campaign.reached.add("processing")
            say("processing", "the provider took the file (.lock)")
        elif name == "campaign.done":
            if "processing" not in campaign.reached:
                say("processing", "(the .lock came and went between two polls)")
            campaign.reached.add("done")
            say("done", "the provider accepted the file (.done)")
        elif name == "campaign.reported":
            campaign.reached.add("reported")
            acks = line.get("acks")
            figures = ", ".join(f"{status} {count}" for status, count in sorted(
                acks.items())) if isinstance(acks, dict) else "?"
            say("reported", f"ACK ingested, delivery: {figures}")
        elif name == "campaign.rejected":
            campaign.problem = f"the provider rejected campaign {campaign.campaign_id}"
        elif name == "campaign.held":
            campaign.problem = (f"campaign {campaign.campaign_id} was held: "
                                f"{mask_numbers(str(line.get('reason')))}")

    def _show_agent_event(self, name: str, line: Mapping[str, Any]) -> None:
        if name == "optout.received":
            numbers = line.get("numbers")
            shown = ", ".join(mask_numbers(str(n)) for n in numbers) \
                if isinstance(numbers, list) else ""
            self.screen.step("reports", "opt-out", f"{line.get('count')} number(s): {shown}")
        elif name == "reply.received":
            self.screen.step("reports", "reply", f"{line.get('count')} SMS-MO reply(ies), "
                                                 f"{line.get('opt_outs', 0)} of them opt-out")
        elif name == "remote.unreachable":
            self.remote_error = mask_numbers(str(line.get("reason")))
            self.screen.step("remote", "unreachable", self.remote_error)
        else:
            self.remote_error = None
            self.screen.step("remote", "recovered")


# --- what the agent and the provider wrote (read-only) -----------------------------------


@contextlib.contextmanager
def _read_store(path: Path) -> Iterator[Store]:
    """The agent's journal, read-only (beside the running daemon, as ``status`` does)."""
    from ..store.journal import Store  # noqa: PLC0415

    store = Store(path, readonly=True)
    try:
        yield store
    finally:
        store.close()


def validation_details(state_db: Path, campaign_id: str) -> str:
    """Invalid rows by rule and transliterated characters, from the journal (read-only)."""
    summary: dict[str, Any] = {}
    with contextlib.suppress(sqlite3.Error), _read_store(state_db) as store:
        for campaign in store.campaigns():
            if campaign.campaign_id == campaign_id:
                summary = campaign.summary
    parts = []
    by_code = summary.get("invalid_by_code") or {}
    if by_code:
        parts.append("invalid: " + ", ".join(f"{code} {n}" for code, n in by_code.items()))
    replaced = summary.get("transliterated") or {}
    if replaced:
        parts.append("transliterated to GSM: " + ", ".join(replaced))
    return "; ".join(parts)


def suppressed(state_db: Path) -> set[str]:
    """The agent's suppression list (empty while the journal cannot be read)."""
    try:
        with _read_store(state_db) as store:
            return store.suppressed()
    except sqlite3.Error:  # a journal being written: read again shortly
        return set()


def stop_numbers(report_dir: Path) -> set[str]:
    """The numbers in the provider's STOP files (complete lines), read as the agent reads
    them (the report-line grammar)."""
    numbers = set()
    for path in report_dir.glob("STOP-*.csv"):
        for text in path.read_bytes().decode("utf-8").split("\r\n")[:-1]:
            line = parse_report_line(text)
            if line is not None and line.msisdn:
                numbers.add(line.msisdn)
    return numbers


def reports_read(report_dir: Path, state_db: Path) -> bool:
    """Whether the agent has read every STOP and SMS-MO file in ``report_dir`` to its end."""
    try:
        with _read_store(state_db) as store:
            for path in [*report_dir.glob("STOP-*.csv"), *report_dir.glob("SMSMO-*.csv")]:
                cursor = store.report_cursor(path.name)
                if cursor is None or cursor.offset < path.stat().st_size:
                    return False
    except sqlite3.Error:  # a journal being written: read again shortly
        return False
    return True
