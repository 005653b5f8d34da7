"""What a campaign's results file reads from the journal: read-only SQL, streamed.

``sftpd-agent results`` (and the daemon, once a campaign is ``reported``) joins these with the
campaign's own files (:mod:`sftpd_agent.pipeline.results`). Every read here works on a
read-only store beside a running daemon, and none loads a table into memory: the rows are
yielded as SQLite returns them (a million delivery lines of one campaign included), or a
slice at a time (:func:`delivery_groups`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from ..rules.naming import Kind
from .journal import Store
from .records import Campaign, now_iso


def campaigns_named(store: Store, campaign_id: str) -> list[Campaign]:
    """The campaigns of this id, newest (highest number) first."""
    rows = store._db.execute(
        "SELECT * FROM campaigns WHERE campaign_id = ? ORDER BY id DESC", (campaign_id,))
    return [Campaign.from_row(row) for row in rows]


STATUS_SEPARATOR = "\x1f"


def campaign_deliveries(store: Store, pk: int) -> Iterator[tuple[str, str]]:
    """The delivery lines (ACK) of campaign ``pk``: (msisdn, its status) where the status is
    ``idstatus``, ``status`` and ``at`` joined by :data:`STATUS_SEPARATOR` (one string: few
    distinct ones, looked up once each). ``at`` is when the line was ingested (a UTC ISO
    string). In the table's order (no sort: a million lines stream at once). Linked to the
    campaign through its ACK files' cursors, as :meth:`ReportTables.count_acks` counts them."""
    yield from store._db.execute(
        "SELECT msisdn, idstatus || char(31) || status || char(31) || at FROM deliveries "
        "WHERE report IN (SELECT id FROM report_cursors WHERE campaign = ? AND kind = ?)",
        (pk, Kind.ACK.word))


_GROUPED = ("SELECT idstatus || char(31) || status || char(31) || at, count(*), "
            "group_concat(msisdn, char(31)) FROM deliveries WHERE report = ?1 AND id >= ?2 ")
_BY_STATUS = " GROUP BY idstatus, status, at"


def delivery_groups(store: Store, pk: int,
                    rows: int = 1 << 16) -> Iterator[tuple[int, str, int, str]]:
    """:func:`campaign_deliveries` by ACK file and status, ``rows`` lines at a time: (the
    file's cursor id, the files in the table's order; the status, as joined there; how many
    lines have it; their msisdns joined by :data:`STATUS_SEPARATOR`). A few strings back for
    thousands of lines instead of a row each; a status comes once a slice. Each ACK file's
    lines are cut in the order they arrived (a slice is a range of ids that the file's index
    walks, never sorted whole), and each slice is grouped by SQLite. The order of one file's
    lines is lost: this says all only when no number has two lines in one file (the caller
    checks)."""
    db = store._db
    reports = [report for (report,) in db.execute(
        "SELECT id FROM report_cursors WHERE campaign = ? AND kind = ? ORDER BY id",
        (pk, Kind.ACK.word))]
    for report in reports:
        low = 0
        while True:
            bound = db.execute(  # the first line of the next slice
                "SELECT id FROM deliveries WHERE report = ? AND id >= ? "
                "ORDER BY id LIMIT 1 OFFSET ?", (report, low, rows)).fetchone()
            groups = db.execute(_GROUPED + _BY_STATUS, (report, low)) if bound is None else \
                db.execute(_GROUPED + "AND id < ?3" + _BY_STATUS, (report, low, bound[0]))
            for joined, count, msisdns in groups:
                yield report, joined, count, msisdns
            if bound is None:
                break
            low = bound[0]


def optouts_since(store: Store, since: datetime.datetime) -> Iterator[tuple[str, str]]:
    """Opt-outs received at or after ``since``: (msisdn, when as a UTC ISO string), from the
    STOP lines and the replies that were a stop keyword, oldest first. When is the provider's
    DATE and HOUR of the line, else the time the agent read it."""
    yield from store._db.execute(
        "SELECT msisdn, coalesce(received_at, at) AS t FROM optouts "
        "WHERE coalesce(received_at, at) >= ?1 UNION ALL "
        "SELECT msisdn, coalesce(received_at, at) FROM replies "
        "WHERE opt_out AND coalesce(received_at, at) >= ?1 ORDER BY t",
        (now_iso(since),))
