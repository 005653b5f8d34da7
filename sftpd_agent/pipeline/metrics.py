"""Prometheus metrics, as a text file for node_exporter's textfile collector.

Everything is read from the journal, so the file says the same after a restart as before
it: campaigns by state, rows uploaded and dropped, opt-outs, the suppression list, the
oldest file waiting for the provider's outcome, and the agent facts the daemon keeps
(last successful poll, remote errors, upload volume and time).

Each write builds a fresh registry from a handful of aggregate queries (no table is loaded
into Python) and replaces the file atomically: a hidden temporary file in the same
directory, fsynced, made 0644 whatever the umask (node_exporter runs as another user; the
file holds no personal data), then renamed over the old one. The temporary file does not
end in ``.prom``, so the collector never reads it half-written.

A missing directory is a configuration error, not something to create: the textfile
collector's directory belongs to node_exporter's installation, and a typo must not leave
metrics in a folder nobody reads.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..errors import ConfigError
from ..files import replaced
from ..rules.states import PART_UPLOADED, PART_WAITING
from ..rules.validation import CODES
from ..store.journal import Store

PREFIX = "sftpd_agent_"
MODE = 0o644


def write_textfile(
    path: Path, store: Store, *, now: datetime.datetime, pending_notifications: int = 0
) -> None:
    """Rewrite ``path`` atomically with the journal's metrics as of ``now`` (aware).

    Raises ``ConfigError`` (one line naming ``[metrics] textfile``) when the directory is
    missing or not writable; other ``OSError``s (a full disk) pass through.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Snapshot(collect(store, now=now,
                                        pending_notifications=pending_notifications)))
    _replace(path, generate_latest(registry))


def collect(
    store: Store, *, now: datetime.datetime, pending_notifications: int = 0
) -> list[Metric]:
    """The metric families, read from the journal."""
    # A part's rows count as sent once the file is on the provider's server under its final
    # name; a part the provider later rejects was uploaded all the same, and counting it
    # keeps the counter from going down.
    return [
        _campaigns(store),
        _counter("rows_sent",
                 "Rows uploaded to the provider (files published, taken, done or rejected).",
                 store.part_rows(*PART_UPLOADED)),
        _dropped(store),
        _counter("optouts", "Opt-outs (STOP) ingested from the provider's reports.",
                 store.count_rows("optouts")),
        _gauge("suppression_list_size", "Numbers on the suppression list.",
               store.suppression_size()),
        _gauge("oldest_waiting_outcome_seconds",
               "Age of the oldest provider file published and still without an outcome.",
               _oldest_waiting(store, now)),
        _gauge("last_successful_poll_timestamp_seconds",
               "Unix time of the last successful round on the provider's server (0: never).",
               _timestamp(store.fact("last_poll"))),
        _counter("remote_errors", "Failed rounds on the provider's server.",
                 _number(store.fact("remote_errors_total"))),
        _gauge("remote_up", "1 when the last round on the provider's server succeeded.",
               1 if store.fact("remote_error") is None else 0),
        _counter("upload_bytes", "Bytes of provider files uploaded.",
                 _number(store.fact("upload_bytes_total"))),
        _counter("upload_seconds", "Seconds spent uploading provider files.",
                 _number(store.fact("upload_seconds_total"))),
        _gauge("notifications_pending", "Notifications waiting to be sent.",
               pending_notifications),
    ]


class _Snapshot:
    """A collector that yields families computed beforehand."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _campaigns(store: Store) -> Metric:
    family = GaugeMetricFamily(PREFIX + "campaigns", "Campaigns by state.", labels=["state"])
    for state, count in store.campaign_counts().items():
        family.add_metric([str(state)], count)
    return family


def _dropped(store: Store) -> Metric:
    family = CounterMetricFamily(
        PREFIX + "rows_dropped",
        "Rows not sent: invalid (by error code), duplicate, or on the suppression list.",
        labels=["reason"])
    reasons = dict.fromkeys(CODES, 0)
    # Campaigns are few; the per-code figures live in each summary's JSON.
    for code, count in store.invalid_by_code().items():
        reasons[code] = reasons.get(code, 0) + count
    totals = store.campaign_totals()
    reasons["duplicate"] = reasons.get("duplicate", 0) + totals["duplicates"]
    reasons["suppressed"] = reasons.get("suppressed", 0) + totals["suppressed"]
    for reason, count in reasons.items():
        family.add_metric([reason], count)
    return family


def _oldest_waiting(store: Store, now: datetime.datetime) -> float:
    oldest = store.oldest_part(*PART_WAITING)
    if oldest is None:
        return 0.0
    return max(0.0, (now - oldest).total_seconds())


def _timestamp(text: object) -> float:
    if not text:
        return 0.0
    return datetime.datetime.fromisoformat(str(text)).timestamp()


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _gauge(name: str, documentation: str, value: float | int | str | None) -> Metric:
    return GaugeMetricFamily(PREFIX + name, documentation, value=_float(value))


def _counter(name: str, documentation: str, value: float | int | str | None) -> Metric:
    return CounterMetricFamily(PREFIX + name, documentation, value=_float(value))


def _float(value: float | int | str | None) -> float:
    return float(value) if value is not None else 0.0


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``files.replaced``), leaving it 0644."""
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"[metrics] textfile: directory {directory} does not exist")
    if path.is_dir():
        raise ConfigError(f"[metrics] textfile: {path} is a directory")
    try:
        with replaced(path, text=False, mode=MODE) as out:
            out.write(data)
    except PermissionError:
        raise ConfigError(
            f"[metrics] textfile: directory {directory} is not writable") from None
    except IsADirectoryError:
        raise ConfigError(f"[metrics] textfile: {path} is a directory") from None

