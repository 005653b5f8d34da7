"""``sftpd-agent check FILE...``: validate campaign files offline, as ``run`` would."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode
from ..pipeline import manifests
from ..pipeline.intake import Intake, take_in
from ..rules.contacts import looks_like_contacts
from ..rules.manifest import Manifest, is_manifest_name
from ..rules.plan import describe
from .submit import message_template, send_time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="a campaign CSV file, a manifest <name>.campaign.toml, or a "
                             "contact export with --message-file")
    parser.add_argument("--message-file", metavar="T.txt",
                        help="the message template ({Column}, {Column|default}) for FILE, a "
                             "contact export: a preview of what a manifest would send")
    parser.add_argument("--sender", metavar="OADC", help="with --message-file: the sender")
    parser.add_argument("--at", metavar="YYYY-MM-DD HH:MM",
                        help="with --message-file: the send time (default: now)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("--errors", metavar="PATH",
                        help="write the rejected rows (line;code;field;value;detail) to PATH "
                             "(a directory: <dir>/<file>.errors.csv for each file)")


def run(args: argparse.Namespace) -> int:
    return check(args, sys.stdout)


def check(args: argparse.Namespace, out: TextIO) -> ExitCode:
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
    template = _template(args)
    suppressed = _suppression_list(settings)
    worst = ExitCode.OK
    for name in args.files:
        path = Path(name)
        errors_path = None
        if args.errors:
            errors_path = (errors_dir / f"{path.name}.errors.csv") if errors_dir else Path(
                args.errors)
        if template is not None or is_manifest_name(path.name):
            held = _check_manifest(path, template, args, settings, out, now=now,
                                   errors_path=errors_path, suppressed=suppressed)
            worst = ExitCode.NOT_OK if held else worst
            continue
        result = take_in(path, settings, now=now, errors_to=errors_path,
                         progress=sys.stderr if sys.stderr.isatty() else None,
                         suppressed=suppressed)
        if args.json:
            print(json.dumps(result.as_dict(), ensure_ascii=False), file=out)
        else:
            text = render_check(result, settings)
            if result.hold_reason and looks_like_contacts(path):
                text += ("\n  hint            this looks like a contact export: check it with "
                         "--message-file T.txt, or drop it with a manifest")
            print(text, file=out)
        if result.hold_reason:
            worst = ExitCode.NOT_OK
    return worst


def _template(args: argparse.Namespace) -> str | None:
    """The template of ``--message-file`` (UTF-8, a final line end dropped), or None."""
    if not args.message_file:
        if args.sender or args.at:
            raise ConfigError("--sender and --at go with --message-file")
        return None
    return message_template(args.message_file)


def _check_manifest(
    path: Path, template: str | None, args: argparse.Namespace, settings: Settings,
    out: TextIO, *, now: datetime.datetime, errors_path: Path | None,
    suppressed: set[str] | None,
) -> bool:
    """Check a manifest, or a contact export with ``template``: the usual summary, then the
    preview. Whether it would be held."""
    try:
        if template is None:
            described = manifests.read(path, None, settings)
        else:
            manifest = Manifest(contacts=path.name, message=template, sender=args.sender,
                                send_at=send_time(args.at))
            described = manifests.describe(manifest, path, path, settings)
    except (manifests.ManifestHeld, ValidationError) as exc:
        reason = str(exc) if not isinstance(exc, ValidationError) else \
            exc.errors()[0]["msg"]
        if args.json:
            print(json.dumps({"file": str(path), "held": True, "hold_reason": reason},
                             ensure_ascii=False), file=out)
        else:
            print(f"{path}: HELD: {reason}", file=out)
        return True
    with tempfile.TemporaryDirectory(prefix="sftpd-agent-check-") as work:
        result, rendering = manifests.take_in_manifest(
            described, Path(work), now=now, errors_to=errors_path, suppressed=suppressed,
            progress=sys.stderr if sys.stderr.isatty() else None)
        preview = manifests.preview(described, result, rendering)
    if args.json:
        print(json.dumps({**result.as_dict(), "preview": preview}, ensure_ascii=False),
              file=out)
    else:
        print(render_check(result, described.settings, manifest=True) + "\n"
              + render_preview(preview), file=out)
    return result.hold_reason is not None


def render_preview(preview: dict[str, Any]) -> str:
    """``check``'s preview of a campaign rendered from contacts, for people."""
    lines = ["  preview         (numbers masked)"]
    for row in preview["first"]:
        lines.append(f"    line {row['line']:<6} {row['number']:<15} {row['sms']} SMS  "
                     f"{row['text']!r}")
    per_row = preview["sms_per_row"]
    if per_row:
        lines.append("  SMS per row     " + ", ".join(
            f"{n} SMS: {rows} row{'s' if rows != 1 else ''}" for n, rows in per_row.items()))
    lines.append(f"  SMS in all      {preview['sms_total']}")
    longest = preview.get("longest")
    if longest:
        made = ", ".join(f"{{{p['placeholder']}}} {p['characters']} characters"
                         for p in longest["placeholders"])
        lines.append(f"  longest         line {longest['line']}: {longest['characters']} "
                     f"characters, {longest['sms']} SMS" + (f" ({made})" if made else ""))
    return "\n".join(lines)


def _suppression_list(settings: Settings) -> set[str] | None:
    """The agent's suppression list when its journal is here (read-only), else None."""
    from ..store.journal import Store  # noqa: PLC0415

    if not settings.paths.state_db.exists():
        return None
    store = Store(settings.paths.state_db, readonly=True)
    try:
        return store.suppressed()
    finally:
        store.close()


def render_check(result: Intake, settings: Settings, *, manifest: bool = False) -> str:
    """The human summary of one checked file (``manifest``: the time is the manifest's
    ``send_at``, not read from a file name)."""
    s, p = result.summary, result.plan
    verdict = f"HELD: {result.hold_reason}" if result.hold_reason else "OK"
    lines = [f"{result.path}: {verdict}"]

    def row(label: str, value: object) -> None:
        lines.append(f"  {label:<15} {value}")

    # How the name was read, for every file: what it asks for and what was made of it.
    if manifest:
        row("manifest", "send_at given" if p.provider_like else "no send_at: send now")
    else:
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
    if result.foreign:
        dropped = " (dropped: foreign = drop)" if result.foreign_dropped else (
            " (sent at the campaign's time: their hours are not known)")
        row("foreign", f"{result.foreign}{dropped}")
    if len(result.groups) > 1:  # recipients' own hours: one file per send time
        for group in result.groups:
            local = ", ".join(f"{code} {when:%Y-%m-%d %H:%M}" for code, when in group.local
                              if code not in ("FR", "foreign"))
            row("group", f"{'+'.join(group.zones)}: {group.rows} rows at "
                f"{describe(group.send_at, settings.tz)}" + (f" (local: {local})" if local else ""))
            for name in group.names:
                row("  provider file", name)
        return "\n".join(lines)
    names = [n for g in result.groups for n in g.names] if result.groups else p.names
    for name in names:
        row("provider file", name)
    return "\n".join(lines)
