"""The ``sftpd-agent`` command line: parse, call, print. Exit 0 OK, 1 not OK, 2 usage/config."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import __version__, lists
from .config import Settings, load_settings
from .errors import ConfigError
from .pipeline.intake import Intake, take_in
from .rules.gsm import Counted, Policy, count

EXIT_OK, EXIT_NOT_OK, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line, never a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sftpd-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", metavar="PATH", help="configuration file "
                         "(default: $SFTPD_AGENT_CONFIG, else /etc/sftpd-agent/agent.toml)")
        return sub

    check = command("check", "validate campaign files offline, exactly as the daemon would")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="one JSON object per file")
    check.add_argument("--errors", metavar="PATH",
                       help="write the rejected rows (line;code;field;value;detail) to PATH "
                            "(a directory: <dir>/<file>.errors.csv for each file)")

    counter = command("count", "count characters, encoding and SMS segments of a message")
    counter.add_argument("text", nargs="?", metavar="TEXT",
                         help="the message; without it, one message per line from stdin")
    counter.add_argument("--json", action="store_true")
    counter.add_argument("--policy", choices=[p.value for p in Policy],
                         help="non_gsm policy (default: the configuration's, else transliterate)")

    command("run", "the daemon, in the foreground (systemd Type=notify)")

    status = command("status", "agent health and every campaign with its state and figures")
    status.add_argument("--json", action="store_true")

    submit = command("submit", "place FILE in the outbox under the provider's file name")
    submit.add_argument("file", metavar="FILE")
    submit.add_argument("--campaign", metavar="ID", help="campaign id (default: from FILE)")
    submit.add_argument("--at", metavar="YYYY-MM-DD HH:MM",
                        help="send time in the configured time zone (default: now)")

    suppress = command("suppress", "the local suppression list (opted-out numbers)")
    actions = suppress.add_subparsers(dest="action", required=True, parser_class=_Parser)
    lists.add_arguments(actions)
    for action in actions.choices.values():
        action.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)

    replies = command("replies", "received SMS-MO replies")
    replies.add_argument("--json", action="store_true")
    replies.add_argument("--campaign", metavar="ID", help="only this campaign's replies")

    alert = command("alert", "e-mail that systemd gave up restarting the agent's unit "
                    "(run by the unit's OnFailure=)")
    alert.description = (
        "E-mail [notify.email]'s recipients that systemd stopped restarting UNIT, with the "
        "last lines of its journal when they can be read. Run by sftpd-agent-alert@.service "
        "(the agent unit's OnFailure=); sent at once, outside the agent's queue. Exit 0: "
        "sent; 1: sending failed (the error on stderr); 2: configuration error, including "
        "no [notify.email] with recipients (nothing to send: one line on stderr).")
    alert.add_argument("--unit", required=True, metavar="NAME",
                       help="the unit that failed, e.g. sftpd-agent.service (%%i in the "
                            "template)")

    from .remote import trust  # noqa: PLC0415  (asyncssh only when needed)

    trust.add_arguments(command(
        "trust-host", "fetch the server's host key, show its fingerprint, add it to known_hosts"))

    from .simulator import command as simulate  # noqa: PLC0415  (asyncssh only when needed)

    simulate.add_arguments(commands.add_parser(
        "simulate", help="the provider simulator: an SFTP server processing Send/ like MTarget",
        description="the provider simulator: an SFTP server processing Send/ like MTarget",
    ))
    from .demo import orchestrator as demo  # noqa: PLC0415

    demo.add_arguments(commands.add_parser(
        "demo", help="two sample campaigns' whole life against the embedded simulator",
        description="two sample campaigns' whole life against the embedded simulator "
                    "(temporary folder, 127.0.0.1 only, no account)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args, sys.stdout)
        if args.command == "count":
            return _count(args, sys.stdin, sys.stdout)
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status(args, sys.stdout)
        if args.command == "submit":
            return _submit(args, sys.stdout)
        if args.command == "suppress":
            return lists.suppress(args, load_settings(args.config), sys.stdout)
        if args.command == "replies":
            return lists.replies(args, load_settings(args.config), sys.stdout)
        if args.command == "alert":
            return _alert(args, sys.stdout)
        if args.command == "trust-host":
            from .remote import trust  # noqa: PLC0415

            return trust.run(args, load_settings(args.config), stdin=sys.stdin,
                             stdout=sys.stdout)
        if args.command == "demo":
            from .demo import orchestrator as demo  # noqa: PLC0415

            return demo.run(args)
        if args.command == "simulate":
            from .simulator import command as simulate  # noqa: PLC0415

            return simulate.run(args)
    except ConfigError as exc:
        print(f"sftpd-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def _run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from .clock import system_clock  # noqa: PLC0415
    from .daemon import Agent  # noqa: PLC0415
    from .logs import configure, get_logger  # noqa: PLC0415
    from .testing import SWITCHES  # noqa: PLC0415

    settings = load_settings(args.config)
    configure()
    ignored = [name for name in SWITCHES if name in os.environ]
    if ignored:
        get_logger("sftpd_agent.cli").warning(
            "test_switches_ignored", switches=ignored,
            detail="honoured only by python -m sftpd_agent.testing run")
    agent = Agent(settings, clock=system_clock, config_path=args.config)
    return asyncio.run(agent.run())


def _status(args: argparse.Namespace, out: TextIO) -> int:
    from .status import render, status  # noqa: PLC0415
    from .store.journal import Store  # noqa: PLC0415

    settings = load_settings(args.config)
    if not settings.paths.state_db.exists():
        raise ConfigError(f"{settings.paths.state_db}: no journal yet (has the agent run?)")
    store = Store(settings.paths.state_db, readonly=True)
    try:
        report = status(store, settings, datetime.datetime.now(datetime.UTC))
    finally:
        store.close()
    if args.json or not out.isatty():
        print(json.dumps(report, ensure_ascii=False), file=out)
    else:
        print(render(report), file=out)
    return EXIT_OK if report["agent"]["healthy"] else EXIT_NOT_OK


def _submit(args: argparse.Namespace, out: TextIO) -> int:
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from .pipeline.intake import timing_from  # noqa: PLC0415
    from .rules.plan import submission_name  # noqa: PLC0415

    settings = load_settings(args.config)
    source = Path(args.file)
    if not source.is_file():
        raise ConfigError(f"{source}: no such file")
    at = None
    if args.at:
        try:
            at = datetime.datetime.strptime(args.at, "%Y-%m-%d %H:%M")
        except ValueError:
            raise ConfigError(f"--at: {args.at!r} is not a time YYYY-MM-DD HH:MM") from None
    try:
        name, notes = submission_name(
            source.name, campaign=args.campaign, at=at,
            now=datetime.datetime.now(datetime.UTC), timing=timing_from(settings))
    except ValueError as exc:
        raise ConfigError(f"submit: {exc}") from None
    outbox = settings.paths.outbox
    if not outbox.is_dir():
        raise ConfigError(f"{outbox}: no outbox (is paths.root right, has the agent run?)")
    target = outbox / name
    if target.exists():
        raise ConfigError(f"{target} is already waiting in the outbox")
    temporary = outbox / f".{name}.{uuid.uuid4().hex}.tmp"
    with source.open("rb") as src, temporary.open("xb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    try:
        os.link(temporary, target)  # fails rather than replace a file dropped meanwhile
    except FileExistsError:
        raise ConfigError(f"{target} is already waiting in the outbox") from None
    finally:
        temporary.unlink()
    for note in notes:  # before the last line, which scripts read for the name
        print(f"note: {note}", file=out)
    print(f"submitted {source} as {target}", file=out)
    return EXIT_OK


def _check(args: argparse.Namespace, out: TextIO) -> int:
    settings = load_settings(args.config, required=False)
    errors_dir: Path | None = None
    if args.errors:
        target = Path(args.errors)
        if target.is_dir():
            errors_dir = target
        elif len(args.files) > 1:
            raise ConfigError("--errors: give a directory when checking several files")
    for name in args.files:
        if not os.path.lexists(name):  # a link, a FIFO...: held below, as run would
            raise ConfigError(f"{name}: no such file")
    now = datetime.datetime.now(datetime.UTC)
    suppressed = _suppression_list(settings)
    worst = EXIT_OK
    for name in args.files:
        path = Path(name)
        errors_path = None
        if args.errors:
            errors_path = (errors_dir / f"{path.name}.errors.csv") if errors_dir else Path(
                args.errors)
        result = take_in(path, settings, now=now, errors_to=errors_path,
                         progress=sys.stderr if sys.stderr.isatty() else None,
                         suppressed=suppressed)
        _print_check(result, settings, out, as_json=args.json)
        if result.hold_reason:
            worst = EXIT_NOT_OK
    return worst


def _suppression_list(settings: Settings) -> set[str] | None:
    """The agent's suppression list when its journal is here (read-only), else None."""
    from .store.journal import Store  # noqa: PLC0415

    if not settings.paths.state_db.exists():
        return None
    store = Store(settings.paths.state_db, readonly=True)
    try:
        return store.suppressed()
    finally:
        store.close()


