"""``sftpd-agent demo``: a campaign's whole life on this machine, in under a minute.

In a temporary folder: SSH keys and ``known_hosts``, the provider simulator (in this process,
on 127.0.0.1), the real daemon (``python -m sftpd_agent run``, a child process) against it.
Two sample campaigns go through ``sftpd-agent submit``; the daemon's JSON log lines are shown,
as they come, as one readable line per step (phone numbers masked). Each step has a bounded
wait; the first one that fails ends the demo with ``demo failed at step "<step>": <why>`` and
exit 1. The daemon and the simulator are always stopped, and the folder removed unless kept.

    keys -> simulator -> agent -> campaign 1: received, validated, scheduled, uploading,
    published, processing, done, reported (ACK), opt-outs -> campaign 2 (the same numbers:
    the opted-out ones are suppressed) ... reported -> status -> SIGTERM (exit 0) -> clean up
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, TypeVar

from ..rules.masking import mask_numbers
from ..rules.naming import campaign_id_from_stem

if TYPE_CHECKING:
    from ..simulator import SimulatorOptions
    from ..store.journal import Store

_T = TypeVar("_T")

DEADLINE_SECONDS = 60.0
CLEANUP_RESERVE = 8.0  # seconds kept back from the deadline to stop everything
SERVICE_ID = "12345"
USERNAME = "demo"
POLL_SECONDS = 0.5

# A number in international form, or French national form with or without spaces.
# Variables that would steer the child daemon away from the demo's own configuration.
_SYSTEMD_ENV = ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class DemoFailed(Exception):
    """A step that did not happen: ``step`` names it, the message says why (one line)."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(why)
        self.step = step


# --- the sample campaigns (pure) --------------------------------------------------------

_NAMES = (
    "Hélène", "Françoise", "Jérôme", "Gaëlle", "Anaïs", "Noël", "Loïc", "Chloé", "Maël",
    "Cécile", "Thérèse", "Raphaël", "Océane", "Benoît", "Joëlle", "Solène", "Timothée",
    "Valérie", "Clément", "Inès", "Frédéric", "Aurélie", "Hervé", "Mégane", "Stéphane",
    "Léa", "Ségolène", "Jérémy", "Nathanaël", "Pénélope", "Zoé", "Régis", "Éloïse",
    "Lætitia", "Côme", "Agnès",
)
SENDER = "Creperie"


def _msisdn(index: int) -> str:
    return f"+33612000{index + 101:03d}"


def _national(e164: str) -> str:
    """"+33612000101" -> "06 12 00 01 01", as people type them."""
    digits = "0" + e164[3:]
    return " ".join(digits[i:i + 2] for i in range(0, 10, 2))


def sample_campaign() -> tuple[str, list[str]]:
    """The first campaign's CSV text, and the E.164 numbers of its valid rows.

    40 rows after a header: 36 valid (numbers in national and international form, accented
    first names, a text with ê, a curly apostrophe, « », … that the agent transliterates to
    GSM), 1 duplicate (a number already seen, written another way), 3 invalid (a short
    number, an empty message, an emoji that has no GSM form).
    """
    text = ("Bonjour {name}, la Crêperie Léon fête le printemps : -20 % sur les galettes "
            "« maison » jusqu\u2019à dimanche… STOP au 36105")
    numbers = [_msisdn(i) for i in range(len(_NAMES))]
    lines = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i, (name, number) in enumerate(zip(_NAMES, numbers, strict=True)):
        written = _national(number) if i % 2 else number
        lines.append(f"S{i + 1:03d};{written};{SENDER};{text.format(name=name)}")
        if i == 5:
            lines.append(f"S{i + 1:03d}B;{_national(numbers[2])};{SENDER};"
                         f"{text.format(name=_NAMES[2])}")  # the duplicate
        if i == 10:
            lines.append(f"X1;06 12;{SENDER};{text.format(name='Yves')}")  # a short number
        if i == 20:
            lines.append(f"X2;{_msisdn(90)};{SENDER};")  # no message
        if i == 30:
            lines.append(f"X3;{_msisdn(91)};{SENDER};Joyeux printemps 🌷")  # no GSM form
    return "\r\n".join(lines) + "\r\n", numbers


