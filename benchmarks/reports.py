"""Benchmark: report ingestion and the suppression check, against baselines, in one run.

    python benchmarks/reports.py [--lines 1000000] [--keep DIR]

Generates a 1,000,000-line ACK file (unquoted, raw ``;`` in MSG, ``2 `` style IDSTATUS), a
1,000,000-number STOP file and a 1,000,000-row campaign, then times, each in a fresh process
so that peak RSS is its own:

- ACK ingest: ``Reports.round`` over the provider folder (``LocalRemote``: the same code as
  over SFTP, without the network), into a fresh ``state.db``;
- STOP ingest: the same for the STOP file (1M numbers into the suppression list): the time
  to ``optout.received`` (the opt-outs in force: uploads leave them out, ``suppress list``
  shows them), and to the round's end (their listing into the list's own table);
- the naive baseline for the same ACK file: read it whole, split each line, look up whether
  it is already there and insert it, one statement a line (one transaction);
- ``check`` of the campaign without a suppression list, then with the 1M-number list that the
  STOP ingest built (loading the list included): the difference is what the list costs.

During each ingest the write lock's hold of every transaction (``Store.last_hold``) is
recorded, and another process writes a small fact through its own ``Store`` every 10 ms, as
the daemon's loops do beside a ``suppress import``: its longest wait is what the ingest costs
other writers.

Targets (issue 6): ACK ingest <= 10 s; the suppression check adds <= 2 s to ``check``.
Issue 13: no ingest transaction holds the write lock 0.1 s or more. Issue 16: ACK ingest of
1,000,000 lines in <= 3 s; STOP ingest in <= 4 s and <= 150 MB resident; another writer never
waits 0.1 s or more. ``--repeat N`` runs each measure N times and prints medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET_ACK_SECONDS = 3.0  # issue 16 (issue 6: 10 s)
TARGET_CHECK_EXTRA = 2.0
TARGET_HOLD = 0.1
TARGET_WAIT = 0.1  # another writer's longest wait during an ingest
TARGET_STOP_MB, TARGET_STOP_SECONDS = 150.0, 4.0
NAME = "12345-20261123-1000-bench"
NOW = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)


def generate_reports(folder: Path, lines: int, *, order: str = "shuffled") -> None:
    """The ACK and STOP files. ``shuffled``: the numbers in no order (a stride coprime with
    10**7), as a campaign built from a CRM export has them and its reports follow;
    ``sorted``: in increasing order (every insert at the end of the journal's indexes, the
    best case)."""
    report = folder / "provider" / "Report"
    report.mkdir(parents=True, exist_ok=True)

    def number(i: int) -> int:
        return (i * 7_919) % 10**7 if order == "shuffled" else i

    with (report / f"ACK-{NAME}.csv").open("w", encoding="utf-8", newline="") as out:
        for i in range(lines):
            status = "3 ;failed" if i % 20 == 0 else "2 ;sent"
            out.write(f"R{i};+3366{number(i):07d};Shop;Bonjour {i}; -20% ce soir ; a bientot;"
                      f"{status};{uuid.UUID(int=i, version=4)}\r\n")
    with (report / f"STOP-{NAME}.csv").open("w", encoding="utf-8", newline="") as out:
        for i in range(lines):
            out.write(f"+3367{number(i):07d};20261123;{10 + i % 10:02d}{i % 60:02d};STOP;"
                      f"R{i}\r\n")


def ingest(folder: Path, kind: str, *, beside_writer: bool) -> dict[str, float]:
    from sftpd_agent.config import Settings
    from sftpd_agent.pipeline.reports import Reports
    from sftpd_agent.remote.local import LocalRemote
    from sftpd_agent.store.journal import Store

    provider = folder / f"provider-{kind}"
    (provider / "Report").mkdir(parents=True, exist_ok=True)
    source = folder / "provider" / "Report" / f"{kind.upper()}-{NAME}.csv"
    target = provider / "Report" / source.name
    target.unlink(missing_ok=True)
    target.hardlink_to(source)
    shutil.rmtree(folder / f"agent-{kind}", ignore_errors=True)  # a fresh journal each run
    settings = Settings(service_id="12345", paths={"root": folder / f"agent-{kind}"},
                        reports={"delete_remote_after_ingest": False})
    store = Store(settings.paths.state_db)
    holds: list[float] = []
    transaction = store.transaction

    @contextlib.contextmanager
    def timed(**kwargs: Any) -> Iterator[sqlite3.Connection]:
        with transaction(**kwargs) as db:
            yield db
        holds.append(store.last_hold)

    store.transaction = timed  # type: ignore[method-assign]
    announced: list[float] = []

    def events(name: str, *_: Any, **__: Any) -> None:
        if name == "optout.received":
            announced.append(time.perf_counter())

    reports = Reports(store, settings, lambda: NOW, events)
    done = folder / f"writer-{kind}.done"
    done.unlink(missing_ok=True)
    writer = None
    if beside_writer:
        writer = subprocess.Popen([sys.executable, __file__, "--writer",
                                   str(settings.paths.state_db), str(done)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the writer's imports and its first writes, before the ingest
    start = time.perf_counter()
    asyncio.run(reports.round(LocalRemote(provider)))
    elapsed = time.perf_counter() - start
    waits = {"writes": 0, "max_wait": 0.0, "median_wait": 0.0}
    if writer is not None:
        done.touch()
        out, _ = writer.communicate(timeout=60)
        waits = json.loads(out.splitlines()[-1])
    rows = store.count_rows("deliveries" if kind == "ack" else "suppression")
    store.close()
    holds.sort()
    # STOP: in force (announced; ``suppress list`` shows them) before the round ends with
    # their listing into the suppression list's table.
    in_force = announced[0] - start if announced else elapsed
    return {"seconds": in_force, "round_seconds": elapsed, "rows": rows,
            "transactions": len(holds),
            "max_hold": holds[-1], "median_hold": holds[len(holds) // 2], **waits}


def other_writer(state_db: Path, done: Path) -> None:
    """Write a small fact every 10 ms through a ``Store`` until ``done`` exists; print the
    longest and the median wait (the writes' own time included)."""
    from sftpd_agent.store.journal import Store

    store = Store(state_db)
    waits = []
    for n in range(100_000):  # bounded: the ingest ends well before
        if done.exists():
            break
        began = time.perf_counter()
        store.set_fact("heartbeat", n)
        waits.append(time.perf_counter() - began)
        time.sleep(0.01)
    store.close()
    waits.sort()
    print(json.dumps({"writes": len(waits), "max_wait": waits[-1],
                      "median_wait": waits[len(waits) // 2]}))


def naive_ack(folder: Path) -> dict[str, float]:
    db = sqlite3.connect(folder / "naive.db")
    db.execute("DROP TABLE IF EXISTS acks")
    db.execute("CREATE TABLE acks (report TEXT, msisdn TEXT, idremote TEXT, status TEXT, "
               "UNIQUE (report, msisdn, idremote))")
    start = time.perf_counter()
    text = (folder / "provider" / "Report" / f"ACK-{NAME}.csv").read_text(encoding="utf-8")
    with db:
        for line in text.splitlines():
            fields = line.split(";")
            seen = db.execute("SELECT 1 FROM acks WHERE report = ? AND msisdn = ? AND "
                              "idremote = ?", (NAME, fields[1], fields[0])).fetchone()
            if not seen:
                db.execute("INSERT INTO acks VALUES (?,?,?,?)",
                           (NAME, fields[1].strip(), fields[0].strip(), fields[-2].strip()))
    elapsed = time.perf_counter() - start
    rows = db.execute("SELECT count(*) FROM acks").fetchone()[0]
    db.close()
    return {"seconds": elapsed, "rows": rows}


def check(folder: Path, with_list: bool) -> dict[str, float]:
    from sftpd_agent.config import Settings
    from sftpd_agent.pipeline.intake import take_in
    from sftpd_agent.store.journal import Store

    settings = Settings(service_id="12345")
    start = time.perf_counter()
    if with_list:
        store = Store(folder / "agent-stop" / "state.db", readonly=True)
        suppressed = store.suppressed()
        store.close()
        result = take_in(folder / "campaign.csv", settings, now=NOW, suppressed=suppressed)
    else:
        result = take_in(folder / "campaign.csv", settings, now=NOW)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rows": result.summary.rows,
            "suppressed": getattr(result.summary, "suppressed", 0)}


def child(which: str, folder: Path) -> None:
    kind, _, beside = which.partition("+")
    if kind in ("ack", "stop"):
        result = ingest(folder, kind, beside_writer=beside == "writer")
    elif which == "naive":
        result = naive_ack(folder)
    else:
        result = check(folder, with_list=which == "check-list")
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(which: str, folder: Path, repeat: int = 1) -> dict[str, Any]:
    """The median of each figure over ``repeat`` runs (the longest hold and wait: the
    longest of all)."""
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, __file__, "--child", which, str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{which} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    result: dict[str, Any] = {key: statistics.median(run[key] for run in runs)
                              for key in runs[0]}
    for key in ("max_hold", "max_wait"):
        if key in result:
            result[key] = max(run[key] for run in runs)
    result["all_seconds"] = [run["seconds"] for run in runs]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the generated files in this folder")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure (medians)")
    parser.add_argument("--order", choices=("shuffled", "sorted"), default="shuffled",
                        help="the reports' numbers in no order (as from a CRM; default) or "
                             "increasing (the best case)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--writer", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    if args.writer:
        other_writer(Path(args.writer[0]), Path(args.writer[1]))
        return 0

    from validate import generate  # the validation benchmark's campaign generator

    folder = args.keep or Path(tempfile.mkdtemp(prefix="sftpd-bench-reports-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        generate_reports(folder, args.lines, order=args.order)
        generate(folder / "campaign.csv", args.lines)
        print(f"generated {args.lines:,} ACK lines, {args.lines:,} STOP lines and a "
              f"{args.lines:,}-row campaign in {time.perf_counter() - t0:.1f} s")
        ack, naive = measure("ack", folder, args.repeat), measure("naive", folder)
        stop = measure("stop", folder, args.repeat)
        ack_beside = measure("ack+writer", folder, args.repeat)
        stop_beside = measure("stop+writer", folder, args.repeat)
        plain, listed = measure("check", folder), measure("check-list", folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"{'':34}{'seconds':>9}{'lines/s':>12}{'peak RSS MB':>13}")
    for label, result in (("ACK ingest (ours)", ack), ("ACK ingest (naive baseline)", naive),
                          ("STOP ingest (ours)", stop), ("ACK ingest beside a writer", ack_beside),
                          ("STOP ingest beside a writer", stop_beside),
                          ("check, no list", plain),
                          ("check + 1M-number list", listed)):
        rate = args.lines / result["seconds"]
        print(f"{label:34}{result['seconds']:9.2f}{rate:12,.0f}{result['rss_mb']:13.0f}")
    assert ack["rows"] == naive["rows"] == args.lines, (ack, naive)
    assert stop["rows"] == args.lines, stop
    for label, result in (("ACK", ack), ("STOP", stop), ("ACK beside a writer", ack_beside),
                          ("STOP beside a writer", stop_beside)):
        waited = (f"another writer (a fact every 10 ms) waited {result['max_wait'] * 1000:.0f} "
                  f"ms at most (median {result['median_wait'] * 1000:.1f} ms, "
                  f"{result['writes']:.0f} writes; target < {TARGET_WAIT * 1000:.0f} ms); "
                  if result["writes"] else "")
        print(f"{label} ingest: {result['transactions']:.0f} transactions, write lock held "
              f"{result['max_hold'] * 1000:.0f} ms at most (median "
              f"{result['median_hold'] * 1000:.0f} ms; target < {TARGET_HOLD * 1000:.0f} ms); "
              + waited + "runs: " + ", ".join(f"{s:.2f} s" for s in result["all_seconds"]))
    extra = listed["seconds"] - plain["seconds"]
    print(f"ACK ingest: {ack['seconds']:.2f} s for {args.lines:,} lines "
          f"(target <= {TARGET_ACK_SECONDS:g} s), {naive['seconds'] / ack['seconds']:.1f}x "
          f"the naive baseline")
    print(f"suppression check adds {extra:.2f} s to check (target <= {TARGET_CHECK_EXTRA:g} s);"
          f" {listed['suppressed']:,.0f} rows would be dropped")
    print(f"STOP ingest: {stop['seconds']:.2f} s to optout.received (target <= "
          f"{TARGET_STOP_SECONDS:g} s), the round with the listing {stop['round_seconds']:.2f} s, "
          f"{stop['rss_mb']:.0f} MB peak RSS (target <= {TARGET_STOP_MB:g} MB; the ACK "
          f"ingest of as many lines: {ack['rss_mb']:.0f} MB)")
    met = (ack["seconds"] <= TARGET_ACK_SECONDS and extra <= TARGET_CHECK_EXTRA
           and max(ack["max_hold"], stop["max_hold"]) < TARGET_HOLD
           and max(ack_beside["max_wait"], stop_beside["max_wait"]) < TARGET_WAIT
           and stop["rss_mb"] <= TARGET_STOP_MB and stop["seconds"] <= TARGET_STOP_SECONDS)
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