def _print_check(result: Intake, settings: Settings, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False), file=out)
    else:
        print(render_check(result, settings), file=out)


def render_check(result: Intake, settings: Settings) -> str:
    """The human summary of one checked file."""
    from .rules.plan import describe  # noqa: PLC0415

    s, p = result.summary, result.plan
    verdict = f"HELD: {result.hold_reason}" if result.hold_reason else "OK"
    lines = [f"{result.path}: {verdict}"]

    def row(label: str, value: object) -> None:
        lines.append(f"  {label:<15} {value}")

    # How the name was read, for every file: what it asks for and what was made of it.
    row("name", "read as the provider's (SEND-...)" if p.provider_like
        else "carries no time: send now")
    row("campaign", p.campaign_id or "-")
    if p.requested_at is not None:
        requested = describe(p.requested_at, settings.tz)
        wall = p.requested_wall
        if wall is not None and wall != p.requested_at.replace(tzinfo=None):
            requested = f"{wall:%Y-%m-%d %H:%M} as written, read as {requested}"
        row("requested", requested)
    for note in p.name_notes:
        row("changed", note)
    if p.name_problem and p.name_problem != result.hold_reason:
        row("name problem", p.name_problem)
    if s.unreadable:
        return "\n".join(lines)

    row("encoding", s.encoding + (" (header row skipped)" if s.header else ""))
    row("rows", s.rows)
    row("valid", s.valid)
    by_code = ", ".join(f"{code} {n}" for code, n in s.invalid_by_code.most_common())
    row("invalid", f"{s.invalid}" + (f"  ({by_code})" if by_code else ""))
    for code, examples in s.examples.items():
        for e in examples:
            lines.append(f"      line {e.line:<6} {e.field:<9} {e.value!r}: {code}, {e.detail}")
    row("duplicates", s.duplicates)
    if s.suppressed is not None:
        row("suppressed", f"{s.suppressed}  (on the suppression list: dropped at upload)")
    row("segments", s.segments)
    if s.replaced:
        row("transliterated", ", ".join(f"{k} x{n}" for k, n in s.replaced.most_common(8)))
    when = describe(p.send_at, settings.tz)
    if result.hold_reason:
        when = "not sent: held"
    row("send at", when + (f"  ({p.note})" if p.note else ""))
    for name in p.names:
        row("provider file", name)
    return "\n".join(lines)


