"""Benchmark: ``sftpd-agent results`` for a 1,000,000-row campaign, against a baseline.

    python benchmarks/results.py [--rows 1000000] [--runs 3] [--keep DIR]
                                 [--ack-times N] [--twice N]

Builds a campaign as a manifest leaves it, through the store's own API: ``contacts.map.csv``
(1,000,000 contact rows, numbers written ``06 12 34 56 78`` or ``0612345678``), ``errors.csv``
(1 % invalid, a few with two errors), ``dropped.csv`` (0.5 % suppressed at upload), 0.5 %
duplicates, two provider files of the rest (~490,000 rows each), one delivery line per
uploaded row recorded with ``ReportTables.record_acks`` (5 % failed), and 5,000 STOP lines
after the upload (plus 20,000 older ones) with ``record_lines``. As the daemon records a big
ACK file batch by batch, each batch with its own time, ``--ack-times N`` spreads the lines'
times over N batches (N times as many distinct statuses); ``--twice N`` gives N numbers a
second, later line (the ordered read of the lines then decides which one counts).

Then times, each a fresh process (interpreter start included), the median of ``--runs``:

- ``sftpd-agent results bench --output F.csv``;
- the baseline: read the two provider files with ``csv`` and write their rows back out with
  ``csv`` (what any tool that touches every uploaded row once costs).

Peak RSS of the results process is printed too, and what of it grows with the campaign: the
peak less that of a process that only imports what the command imports (configuration,
pydantic, holidays: about 50 MB whatever the campaign). Targets: issue 15, under 10 s; issue
16, at most 5 s; memory: one dict by number, the growth under 150 MB.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sftpd_agent.config import Settings
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.report_lines import line_key
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import PartPlan, ReportCursor, now_iso

TARGET_SECONDS, GOAL_SECONDS, TARGET_MB = 10.0, 5.0, 150.0
RECEIVED = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)
PUBLISHED = datetime.datetime(2026, 11, 23, 9, 50, tzinfo=datetime.UTC)
ACKED = datetime.datetime(2026, 11, 24, 8, 0, tzinfo=datetime.UTC)
BATCH = 50_000


def phone(i: int) -> str:
    digits = f"06{i // 1_000_000 + 12:02d}{i % 1_000_000:06d}"
    if i % 3:
        return digits
    return " ".join(digits[k:k + 2] for k in range(0, 10, 2))


def e164(i: int) -> str:
    return f"+336{i // 1_000_000 + 12:02d}{i % 1_000_000:06d}"


def build(root: Path, rows: int, *, ack_times: int = 1, twice: int = 0) -> Path:
    """The campaign's journal and files under ``root``; the configuration file."""
    config = root / "agent.toml"
    config.write_text(f'service_id = "12345"\n[paths]\nroot = "{root / "agent"}"\n',
                      encoding="utf-8")
    settings = Settings(service_id="12345", paths={"root": root / "agent"})
    store = Store(settings.paths.state_db)
    campaign = store.add_campaign(campaign_id="bench", file="bench.campaign.toml",
                                  source="1.toml", at=RECEIVED)
    store.move(campaign.id, CampaignState.VALIDATED, at=RECEIVED)
    store.move(campaign.id, CampaignState.SCHEDULED, at=RECEIVED)
    folder = settings.paths.spool / str(campaign.id)
    folder.mkdir(parents=True)
    uploaded: list[int] = []  # row numbers, in order
    with (folder / "contacts.map.csv").open("w", encoding="utf-8", newline="") as m, \
            (folder / "errors.csv").open("w", encoding="utf-8", newline="") as e, \
            (folder / "dropped.csv").open("w", encoding="utf-8", newline="") as d:
        maps = csv.writer(m, delimiter=";", lineterminator="\r\n")
        errors = csv.writer(e, delimiter=";", lineterminator="\r\n")
        dropped = csv.writer(d, delimiter=";", lineterminator="\r\n")
        maps.writerow(["line", "crm_id", "idremote", "phone"])
        errors.writerow(["line", "code", "field", "value", "detail"])
        dropped.writerow(["idremote", "msisdn", "reason"])
        for i in range(rows):
            line = i + 2
            if i % 100 == 7:  # invalid
                maps.writerow([line, f"CRM{i}", f"R{i}", "0612"])
                errors.writerow([line, "msisdn", "Mobile", "0612", "not a valid phone number"])
                if i % 1000 == 7:
                    errors.writerow([line, "template_value_missing", "Ville", "", "empty"])
                continue
            if i % 200 == 11 and i > 11:  # a duplicate of the row before
                maps.writerow([line, f"CRM{i}", f"R{i}", phone(i - 1)])
                continue
            maps.writerow([line, f"CRM{i}", f"R{i}", phone(i)])
            if i % 200 == 13:
                dropped.writerow([f"R{i}", e164(i), "suppressed"])
                continue
            uploaded.append(i)
    half = (len(uploaded) + 1) // 2
    chunks = [uploaded[:half], uploaded[half:]]
    names = [f"SEND-12345-20261123-1000-benchP{n}.csv" for n in (1, 2)]
    for name, chunk in zip(names, chunks, strict=True):
        with (folder / name).open("w", encoding="utf-8", newline="") as out:
            for i in chunk:
                out.write(f"R{i};{e164(i)};SHOP;Bonjour CRM{i}, -20 % a Lyon ce week-end ! "
                          "STOP au 36111\r\n")
    plans = [PartPlan(name, 1, "0" * 64, len(chunk))
             for name, chunk in zip(names, chunks, strict=True)]
    for part in store.add_parts(campaign.id, plans, at=PUBLISHED, suppressed=rows // 200):
        store.move_part(part, PartState.DONE, at=PUBLISHED)
    store.move(campaign.id, CampaignState.DONE, at=PUBLISHED)
    for name, chunk in zip(names, chunks, strict=True):
        cursor = store.save_report_cursor(
            ReportCursor("ACK-" + name.split("-", 1)[1], Kind.ACK, campaign.id, seen_at=ACKED),
            ACKED)
        assert cursor.id is not None
        per_time = -(-len(chunk) // ack_times)  # lines a batch (each its time), rounded up
        for start in range(0, len(chunk), BATCH):
            store.record_acks(cursor, [
                (cursor.id, e164(i), f"R{i}", campaign.id, "SHOP", "3" if i % 20 == 0 else "2",
                 "failed" if i % 20 == 0 else "sent", "op",
                 now_iso(ACKED + datetime.timedelta(seconds=n // per_time)))
                for n, i in enumerate(chunk[start:start + BATCH], start)], ACKED)
    if twice:
        cursor = store.save_report_cursor(
            ReportCursor("ACK-12345-20261124-1000-benchP1.csv", Kind.ACK, campaign.id,
                         seen_at=ACKED), ACKED)
        assert cursor.id is not None
        at = now_iso(ACKED + datetime.timedelta(hours=1))
        store.record_acks(cursor, [
            (cursor.id, e164(i), f"R{i}", campaign.id, "SHOP", "2", "delivered", "op", at)
            for i in uploaded[::max(1, len(uploaded) // twice)][:twice]], ACKED)
    stops = [(e164(i), PUBLISHED + datetime.timedelta(minutes=i % 600))
             for i in uploaded[::max(1, len(uploaded) // 5000)][:5000]]
    stops += [(f"+336{99_000_000 + n}", RECEIVED - datetime.timedelta(days=3))
              for n in range(20_000)]
    cursor = store.save_report_cursor(
        ReportCursor("STOP-12345-20261123-1000-benchP1.csv", Kind.STOP, campaign.id,
                     seen_at=ACKED), ACKED)
    assert cursor.id is not None
    store.record_lines(
        cursor, [(cursor.id, line_key(f"{n};{at}"), 1, n, now_iso(at), campaign.id,
                  now_iso(ACKED)) for n, at in stops],
        [(n, now_iso(at), cursor.name, "bench") for n, at in stops], bulk=True, at=ACKED)
    store.checkpoint()
    store.close()
    return config


BASELINE = """
import csv, sys
with open(sys.argv[1], "w", encoding="utf-8", newline="") as out:
    writer = csv.writer(out, delimiter=";", lineterminator="\\r\\n")
    for name in sys.argv[2:]:
        with open(name, encoding="utf-8", newline="") as handle:
            writer.writerows(csv.reader(handle, delimiter=";"))
"""


MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False)
seconds = time.perf_counter() - began
print(done.returncode, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
"""Runs a command from a small process of its own: the peak RSS is then the command's, not
that of this process (a forked child counts its parent's pages until it execs)."""


def timed(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True,
                          text=True, check=True)
    code, seconds, rss = done.stdout.split()
    if code != "0":
        raise SystemExit(f"{argv[:4]} failed with status {code}")
    return float(seconds), int(rss) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build in this folder and leave it")
    parser.add_argument("--ack-times", type=int, default=1, metavar="N",
                        help="the ACK lines' times spread over N batches (default 1)")
    parser.add_argument("--twice", type=int, default=0, metavar="N",
                        help="N numbers with a second, later ACK line (default 0)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="results-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        began = time.perf_counter()
        config = build(root, args.rows, ack_times=args.ack_times, twice=args.twice)
        print(f"built a campaign of {args.rows:,} contact rows in "
              f"{time.perf_counter() - began:.1f} s")
        output = root / "results.csv"
        spool = root / "agent" / "spool" / "1"
        parts = sorted(str(p) for p in spool.glob("SEND-*.csv"))
        command = [sys.executable, "-m", "sftpd_agent", "results", "bench", "--config",
                   str(config), "--output", str(output)]
        baseline = [sys.executable, "-c", BASELINE, str(root / "baseline.csv"), *parts]
        runs = [timed(command) for _ in range(args.runs)]
        bases = [timed(baseline) for _ in range(args.runs)]
        _, imported = timed([sys.executable, "-c", "import sftpd_agent.commands.results, "
                             "sftpd_agent.pipeline.results, sftpd_agent.config"])
        seconds = statistics.median(s for s, _ in runs)
        rss = max(r for _, r in runs)
        base = statistics.median(s for s, _ in bases)
        with output.open(encoding="utf-8", newline="") as handle:
            written = sum(1 for _ in handle) - 1
        assert written == args.rows, written
        print(f"{'':44}{'seconds':>9}{'peak RSS MB':>13}")
        print(f"{'results (median of ' + str(args.runs) + ')':44}{seconds:9.2f}{rss:13.0f}")
        print(f"{'baseline: read + write the part files (csv)':44}{base:9.2f}"
              f"{max(r for _, r in bases):13.0f}")
        print(f"{'imports alone':44}{'':9}{imported:13.0f}")
        print(f"results: {seconds:.2f} s for {args.rows:,} rows ({seconds / base:.1f} x the "
              f"baseline); target < {TARGET_SECONDS:g} s (issue 15), <= {GOAL_SECONDS:g} s "
              f"(issue 16); {rss:.0f} MB peak, {rss - imported:.0f} MB of it the campaign's "
              f"(ceiling {TARGET_MB:g} MB)")
        met = seconds < TARGET_SECONDS and rss - imported <= TARGET_MB
        print("targets met" + ("" if seconds <= GOAL_SECONDS else " (not yet the 5 s goal)")
              if met else "TARGETS MISSED")
        return 0 if met else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
