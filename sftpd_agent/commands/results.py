"""``sftpd-agent results CAMPAIGN``: a campaign's outcome per contact row, for the CRM.

Read-only beside a running daemon: the journal (state.db, read-only) and the campaign's
files (spool, archive or ``failed/``). What each column means is
:mod:`sftpd_agent.pipeline.results`'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode
from ..pipeline.results import DELIMITERS, ENCODINGS, ResultsError, write_results
from ..store.journal import Store
from ..store.records import Campaign
from ..store.results import campaigns_named


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", metavar="CAMPAIGN",
                        help="the campaign id, as status shows it")
    parser.add_argument("--pk", type=int, metavar="N",
                        help="the campaign's number, when several have this id (default: "
                             "the newest)")
    parser.add_argument("--output", "-o", metavar="F.csv",
                        help="write the file here, replaced atomically (default: standard "
                             "output)")
    parser.add_argument("--encoding", choices=ENCODINGS, default=None,
                        help="utf-8 (default, no BOM) or cp1252")
    parser.add_argument("--delimiter", choices=DELIMITERS, default=None,
                        help="between fields: ; (default) or ,")
    parser.add_argument("--excel", action="store_true",
                        help="for a French Excel: UTF-8 with BOM, ';', formulas guarded, "
                             "numbers shown as text")


def run(args: argparse.Namespace) -> int:
    return results(args, load_settings(args.config), sys.stdout, sys.stderr)


def results(args: argparse.Namespace, settings: Settings, out: TextIO,
            err: TextIO) -> ExitCode:
    if args.excel and (args.encoding not in (None, "utf-8") or
                       args.delimiter not in (None, ";")):
        raise ConfigError("--excel writes UTF-8 with a BOM and ';': leave out --encoding and "
                          "--delimiter")
    if not settings.paths.state_db.exists():
        raise ConfigError(f"{settings.paths.state_db}: no journal yet (has the agent run?)")
    store = Store(settings.paths.state_db, readonly=True)
    try:
        campaign = _chosen(store, args.campaign, args.pk, err)
        target: Path | BinaryIO = Path(args.output) if args.output else out.buffer
        try:
            figures = write_results(store, settings, campaign, target, excel=args.excel,
                                    encoding=args.encoding or "utf-8",
                                    delimiter=args.delimiter or ";")
        except ResultsError as exc:
            print(f"sftpd-agent results: {exc}", file=err)
            return ExitCode.NOT_OK
        except OSError as exc:
            print(f"sftpd-agent results: {exc.filename or args.output}: "
                  f"{exc.strerror or exc}", file=err)
            return ExitCode.NOT_OK
    finally:
        store.close()
    where = f"{args.output}: " if args.output else ""
    print(f"{where}campaign {campaign.campaign_id} (number {campaign.id}, {campaign.state}): "
          f"{figures.line()}", file=out if args.output else err)
    return ExitCode.OK


def _chosen(store: Store, campaign_id: str, pk: int | None, err: TextIO) -> Campaign:
    """The campaign asked for: by its number, else the newest of its id; an unknown one is
    a usage error (one line)."""
    if pk is not None:
        try:
            campaign = store.campaign(pk)
        except KeyError:
            raise ConfigError(f"no campaign number {pk}") from None
        if campaign.campaign_id != campaign_id:
            raise ConfigError(f"campaign number {pk} is {campaign.campaign_id!r}, not "
                              f"{campaign_id!r}")
        return campaign
    found = campaigns_named(store, campaign_id)
    if not found:
        raise ConfigError(f"no campaign {campaign_id!r} in the journal "
                          "(sftpd-agent status lists them)")
    if len(found) > 1:
        others = ", ".join(str(c.id) for c in found[1:])
        print(f"sftpd-agent results: {len(found)} campaigns are named {campaign_id!r}: "
              f"the newest, number {found[0].id} (received "
              f"{found[0].received_at:%Y-%m-%d %H:%M} UTC); --pk {others} for another",
              file=err)
    return found[0]
