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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..rules.masking import mask_numbers
from ..rules.naming import campaign_id_from_stem
from ..testing import PRODUCTION_ENTRY, DaemonProcess, clean_environment
from .folder import POLL_SECONDS, demo_config, make_keys, simulator_logs, simulator_options
from .follow import (
    CLEANUP_RESERVE,
    Campaign,
    DemoFailed,
    Follower,
    Screen,
    reports_read,
    stop_numbers,
    suppressed,
)
from .samples import sample_campaign, second_campaign

DEADLINE_SECONDS = 60.0


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
                               f"{mask_numbers(last)}")
    return done.stdout


def run_demo(*, keep: bool = False, out: TextIO | None = None,
             deadline_seconds: float = DEADLINE_SECONDS,
             config_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """The demo, start to finish: 0 when every step happened, 1 when one did not, 130 when
    interrupted. ``config_overrides`` (tests only) change keys of the agent's configuration."""
    screen = Screen(out if out is not None else sys.stdout)
    folder = Path(tempfile.mkdtemp(prefix="sftpd-agent-demo-"))
    restore_sigterm = _sigterm_interrupts()
    deadline = time.monotonic() + deadline_seconds
    code = 1
    try:
        with simulator_logs(folder / "simulator.log"):
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
    def __init__(self, folder: Path, screen: Screen, deadline: float,
                 overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
        self.folder = folder
        self.screen = screen
        self.deadline = deadline
        self.overrides = overrides
        self.config = folder / "agent.toml"
        self.state_db = folder / "agent" / "state.db"
        # The production entry, ``sftpd-agent run``: the demo shows the real thing.
        self.daemon = DaemonProcess(self.config, entry=PRODUCTION_ENTRY, log_dir=folder,
                                    log_name="agent.log")
        self.follow = Follower(screen, self.daemon, self.state_db, deadline)

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
        import asyncssh  # noqa: PLC0415

        try:
            return make_keys(self.folder / "keys")
        except (OSError, asyncssh.Error) as exc:
            raise DemoFailed("create keys", str(exc)) from exc

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

    def _published(self, label: str, file: str, text: str) -> Campaign:
        """Submit ``file`` and follow its campaign until it is published."""
        campaign = self.follow.track(label, campaign_id_from_stem(Path(file).stem))
        self._submit(f"{label}: submit", file, text)
        self.follow.wait_for(f"{label}: received", campaign, "received", seconds=10)
        self.follow.wait_for(f"{label}: validated", campaign, "validated", seconds=10)
        self.follow.wait_for(f"{label}: published", campaign, "published", seconds=15)
        return campaign

    def _reported(self, label: str, campaign: Campaign) -> None:
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
        stops = stop_numbers(reports)
        if not stops:
            raise DemoFailed(step, "the provider simulator wrote no STOP")
        # ... and the agent has read them to their last line.
        self.follow.wait(step, lambda: reports_read(reports, self.state_db), 10,
                         "reading of every STOP and SMS-MO line")
        self.follow.pause(step, 2 * POLL_SECONDS)  # for the agent's last opt-out events
        listed = suppressed(self.state_db)
        if not stops <= listed:
            raise DemoFailed(step, f"{len(stops - listed)} STOP number(s) are not on the "
                                   "suppression list")
        self.screen.step(label, "opt-outs", f"{len(listed)} number(s) now on the "
                                            "suppression list: " + ", ".join(sorted(listed)))
        self.opted_out = listed
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


__all__ = ["DEADLINE_SECONDS", "DemoFailed", "add_arguments", "run", "run_demo"]
