"""The ``sftpd-agent`` command line: the one table of its commands, and ``main``.

Each command is one module of this package with two functions: ``add_arguments(parser)``
and ``run(args) -> int``. ``COMMANDS`` names each with its help and what each of its exit
statuses means; nothing else defines them. A module is imported only to build the parser and
run its command; a command that needs asyncssh imports it when it runs. ``main`` parses,
runs, and turns a configuration error into exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from .. import __version__
from ..errors import ConfigError, ExitCode

CONFIG_HELP = ("configuration file (default: $SFTPD_AGENT_CONFIG, else "
               "/etc/sftpd-agent/agent.toml)")
WIDTH = 78
"""Help text is wrapped to this many columns."""

DESCRIPTION = (
    "sftpd-agent uploads the SMS campaign files dropped in its outbox to the provider's SFTP "
    "server, each exactly once, follows each file until the provider has processed it, and "
    "collects the provider's reports: delivery receipts, opt-outs and replies. These commands "
    "run the agent, prepare and check campaign files, and show what happened. Run "
    "'sftpd-agent COMMAND --help' for the details of one command."
)


@dataclass(frozen=True)
class Command:
    """One ``sftpd-agent`` command, as users see it."""

    name: str
    summary: str
    """One line, in the list of ``sftpd-agent --help``."""
    description: str
    """What the command does, at the top of its own ``--help``."""
    exits: Mapping[ExitCode, str]
    """What each exit status means for this command."""
    module: str
    """The module of this package with ``add_arguments`` and ``run``."""
    config: str = CONFIG_HELP
    """The help of ``--config`` for this command, when it uses the file differently."""

    def load(self) -> CommandModule:
        return cast("CommandModule", importlib.import_module(f"{__name__}.{self.module}"))


class CommandModule(Protocol):
    """What a command module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


USAGE_ERROR = "a usage or configuration error (one line on stderr)"