def second_campaign(numbers: list[str]) -> str:
    """The second campaign: the same recipients; those who opted out must not get it."""
    text = "Dernier jour : -20 % sur les galettes « maison » à la Crêperie Léon ! STOP au 36105"
    return "".join(f"L{i + 1:03d};{number};{SENDER};{text}\r\n"
                   for i, number in enumerate(numbers))


def hide_numbers(text: str) -> str:
    """``text`` with every phone number in it masked."""
    return mask_numbers(text)


# --- output --------------------------------------------------------------------------------


class _Screen:
    """Lines for a person, each prefixed with the seconds since the demo began."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, campaign: str, what: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.say(f"  {elapsed:5.1f}s  {campaign:<12} {what:<11} {hide_numbers(detail)}".rstrip())


# --- the daemon, a child process -------------------------------------------------------------


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would override the demo's configuration."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SFTPD_AGENT_") and key not in _SYSTEMD_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class _Daemon:
    """``python -m sftpd_agent run``: its JSON lines go to a queue (and to ``log``)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.other: list[str] = []  # the last lines that are not JSON (errors, tracebacks)
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sftpd_agent", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=clean_environment())
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,),
                                        name="sftpd-agent-demo-log", daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        with self.log.open("wb") as copy:
            for raw in stream:
                copy.write(raw)
                copy.flush()
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                try:
                    line = json.loads(text)
                except json.JSONDecodeError:
                    line = None
                if isinstance(line, dict):
                    self.lines.put(line)
                elif text.strip():
                    self.other = [*self.other[-4:], hide_numbers(text.strip())]
        self.lines.put(None)  # end of output: the process is exiting

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def why_exited(self) -> str:
        code = self.exit_code()
        if code is None and self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=2)
        last = f": {self.other[-1]}" if self.other else ""
        return f"the agent exited with code {code}{last}"

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not stop. The exit code, None if killed."""
        if self.process is None:
            return 0
        code: int | None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            code = None
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


# --- following the daemon's log -------------------------------------------------------------


@dataclass
class _Campaign:
    label: str  # "campaign 1"
    campaign_id: str
    reached: set[str] = field(default_factory=set)
    state: str = "not received"
    suppressed: int | None = None
    problem: str | None = None  # held or rejected


class _Follower:
    """Turns the daemon's log lines into steps on the screen and milestones to wait for."""

    def __init__(self, screen: _Screen, daemon: _Daemon, state_db: Path,
                 deadline: float) -> None:
        self.screen = screen
        self.daemon = daemon
        self.state_db = state_db
        self.deadline = deadline
        self.campaigns: dict[str, _Campaign] = {}
        self.ready = False
        self.ended = False
        self.remote_error: str | None = None

    def track(self, label: str, campaign_id: str) -> _Campaign:
        self.campaigns[campaign_id] = _Campaign(label, campaign_id)
        return self.campaigns[campaign_id]

    def wait(self, step: str, condition: Callable[[], _T | None], seconds: float,
             waiting_for: str) -> _T:
        """Show what the daemon logs until ``condition`` holds; DemoFailed after ``seconds``
        (or the demo's deadline), when the daemon exits, or when a campaign goes wrong."""
        left = self.deadline - CLEANUP_RESERVE - time.monotonic()
        limit = max(0.0, min(seconds, left))
        end = time.monotonic() + limit
        while True:
            self._drain(step, timeout=0.1)
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

    def wait_for(self, step: str, campaign: _Campaign, *milestones: str,
                 seconds: float) -> str:
        """Wait until ``campaign`` reached one of ``milestones``; the one reached."""
        def reached() -> str | None:
            return next((m for m in milestones if m in campaign.reached), None)
        return self.wait(step, reached, seconds,
                         f"{' or '.join(milestones)} (campaign {campaign.campaign_id} is "
                         f"{campaign.state})")

    def _drain(self, step: str, timeout: float) -> None:
        try:
            line = self.daemon.lines.get(timeout=timeout)
            while True:
                if line is None:
                    self.ended = True
                    raise DemoFailed(step, self.daemon.why_exited())
                self._show(line)
                line = self.daemon.lines.get_nowait()
        except queue.Empty:
            pass
        if self.ended:
            raise DemoFailed(step, self.daemon.why_exited())

    def _campaign(self, line: Mapping[str, Any]) -> _Campaign | None:
        campaign_id = line.get("campaign_id")
        if campaign_id is None and isinstance(line.get("remote_name"), str):
            stem = line["remote_name"].removesuffix(".csv")
            campaign_id = next((c for c in self.campaigns if stem.endswith(f"-{c}")), None)
        return self.campaigns.get(campaign_id) if isinstance(campaign_id, str) else None

    def _show(self, line: Mapping[str, Any]) -> None:
        event = line.get("event")
        name = line.get("name") if event == "event" else None
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
            details = self._validation_details(campaign.campaign_id)
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
        elif event == "campaign_state" and line.get("state") == "processing":
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
                                f"{hide_numbers(str(line.get('reason')))}")

    def _show_agent_event(self, name: str, line: Mapping[str, Any]) -> None:
        if name == "optout.received":
            numbers = line.get("numbers")
            shown = ", ".join(hide_numbers(str(n)) for n in numbers) \
                if isinstance(numbers, list) else ""
            self.screen.step("reports", "opt-out", f"{line.get('count')} number(s): {shown}")
        elif name == "reply.received":
            self.screen.step("reports", "reply", f"{line.get('count')} SMS-MO reply(ies), "
                                                 f"{line.get('opt_outs', 0)} of them opt-out")
        elif name == "remote.unreachable":
            self.remote_error = hide_numbers(str(line.get("reason")))
            self.screen.step("remote", "unreachable", self.remote_error)
        else:
            self.remote_error = None
            self.screen.step("remote", "recovered")

    def _validation_details(self, campaign_id: str) -> str:
        """Invalid rows by rule and transliterated characters, from the journal (read-only)."""
        summary: dict[str, Any] = {}
        with contextlib.suppress(sqlite3.Error), _read_store(self.state_db) as store:
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


