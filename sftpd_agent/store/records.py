"""What the journal holds, as Python values: campaigns, their provider files (parts), report
read positions (cursors), and the rows report ingestion records. Times are aware datetimes
here and UTC ISO strings in the journal (:func:`now_iso`, :func:`parse_iso`).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..rules.naming import Kind
from ..rules.report_lines import LINE_HASH
from ..rules.states import CampaignState, PartState


def now_iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    campaign_id: str
    file: str
    source: str
    state: CampaignState
    received_at: datetime.datetime
    send_at: datetime.datetime | None
    upload_at: datetime.datetime | None
    rows: int
    valid: int
    invalid: int
    duplicates: int
    suppressed: int
    segments: int
    reason: str | None
    summary: dict[str, Any]
    updated_at: datetime.datetime
    next_upload_at: datetime.datetime | None = None
    """A group of its send times still to prepare: the upload time of the next (the campaign
    is on its way meanwhile, and does not end before the last group is)."""

    def figures(self) -> dict[str, int]:
        """The contract's figures (``status``, events): rows ... segments, in that order."""
        return {"rows": self.rows, "valid": self.valid, "invalid": self.invalid,
                "duplicates": self.duplicates, "suppressed": self.suppressed,
                "segments": self.segments}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Campaign:
        return cls(
            id=row["id"], campaign_id=row["campaign_id"], file=row["file"], source=row["source"],
            state=CampaignState(row["state"]),
            received_at=datetime.datetime.fromisoformat(row["received_at"]),
            send_at=parse_iso(row["send_at"]), upload_at=parse_iso(row["upload_at"]),
            rows=row["rows"], valid=row["valid"], invalid=row["invalid"],
            duplicates=row["duplicates"], suppressed=row["suppressed"],
            segments=row["segments"], reason=row["reason"],
            summary=json.loads(row["summary"]) if row["summary"] else {},
            updated_at=datetime.datetime.fromisoformat(row["updated_at"]),
            next_upload_at=parse_iso(row["next_upload_at"]),
        )


@dataclass(frozen=True, slots=True)
class Part:
    id: int
    campaign: int
    number: int
    remote_name: str
    state: PartState
    size: int
    sha256: str
    rows: int
    published_at: datetime.datetime | None
    outcome_at: datetime.datetime | None

    @property
    def stem(self) -> str:
        return self.remote_name.removesuffix(".csv")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Part:
        return cls(
            id=row["id"], campaign=row["campaign"], number=row["number"],
            remote_name=row["remote_name"], state=PartState(row["state"]), size=row["size"],
            sha256=row["sha256"], rows=row["rows"],
            published_at=parse_iso(row["published_at"]), outcome_at=parse_iso(row["outcome_at"]),
        )


@dataclass(frozen=True, slots=True)
class ReportCursor:
    """How far a remote report file has been read: the bytes up to ``offset`` (whole lines)
    are ingested; ``head_sha256``/``tail_sha256`` hash the first and last 4 KiB of them."""

    name: str
    kind: Kind
    campaign: int | None
    seen_at: datetime.datetime
    id: int | None = None
    size: int = 0
    mtime: float = 0.0
    offset: int = 0
    head_sha256: str = ""
    tail_sha256: str = ""
    lines: int = 0
    complete_at: datetime.datetime | None = None
    deleted_at: datetime.datetime | None = None
    line_hash: int = LINE_HASH
    """How its lines' keys are made (``rules.report_lines``): the scheme of the file's first
    read, kept for as long as its lines are (those recorded are found again by their keys)."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ReportCursor:
        return cls(
            name=row["name"], kind=Kind.from_word(row["kind"]), campaign=row["campaign"],
            seen_at=datetime.datetime.fromisoformat(row["seen_at"]), id=row["id"],
            size=row["size"],
            mtime=row["mtime"], offset=row["offset"], head_sha256=row["head_sha256"],
            tail_sha256=row["tail_sha256"], lines=row["lines"],
            complete_at=parse_iso(row["complete_at"]), deleted_at=parse_iso(row["deleted_at"]),
            line_hash=row["line_hash"],
        )


@dataclass(frozen=True, slots=True)
class PartPlan:
    """A provider file to publish: its name and the exact bytes' size and hash."""

    remote_name: str
    size: int
    sha256: str
    rows: int


# The rows report ingestion records: plain tuples in the tables' column order (a million-line
# report builds a million of them; executemany takes them as they are).
DeliveryRow = tuple[int, str, str, int | None, str, str, str, str, str]
"""One ACK line (``deliveries``, one per report, MSISDN and IDREMOTE): (report, msisdn,
idremote, campaign, oadc, idstatus, status, operator, at); report is the cursor's id, at when
it was read (:func:`now_iso`)."""
OptOutRow = tuple[int, int, int, str, str | None, int | None, str]
"""One STOP line (``optouts``, one per report, key and occurrence): (report, key, occurrence,
msisdn, received_at, campaign, at); key is ``rules.report_lines.line_key`` of the line's text,
occurrence 2 for its second identical line."""
ReplyRow = tuple[int, int, int, str, str | None, str, str, int | None, bool, str]
"""One SMS-MO line (``replies``, one per report, key and occurrence): (report, key,
occurrence, msisdn, received_at, message, idremote, campaign, opt_out, at)."""
SuppressionRow = tuple[str, str, str, str | None]
"""A number for the suppression list: (msisdn, added_at, source, campaign)."""