COMMANDS: tuple[Command, ...] = (
    Command(
        "check", "validate campaign files offline, exactly as the daemon would",
        "Validate campaign files offline, with the same code the daemon runs, and print for "
        "each file: how its name was read, its rows, the invalid rows by rule with examples "
        "(line, field, value), duplicates, SMS segments, the send time and the provider file "
        "name(s) it would get. No network is used. Without a configuration file the defaults "
        "apply; when the agent's journal is there, it also says how many rows the suppression "
        "list would drop.",
        {ExitCode.OK: "every file would be accepted",
         ExitCode.NOT_OK: "at least one file would be held",
         ExitCode.USAGE: "a file that does not exist, or " + USAGE_ERROR},
        "check"),
    Command(
        "count", "count characters, encoding and SMS segments of a message",
        "The provider's character counting tool: for TEXT, or for each line of standard input "
        "(a line break inside a message written as \\n), the encoding (gsm7 or ucs2), the "
        "characters, the units (septets or UTF-16 units), the SMS segments and the characters "
        "outside GSM 03.38. It follows the configured campaign.non_gsm policy (without a "
        "configuration file: transliterate); --policy overrides it.",
        {ExitCode.OK: "counted", ExitCode.USAGE: USAGE_ERROR},
        "count"),
    Command(
        "run", "the daemon, in the foreground (systemd Type=notify)",
        "Run the agent in the foreground: take campaign files from the outbox, validate and "
        "schedule them, upload each to the provider exactly once, follow it to its outcome, "
        "collect the provider's reports and send notifications. SIGTERM or SIGINT stops it "
        "cleanly; SIGHUP reloads the configuration. Under systemd (Type=notify) it reports "
        "when it is ready and keeps the watchdog fed while it makes progress.",
        {ExitCode.OK: "stopped cleanly (SIGTERM or SIGINT)",
         ExitCode.NOT_OK: "one of its loops ended on its own (systemd restarts it)",
         ExitCode.USAGE: USAGE_ERROR},
        "run"),
    Command(
        "status", "agent health and every campaign with its state and figures",
        "Show whether the agent is healthy (a fresh heartbeat, a recent successful poll of the "
        "provider, no standing remote error), what it left for a person, and every campaign "
        "with its state and figures: as JSON with --json or when the output is not a "
        "terminal, else as a table. It reads the journal (state.db), beside a running agent.",
        {ExitCode.OK: "the agent is healthy",
         ExitCode.NOT_OK: "the agent is not healthy (the problems are listed)",
         ExitCode.USAGE: "no journal yet (the agent has never run), or " + USAGE_ERROR},
        "status"),
    Command(
        "submit", "place a file in the outbox under the provider's file name",
        "Copy FILE into the outbox under the provider's file name "
        "SEND-<service_id>-YYYYMMDD-HHMM-<campaign>.csv: the campaign from --campaign, else "
        "from the file name; the time from --at (in the configured time zone), else from a "
        "file name written the provider's way, else now. The time follows the same rules as a "
        "dropped file (a time in the spring gap moves after it; a stale one is refused). The "
        "copy is atomic: the agent never sees half of it, and a file already waiting under "
        "that name is never replaced. The last line printed names the file placed.",
        {ExitCode.OK: "the file is in the outbox",
         ExitCode.USAGE: "no such file, a time or campaign id that cannot be used, no outbox, "
                         "a file already waiting under that name, or " + USAGE_ERROR},
        "submit"),
    Command(
        "suppress", "the local suppression list: list, add, remove, import, export",
        "The local suppression list: the numbers that opted out. Every campaign is checked "
        "against it at upload time; STOP reports and stop-word replies add to it; it is never "
        "purged. Numbers are normalised to E.164 exactly as campaign rows are. These commands "
        "work beside a running agent.",
        {ExitCode.OK: "done",
         ExitCode.NOT_OK: "some numbers or lines could not be read (each named on stderr), or "
                          "an import stopped by a busy journal (importing again adds the rest)",
         ExitCode.USAGE: USAGE_ERROR},
        "suppress"),
    Command(
        "replies", "the SMS-MO replies received",
        "List the SMS-MO replies received from recipients: local time, number, campaign, text, "
        "and [opt-out] when the text is a stop keyword. --json prints one JSON array.",
        {ExitCode.OK: "listed",
         ExitCode.USAGE: "no journal yet (the agent has never run), or " + USAGE_ERROR},
        "replies"),
    Command(
        "results", "a campaign's outcome per contact row, as a CSV file for the CRM",
        "Write one row per contact row of CAMPAIGN, in the contact file's order: the CRM id, "
        "the number (E.164), the outcome (sent, failed, pending, opted_out, invalid, "
        "duplicate, suppressed, or not_sent with the reason), the provider's status code and "
        "status, the ACK time, the opt-out time, the contact file's line and a detail. UTF-8 "
        "and ';' unless --encoding or --delimiter; --excel for a French Excel (UTF-8 with "
        "BOM, formulas guarded, numbers shown as text). Several campaigns with the same id: "
        "the newest, unless --pk. It reads the journal beside a running agent.",
        {ExitCode.OK: "written",
         ExitCode.NOT_OK: "the campaign's files are gone (archive purged), a value the "
                          "encoding cannot hold, or the output cannot be written",
         ExitCode.USAGE: "no such campaign, no journal yet, or " + USAGE_ERROR},
        "results"),
    Command(
        "alert", "e-mail that systemd gave up restarting the agent (OnFailure=)",
        "E-mail the recipients of [notify.email] that systemd stopped restarting UNIT, with "
        "what systemd says of the failure and the last lines of the unit's journal when they "
        "can be read. Run by sftpd-agent-alert@.service (the agent unit's OnFailure=); the "
        "mail is sent at once, outside the agent's queue.",
        {ExitCode.OK: "sent",
         ExitCode.NOT_OK: "sending failed (the error on stderr)",
         ExitCode.USAGE: "no [notify.email] with recipients (no one to tell), a bad unit "
                         "name, or " + USAGE_ERROR},
        "alert"),
    Command(
        "trust-host", "fetch the server's host key, show its fingerprint, add it to known_hosts",
        "Connect to remote.host without logging in, print the SHA256 fingerprint of the host "
        "key the server presents and, once you confirm it (--yes for scripts), append the key "
        "to remote.known_hosts. Compare the fingerprint with the one the provider gives you. "
        "A different key already recorded for the host is never replaced.",
        {ExitCode.OK: "the key is trusted (now or already)",
         ExitCode.NOT_OK: "not trusted: declined, the server unreachable, a different key "
                          "already recorded, or known_hosts not writable",
         ExitCode.USAGE: USAGE_ERROR},
        "trust_host"),
    Command(
        "demo", "two sample campaigns' whole life against the embedded simulator",
        "Start the embedded provider simulator and the agent against it, in a temporary folder "
        "(127.0.0.1 only, no account needed), submit two sample campaigns and show their whole "
        "life, one line per step. Everything is stopped and the folder removed at the end, "
        "unless --keep.",
        {ExitCode.OK: "every step happened",
         ExitCode.NOT_OK: "a step failed (named)",
         ExitCode.INTERRUPTED: "interrupted (Ctrl-C)"},
        "demo",
        config="accepted and ignored: the demo writes its own configuration in its folder"),
    Command(
        "simulate", "the provider simulator: an SFTP server that processes Send/",
        "The provider on this machine, for trying the agent without an account: serve DIR over "
        "SFTP (key-only login) and process DIR/Send/ as the provider does (.csv -> .lock -> "
        ".done or .reject), then write ACK, STOP and SMS-MO reports in DIR/Report/. With "
        "--no-server only the processing runs, over a folder another SFTP server exposes. It "
        "runs until SIGINT or SIGTERM.",
        {ExitCode.OK: "stopped by SIGINT or SIGTERM", ExitCode.USAGE: USAGE_ERROR},
        "simulate",
        config="an agent configuration file: its service_id is the one the file names must "
               "carry, unless --service-id is given (without --config: 12345); nothing else "
               "is read from it. $SFTPD_AGENT_CONFIG is not read"),
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line, never a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"{self.prog}: {message}\n")