@contextlib.contextmanager
def _read_store(path: Path) -> Iterator[Store]:
    """The agent's journal, read-only (beside the running daemon, as ``status`` does)."""
    from ..store.journal import Store  # noqa: PLC0415

    store = Store(path, readonly=True)
    try:
        yield store
    finally:
        store.close()


def _suppressed(state_db: Path) -> set[str]:
    try:
        with _read_store(state_db) as store:
            return store.suppressed()
    except sqlite3.Error:  # a journal being written: read again shortly
        return set()


def _stop_numbers(report_dir: Path) -> set[str]:
    """The numbers in the provider's STOP files (complete lines), as the simulator wrote them."""
    numbers = set()
    for path in report_dir.glob("STOP-*.csv"):
        for line in path.read_bytes().decode("utf-8").split("\r\n")[:-1]:
            if line.strip():
                numbers.add(line.split(";", 1)[0].strip())
    return numbers


def _reports_read(report_dir: Path, state_db: Path) -> bool:
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


# --- the demo -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _simulator_logs(path: Path) -> Iterator[None]:
    """The simulator's log lines into ``path`` (not on the screen), for the demo's duration."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    saved = structlog.get_config()
    asyncssh_logger = logging.getLogger("asyncssh")
    saved_propagate = asyncssh_logger.propagate
    with path.open("a", encoding="utf-8") as file:
        handler = logging.StreamHandler(file)
        structlog.configure(
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso"),
                        structlog.processors.JSONRenderer(ensure_ascii=False)],
            logger_factory=structlog.WriteLoggerFactory(file),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
        asyncssh_logger.addHandler(handler)
        asyncssh_logger.propagate = False
        try:
            yield
        finally:
            asyncssh_logger.removeHandler(handler)
            asyncssh_logger.propagate = saved_propagate
            structlog.configure(**saved)


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f'service_id = "{SERVICE_ID}"', 'timezone = "Europe/Paris"']
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}"
                  for key, value in values.items()]
    return "\n".join(lines) + "\n"


def simulator_options() -> SimulatorOptions:
    """The simulated provider, fast: a file stays ``.lock`` 2 s (the agent, polling every
    0.5 s, sees it), the ACK comes 1.5 s after ``.done``, opt-outs and replies in 2 steps 2 s
    apart. On the 36 valid rows of the sample: 2 failed, 2 STOP, 2 replies (each may be an
    opt-out word), whatever the run."""
    from ..simulator import SimulatorOptions  # noqa: PLC0415

    return SimulatorOptions(
        service_id=SERVICE_ID, seed=2026, lock_seconds=2.0, ack_delay=1.5,
        ack_failure_share=0.05, stop_share=0.06, mo_share=0.06, report_steps=2,
        report_interval=2.0, rewrite_step=0)


def demo_config(folder: Path, port: int,
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The agent's configuration for the demo: the simulator, fast timings, any day, any hour."""
    sections: dict[str, dict[str, Any]] = {
        "remote": {
            "host": "127.0.0.1", "port": port, "username": USERNAME,
            "private_key": str(folder / "keys" / "id_ed25519"),
            "known_hosts": str(folder / "keys" / "known_hosts"),
            "poll_seconds": POLL_SECONDS, "connect_timeout_seconds": 5,
            "operation_timeout_seconds": 10, "keepalive_seconds": 5,
            "retry_base_seconds": 0.5, "retry_ceiling_seconds": 2,
            "permanent_retry_seconds": 5,
        },
        "paths": {"root": str(folder / "agent")},
        "campaign": {
            "default_sender": SENDER, "marketing": False, "stable_seconds": 0.2,
            "max_invalid_percent": 10.0,
        },
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    return _toml(sections)


def _run_cli(step: str, folder: Path, *args: str, timeout: float) -> str:
    """``sftpd-agent ARGS`` in a child process, in ``folder``; its standard output."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sftpd_agent", *args], cwd=folder, env=clean_environment(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False)
    except subprocess.TimeoutExpired:
        raise DemoFailed(step, f"sftpd-agent {args[0]} took more than {timeout:.0f} s") from None
    if done.returncode not in (0, 1):
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DemoFailed(step, f"sftpd-agent {args[0]} exited {done.returncode}: "
                               f"{hide_numbers(last)}")
    return done.stdout


def run_demo(*, keep: bool = False, out: TextIO | None = None,
             deadline_seconds: float = DEADLINE_SECONDS,
             config_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """The demo, start to finish: 0 when every step happened, 1 when one did not, 130 when
    interrupted. ``config_overrides`` (tests only) change keys of the agent's configuration."""
    screen = _Screen(out if out is not None else sys.stdout)
    folder = Path(tempfile.mkdtemp(prefix="sftpd-agent-demo-"))
    restore_sigterm = _sigterm_interrupts()
    deadline = time.monotonic() + deadline_seconds
    code = 1
    try:
        with _simulator_logs(folder / "simulator.log"):
            code = _Demo(folder, screen, deadline, config_overrides).run()
    except KeyboardInterrupt:
        screen.say("demo interrupted: stopped the agent and the simulator")
        code = 130
    finally:
        restore_sigterm()
        if keep:
            screen.say(f"kept {folder} (agent.toml, agent.log, simulator.log, agent/, "
                       "provider/, samples/)")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return code


def _sigterm_interrupts() -> Callable[[], None]:
    """SIGTERM stops the demo like Ctrl-C does (main thread only); the undo function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


class _Demo:
    def __init__(self, folder: Path, screen: _Screen, deadline: float,
                 overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
        self.folder = folder
        self.screen = screen
        self.deadline = deadline
        self.overrides = overrides
        self.config = folder / "agent.toml"
        self.state_db = folder / "agent" / "state.db"
        self.daemon = _Daemon(self.config, folder / "agent.log")
        self.follow = _Follower(screen, self.daemon, self.state_db, deadline)

    def run(self) -> int:
        from ..simulator import SimulatorThread  # noqa: PLC0415

        say = self.screen.say
        say("sftpd-agent demo: two SMS campaigns against the embedded provider simulator "
            "(127.0.0.1 only, no account)")
        say(f"  folder      {self.folder}")
        simulator: SimulatorThread | None = None
        try:
            authorized_keys, host_key = self._keys()
            simulator = SimulatorThread(
                self.folder / "provider", authorized_keys=authorized_keys, host_key=host_key,
                options=simulator_options(), interval=0.1)
            self._start_simulator(simulator)
            self._start_agent()
            numbers = self._first_campaign(simulator)
            self._second_campaign(numbers)
            self._status()
            self._stop_agent()
        except DemoFailed as failure:
            say(f'demo failed at step "{failure.step}": {failure}')
            return 1
        finally:
            self.daemon.stop(timeout=10)
            if simulator is not None:
                with contextlib.suppress(Exception):
                    simulator.stop(timeout=5)
        elapsed = time.monotonic() - self.screen.started
        say(f"demo complete in {elapsed:.0f} s: every step happened; agent and simulator "
            "stopped")
        return 0

    # -- setting up ------------------------------------------------------------------------

    def _keys(self) -> tuple[Path, Path]:
        step = "create keys"
        import asyncssh  # noqa: PLC0415

        keys = self.folder / "keys"
        try:
            keys.mkdir(mode=0o700)
            client = asyncssh.generate_private_key("ssh-ed25519")
            _write_private(keys / "id_ed25519", client.export_private_key("openssh"))
            public = client.export_public_key("openssh").decode().strip()
            (keys / "id_ed25519.pub").write_text(public + "\n", encoding="utf-8")
            (keys / "authorized_keys").write_text(public + "\n", encoding="utf-8")
            host = asyncssh.generate_private_key("ssh-ed25519")
            _write_private(keys / "ssh_host_ed25519_key", host.export_private_key("openssh"))
        except (OSError, asyncssh.Error) as exc:
            raise DemoFailed(step, str(exc)) from exc
        return keys / "authorized_keys", keys / "ssh_host_ed25519_key"

    def _start_simulator(self, simulator: Any) -> None:
        step = "start the simulator"
        try:
            simulator.start(timeout=10)
            line = simulator.simulator.known_hosts_line()
            (self.folder / "keys" / "known_hosts").write_text(line + "\n", encoding="utf-8")
        except Exception as exc:  # whatever it is, it is this step's failure
            raise DemoFailed(step, f"{type(exc).__name__}: {exc}") from exc
        self.screen.say("  keys        client ed25519 key (0600), host key, known_hosts "
                        f"[127.0.0.1]:{simulator.port}")
        self.screen.say(f"  simulator   SFTP on 127.0.0.1:{simulator.port}, host key "
                        f"{simulator.host_key_fingerprint}")
        self.port: int = simulator.port

    def _start_agent(self) -> None:
        step = "start the agent"
        self.config.write_text(demo_config(self.folder, self.port, self.overrides),
                               encoding="utf-8")
        try:
            self.daemon.start()
        except OSError as exc:
            raise DemoFailed(step, str(exc)) from exc
        self.follow.wait(step, lambda: self.follow.ready, 15, "agent_ready line")
        self.screen.say(f"  agent       sftpd-agent run (pid {self.daemon.pid}), polling the "
                        f"provider every {POLL_SECONDS:g} s (demo timing)")
        self.screen.say("  marketing hours off for the demo; the real agent waits for "
                        "Mon-Sat 08:00-21:30")
        self.screen.say("  max_invalid_percent 10 for the demo (default 5: the sample's 3 "
                        "invalid rows in 40 would hold it)")

    def _submit(self, step: str, name: str, text: str) -> None:
        samples = self.folder / "samples"
        samples.mkdir(exist_ok=True)
        (samples / name).write_text(text, encoding="utf-8", newline="")
        output = _run_cli(step, self.folder, "submit", f"samples/{name}", "--config",
                          str(self.config), timeout=self._left(20))
        placed = output.strip().rsplit("/", 1)[-1]
        self.screen.say(f"  $ sftpd-agent submit samples/{name}  ->  outbox/{placed}")

    def _left(self, seconds: float) -> float:
        return max(1.0, min(seconds, self.deadline - CLEANUP_RESERVE - time.monotonic()))

    # -- the campaigns -------------------------------------------------------------------------

    def _published(self, label: str, file: str, text: str) -> _Campaign:
        """Submit ``file`` and follow its campaign until it is published."""
        campaign = self.follow.track(label, campaign_id_from_stem(Path(file).stem))
        self._submit(f"{label}: submit", file, text)
        self.follow.wait_for(f"{label}: received", campaign, "received", seconds=10)
        self.follow.wait_for(f"{label}: validated", campaign, "validated", seconds=10)
        self.follow.wait_for(f"{label}: published", campaign, "published", seconds=15)
        return campaign

    def _reported(self, label: str, campaign: _Campaign) -> None:
        """Follow a published campaign until its ACK is ingested."""
        self.follow.wait_for(f"{label}: processing", campaign, "processing", "done",
                             seconds=10)
        self.follow.wait_for(f"{label}: done", campaign, "done", seconds=10)
        self.follow.wait_for(f"{label}: ACK ingested", campaign, "reported", seconds=15)

    def _first_campaign(self, simulator: Any) -> list[str]:
        label = "campaign 1"
        text, numbers = sample_campaign()
        self.screen.say()
        self.screen.say(f"{label}: 40 rows with 3 invalid, 1 duplicate, accented text to "
                        "transliterate")
        self._reported(label, self._published(label, "spring-sale.csv", text))
        step = f"{label}: opt-outs"
        # Until the simulator has written every STOP and SMS-MO line of the campaign ...
        self.follow.wait(step, lambda: simulator.processor.next_due() is None, 15,
                         "end of the provider's reports")
        reports = self.folder / "provider" / "Report"
        stops = _stop_numbers(reports)
        if not stops:
            raise DemoFailed(step, "the provider simulator wrote no STOP")
        # ... and the agent has read them to their last line.
        self.follow.wait(step, lambda: _reports_read(reports, self.state_db), 10,
                         "reading of every STOP and SMS-MO line")
        self.follow.pause(step, 2 * POLL_SECONDS)  # for the agent's last opt-out events
        suppressed = _suppressed(self.state_db)
        if not stops <= suppressed:
            raise DemoFailed(step, f"{len(stops - suppressed)} STOP number(s) are not on the "
                                   "suppression list")
        self.screen.step(label, "opt-outs", f"{len(suppressed)} number(s) now on the "
                                            "suppression list: " + ", ".join(sorted(suppressed)))
        self.opted_out = suppressed
        return numbers

    def _second_campaign(self, numbers: list[str]) -> None:
        label = "campaign 2"
        self.screen.say()
        self.screen.say(f"{label}: the same {len(numbers)} recipients; the opted-out ones "
                        "must be removed")
        campaign = self._published(label, "last-day.csv", second_campaign(numbers))
        left_out = sorted(self.opted_out & set(numbers))
        if campaign.suppressed != len(left_out):
            raise DemoFailed(f"{label}: suppressed",
                             f"suppressed {campaign.suppressed}, expected {len(left_out)}")
        self.screen.step(label, "suppressed", f"{len(left_out)} opted-out number(s) left out: "
                                              + ", ".join(left_out))
        self._reported(label, campaign)

    def _status(self) -> None:
        from ..commands.status import render  # noqa: PLC0415

        step = "final status"
        self.screen.say()
        self.screen.say("$ sftpd-agent status")
        output = _run_cli(step, self.folder, "status", "--json", "--config", str(self.config),
                          timeout=self._left(20))
        try:
            report = json.loads(output)
        except json.JSONDecodeError as exc:
            raise DemoFailed(step, f"status --json printed no JSON: {exc}") from exc
        self.screen.say(render(report))
        states = {c["campaign_id"]: c["state"] for c in report["campaigns"]}
        for campaign in self.follow.campaigns.values():
            if states.get(campaign.campaign_id) != "reported":
                raise DemoFailed(step, f"campaign {campaign.campaign_id} is "
                                       f"{states.get(campaign.campaign_id)}, not reported")
        if not report["agent"]["healthy"]:
            raise DemoFailed(step, "the agent is unhealthy: "
                                   + "; ".join(report["agent"]["problems"]))

    def _stop_agent(self) -> None:
        step = "stop the agent"
        self.screen.say()
        code = self.daemon.stop(timeout=self._left(15))
        if code != 0:
            raise DemoFailed(step, f"SIGTERM: the agent exited with {code}, expected 0")
        self.screen.say(f"  SIGTERM     the agent stopped cleanly (exit {code})")


# --- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (keys, config, logs, journal) and "
                             "print its path")


def run(args: argparse.Namespace) -> int:
    """``sftpd-agent demo``: 0 when every step happened, 1 when one failed (named)."""
    return run_demo(keep=bool(args.keep), out=sys.stdout)


__all__ = ["DemoFailed", "add_arguments", "demo_config", "run", "run_demo", "sample_campaign",
           "second_campaign"]