def _count(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    if args.policy:
        policy = Policy(args.policy)
    else:
        policy = load_settings(args.config, required=False).campaign.non_gsm
    if args.text is not None:
        texts: Sequence[str] = [args.text]
    else:
        texts = [line.rstrip("\r\n").replace("\\n", "\n") for line in stdin]
    for text in texts:
        counted = count(text, policy)
        if args.json:
            print(json.dumps(_count_dict(counted), ensure_ascii=False), file=out)
        else:
            print(_count_line(counted), file=out)
    return EXIT_OK


def _count_dict(counted: Counted) -> dict[str, object]:
    return {
        "encoding": str(counted.encoding),
        "characters": counted.characters,
        "units": counted.units,
        "segments": counted.segments,
        "non_gsm": list(counted.non_gsm),
        "text": counted.text,
    }


def _count_line(counted: Counted) -> str:
    unit = "septets" if counted.encoding == "gsm7" else "UTF-16 units"
    parts = [
        f"{counted.encoding}: {counted.characters} characters, {counted.units} {unit}, "
        f"{counted.segments} segment{'s' if counted.segments != 1 else ''}"
    ]
    if counted.replaced:
        parts.append("replaced " + ", ".join(f"{a}->{b!r}" for a, b in counted.replaced))
    if counted.unsendable:
        parts.append("cannot be sent: " + " ".join(counted.unsendable))
    elif counted.non_gsm and not counted.replaced:
        parts.append("outside GSM 03.38: " + " ".join(counted.non_gsm))
    return "; ".join(parts)


__all__ = ["build_parser", "main"]


def _alert(args: argparse.Namespace, out: TextIO) -> int:
    """``alert --unit NAME``: e-mail that systemd gave up on NAME (its OnFailure= unit)."""
    import asyncio  # noqa: PLC0415

    from .notify.alert import UNIT_NAME, send_alert  # noqa: PLC0415

    if not UNIT_NAME.fullmatch(args.unit):
        raise ConfigError(f"alert: {args.unit!r} is not a unit name")
    settings = load_settings(args.config)
    email = settings.notify.email
    if email is None or not email.to:
        raise ConfigError("alert: no [notify.email] with recipients (to) in the "
                          "configuration: no one to tell")
    error = asyncio.run(send_alert(settings, args.unit))
    if error is not None:
        print(f"sftpd-agent: alert not sent: {error}", file=sys.stderr)
        return EXIT_NOT_OK
    print(f"alert for {args.unit} sent to {', '.join(email.to)}", file=out)
    return EXIT_OK
