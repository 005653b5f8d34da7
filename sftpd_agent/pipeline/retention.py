"""The daily purge of personal data older than ``paths.retention_days``.

Purged: ``archive/`` folders, ``failed/`` files, raw reports in ``inbox/`` (not those of a
report file the provider still shows), delivery lines, opt-out lines and replies already
announced, cursors of report files gone from the server, sent notifications. Never purged:
the suppression list, campaigns and their figures (delivery figures stay in the campaign's
summary), and anything a campaign still in progress needs (the spool).
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import PathsSettings
from ..logs import get_logger
from ..rules.report_lines import REPORT_KINDS
from ..store.journal import Store

log = get_logger("sftpd_agent.retention")


@dataclass(frozen=True, slots=True)
class Purged:
    files: int
    rows: dict[str, int]


def _newest_mtime(path: Path) -> float:
    """The newest modification time in ``path`` (a file, a link itself, or a folder's tree);
    a symbolic link is never followed (a held link may point anywhere, or nowhere)."""
    if path.is_dir() and not path.is_symlink():
        return max((p.lstat().st_mtime for p in path.rglob("*")),
                   default=path.lstat().st_mtime)
    return path.lstat().st_mtime


def purge(store: Store, paths: PathsSettings, days: int, *,
          now: datetime.datetime) -> Purged:
    cutoff = now - datetime.timedelta(days=days)
    stamp = cutoff.timestamp()
    live = store.live_report_names(cutoff)
    removed = 0
    for folder in (paths.archive, paths.failed,
                   *(paths.inbox / kind.word for kind in REPORT_KINDS)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name in live or _newest_mtime(path) >= stamp:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()  # a file, or a held link itself
            removed += 1
    rows = store.purge_rows(cutoff)
    if removed or any(rows.values()):
        log.info("retention_purged", days=days, files=removed, **rows)
    return Purged(removed, rows)