def _wrap(text: str) -> str:
    return textwrap.fill(text, WIDTH, break_on_hyphens=False)


def exits_text(exits: Mapping[ExitCode, str]) -> str:
    """The ``exit status`` part of a command's help."""
    lines = ["exit status:"]
    for code, meaning in exits.items():
        lines.append(textwrap.fill(meaning, WIDTH, initial_indent=f"  {int(code):<3} ",
                                   subsequent_indent=" " * 6, break_on_hyphens=False))
    return "\n".join(lines)


def commands_text() -> str:
    """The list of commands in ``sftpd-agent --help``, from the table."""
    width = max(len(command.name) for command in COMMANDS) + 4
    lines = ["commands:"]
    for command in COMMANDS:
        lines.append(textwrap.fill(command.summary, WIDTH,
                                   initial_indent=f"  {command.name:<{width - 2}}",
                                   subsequent_indent=" " * width, break_on_hyphens=False))
    return "\n".join(lines)


GENERAL_EXITS = {
    ExitCode.OK: "success",
    ExitCode.NOT_OK: "the thing checked is not OK (a file that would be held, an unhealthy "
                     "agent, a failed step)",
    ExitCode.USAGE: "a usage or configuration error, with one line naming the bad key or "
                    "argument",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the arguments of that command alone are added
    (the others' modules, and asyncssh, are then not imported: ``main`` starts faster)."""
    parser = _Parser(
        prog="sftpd-agent", description=_wrap(DESCRIPTION),
        epilog="\n\n".join([
            commands_text(),
            _wrap("Every command takes --config PATH (default: $SFTPD_AGENT_CONFIG, else "
                  "/etc/sftpd-agent/agent.toml)."),
            exits_text(GENERAL_EXITS)]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       help="one of the commands below")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, description=_wrap(command.description),
            epilog=exits_text(command.exits),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--config", metavar="PATH", help=command.config)
        if only is None or only == command.name:
            command.load().add_arguments(sub)
            _sub_actions(sub, command)
    return parser


def _sub_actions(parser: argparse.ArgumentParser, command: Command) -> None:
    """A command's own sub-commands (``suppress list``) take ``--config`` too, and their help
    says the command's exit statuses."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                                 help=command.config)
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
                sub.description = _wrap(sub.description or "")
                sub.epilog = exits_text(command.exits)


def command_named(name: str) -> Command:
    return next(command for command in COMMANDS if command.name == name)


def main(argv: Sequence[str] | None = None) -> int:
    """``sftpd-agent``: parse ``argv``, run the command, its exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    named = next((word for word in words if word in {c.name for c in COMMANDS}), "")
    args = build_parser(only=named).parse_args(words)
    try:
        return command_named(args.command).load().run(args)
    except ConfigError as exc:
        print(f"sftpd-agent: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
