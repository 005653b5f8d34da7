"""The journal's tables: the schema's ordered migrations (``PRAGMA user_version``), and the
statements more than one part of the store writes.

Opening a store applies the missing migrations in one transaction each (:func:`migrate`).
A new migration is appended, never edited: a journal records the migrations it has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

MIGRATIONS: Sequence[str] = (
    # 1: campaigns, parts, transitions, agent facts
    """
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        campaign_id TEXT NOT NULL,
        file TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        received_at TEXT NOT NULL,
        send_at TEXT,
        upload_at TEXT,
        rows INTEGER NOT NULL DEFAULT 0,
        valid INTEGER NOT NULL DEFAULT 0,
        invalid INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        segments INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        summary TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX campaigns_state ON campaigns(state);
    CREATE TABLE parts (
        id INTEGER PRIMARY KEY,
        campaign INTEGER NOT NULL REFERENCES campaigns(id),
        number INTEGER NOT NULL,
        remote_name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        rows INTEGER NOT NULL,
        published_at TEXT,
        outcome_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX parts_state ON parts(state);
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        campaign INTEGER NOT NULL REFERENCES campaigns(id),
        part INTEGER REFERENCES parts(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        at TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX transitions_campaign ON transitions(campaign);
    CREATE TABLE agent (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: the suppression list (never purged)
    """
    CREATE TABLE suppression (
        msisdn TEXT PRIMARY KEY,
        added_at TEXT NOT NULL,
        source TEXT NOT NULL,
        campaign TEXT
    );
    """,
    # 3: the provider's reports: read positions, delivery lines, opt-out lines, replies
    """
    CREATE TABLE report_cursors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        campaign INTEGER REFERENCES campaigns(id),
        size INTEGER NOT NULL DEFAULT 0,
        mtime REAL NOT NULL DEFAULT 0,
        offset INTEGER NOT NULL DEFAULT 0,
        head_sha256 TEXT NOT NULL DEFAULT '',
        tail_sha256 TEXT NOT NULL DEFAULT '',
        lines INTEGER NOT NULL DEFAULT 0,
        complete_at TEXT,
        deleted_at TEXT,
        seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        report INTEGER NOT NULL,  -- report_cursors.id (never reused)
        msisdn TEXT NOT NULL,
        idremote TEXT NOT NULL,
        campaign INTEGER,
        oadc TEXT NOT NULL,
        idstatus TEXT NOT NULL,
        status TEXT NOT NULL,
        operator TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (report, msisdn, idremote)
    ) WITHOUT ROWID;
    CREATE TABLE optouts (
        id INTEGER PRIMARY KEY,
        report INTEGER NOT NULL,  -- report_cursors.id
        key INTEGER NOT NULL,     -- a 64-bit hash of the line's text
        occurrence INTEGER NOT NULL,
        msisdn TEXT NOT NULL,
        received_at TEXT,
        campaign INTEGER REFERENCES campaigns(id),
        at TEXT NOT NULL,
        UNIQUE (report, key, occurrence)
    );
    CREATE TABLE replies (
        id INTEGER PRIMARY KEY,
        report INTEGER NOT NULL,
        key INTEGER NOT NULL,
        occurrence INTEGER NOT NULL,
        msisdn TEXT NOT NULL,
        received_at TEXT,
        message TEXT NOT NULL,
        idremote TEXT NOT NULL,
        campaign INTEGER REFERENCES campaigns(id),
        opt_out INTEGER NOT NULL,
        at TEXT NOT NULL,
        UNIQUE (report, key, occurrence)
    );
    CREATE INDEX replies_campaign ON replies(campaign);
    """,
    # 4: notifications waiting to be sent (one row per event and channel)
    """
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        channel TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX notifications_pending ON notifications(sent_at, next_at);
    """,
    # 5: what a poll reads is found through an index, never by reading the history: a
    # campaign's parts, and the report files of a campaign
    """
    CREATE INDEX parts_campaign ON parts(campaign, number);
    CREATE INDEX report_cursors_campaign ON report_cursors(campaign);
    """,
    # 6: a campaign of several send times (recipients' zones) prepares each group at its own
    # upload time: the next one's, while some are still to go
    """
    ALTER TABLE campaigns ADD COLUMN next_upload_at TEXT;
    CREATE INDEX campaigns_next_upload ON campaigns(next_upload_at)
        WHERE next_upload_at IS NOT NULL;
    """,
    # 7: delivery lines kept in the order they arrive. Keyed by (report, MSISDN, IDREMOTE), a
    # million-line ACK of a campaign in a CRM's order inserted all over its B-tree: every
    # commit rewrote thousands of pages (30 s in-process, 24 s in the daemon, against 4 s for
    # the same lines in number order). Appended, a batch writes a few pages; a line is still
    # recorded once (the store keeps its report's keys: ReportTables.record_ack_parts).
    """
    CREATE TABLE deliveries_arrived (
        id INTEGER PRIMARY KEY,
        report INTEGER NOT NULL,  -- report_cursors.id (never reused)
        msisdn TEXT NOT NULL,
        idremote TEXT NOT NULL,
        campaign INTEGER,
        oadc TEXT NOT NULL,
        idstatus TEXT NOT NULL,
        status TEXT NOT NULL,
        operator TEXT NOT NULL,
        at TEXT NOT NULL
    );
    INSERT INTO deliveries_arrived (report, msisdn, idremote, campaign, oadc, idstatus, status,
                                    operator, at)
        SELECT report, msisdn, idremote, campaign, oadc, idstatus, status, operator, at
        FROM deliveries ORDER BY report, msisdn, idremote;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_arrived RENAME TO deliveries;
    CREATE INDEX deliveries_report ON deliveries(report);
    """,
    # 8: opt-out lines kept in the order they arrive, for the reason of 7 (a million-line STOP
    # file in a CRM's order was inserted all over the UNIQUE index on its line hashes: ~18 s);
    # the store keeps a file's line counts instead (ReportTables.stop_counts). Their numbers
    # join the suppression list after the lines, in number order
    # (Store.list_new_optouts): ``listed`` says whether a line's number is to be listed,
    # the agent fact ``optouts_listed_to`` up to which line (by id) that is done. Ids are never
    # reused (AUTOINCREMENT): a line recorded after a purge emptied the table is still above it.
    """
    CREATE TABLE optouts_arrived (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        report INTEGER NOT NULL,  -- report_cursors.id
        key INTEGER NOT NULL,     -- a 64-bit hash of the line's text
        occurrence INTEGER NOT NULL,
        msisdn TEXT NOT NULL,
        received_at TEXT,
        campaign INTEGER REFERENCES campaigns(id),
        at TEXT NOT NULL,
        listed INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO optouts_arrived (id, report, key, occurrence, msisdn, received_at, campaign, at)
        SELECT id, report, key, occurrence, msisdn, received_at, campaign, at FROM optouts
        ORDER BY id;
    DROP TABLE optouts;
    ALTER TABLE optouts_arrived RENAME TO optouts;
    CREATE INDEX optouts_report ON optouts(report);
    INSERT INTO agent (key, value)
        SELECT 'optouts_listed_to', coalesce(max(id), 0) FROM optouts WHERE true
        ON CONFLICT(key) DO UPDATE SET value = excluded.value;
    """,
    # 9: how a report file's line keys are made (rules.report_lines): the files read so far
    # keep BLAKE2b-64 (0), with the keys of their recorded lines; a file first seen from now
    # on gets XXH3 (1), the cursor saying so for as long as it is kept (``_save_cursor`` never
    # changes it).
    """
    ALTER TABLE report_cursors ADD COLUMN line_hash INTEGER NOT NULL DEFAULT 0;
    """,
)


SUPPRESS = ("INSERT INTO suppression (msisdn, added_at, source, campaign) VALUES (?,?,?,?) "
            "ON CONFLICT(msisdn) DO NOTHING")
"""A number onto the suppression list (``suppress``, an opt-out line): once, first source kept."""
PUT_FACT = ("INSERT INTO agent (key, value) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value")
GET_FACT = "SELECT value FROM agent WHERE key = ?"
LISTED_TO = "optouts_listed_to"
"""The agent fact: the id of the last opt-out line whose number is on the suppression list
(when it is to be: ``optouts.listed``); set by migration 8, moved by ``list_new_optouts``."""


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations ``db`` lacks, in order."""
    for number in range(version(db), len(MIGRATIONS)):
        # One script, one transaction: the schema and its version change together.
        db.executescript(
            f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; "
            "COMMIT;"
        )
