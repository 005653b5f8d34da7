"""The campaign lifecycle on the local side: take in, validate, hold or schedule, prepare.

    outbox/<name> --take--> spool/incoming/<ns>.csv        (atomic rename; the user may drop
                                                            a new file of the same name at once;
                                                            the name is kept in <ns>.name until
                                                            the file leaves the spool)
    received  --validate--> spool/<pk>/rows.csv             (the surviving rows, upload form)
    validated --plan------> held (failed/<name> + .errors.csv | .reason.txt) | scheduled
    scheduled --prepare---> spool/<pk>/<provider name>...   (suppression applied NOW, at upload
                                                            time; the exact bytes, fsynced)
              --intent----> parts recorded, state uploading (publication takes over)
    published or further -> archive/<campaign>-<pk>/        (original, uploaded files, summary)

Every step is durable before the next, and each is redone from the journal after a crash.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

from ..clock import Clock
from ..config import Settings, SettingsLike, settings_getter
from ..events import Events
from ..files import append_copy, fsync_dir, private_dir, private_file, replaced
from ..logs import bind_campaign, get_logger
from ..rules.display import archived_original, local_name, plain, shown
from ..rules.manifest import Manifest, is_manifest_name, manifest_stem
from ..rules.naming import safe_campaign_id
from ..rules.plan import campaign_from_filename, distinct_provider_names, provider_names
from ..rules.states import WAITING, CampaignState, PartState
from ..rules.upload_file import UploadWriter, plain_numbers, record_blocks, upload_records
from ..rules.validation import Validator
from ..store.journal import Store
from ..store.records import Campaign, Part, PartPlan
from . import manifests
from .intake import in_zones, row_zone, rules_from, take_in, timing_from
from .transitions import Transitions

log = get_logger("sftpd_agent.campaigns")
C = CampaignState

MANIFEST_SPOOL_SUFFIX = ".manifest"
"""A manifest taken with its contacts file ``<ns>.csv``: ``<ns>.manifest`` beside it."""
NAME_SUFFIX = ".name"
"""Beside a taken file in ``spool/incoming/``: the name it was dropped under, until the
journal has it."""

RESULTS_FILES = ("dropped.csv", "contacts.map.csv")
"""Kept in the campaign's folder for ``results`` (and archived with it): the rows the
suppression list kept out at upload, and a manifest campaign's contact rows."""

Suppressed = Callable[[], "set[str] | frozenset[str]"]


@dataclass
class Campaigns:
    """Owns a campaign's local life: taking a dropped file into the spool, recording it,
    validating and planning it (held or scheduled), preparing its provider files at upload
    time (the suppression list applied then), and archiving it once the provider has it.
    The remote side is the :class:`~.publication.Publisher`'s."""

    config: SettingsLike
    store: Store
    clock: Clock
    events: Events
    suppressed: Suppressed = frozenset

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload reaches this at once)."""
        return settings_getter(self.config)()

    def __post_init__(self) -> None:
        self.transitions = Transitions(self.store, self.clock, self.events)
        paths = self.settings.paths
        for folder in (paths.root, paths.failed, paths.archive, paths.spool, self.incoming):
            private_dir(folder)
        # The outbox is where people drop files: its mode and group are the operators' choice
        # (a group that drops files); created private when missing, never changed.
        if not paths.outbox.exists():
            private_dir(paths.outbox)

    @property
    def incoming(self) -> Path:
        return self.settings.paths.spool / "incoming"

    def folder(self, campaign: Campaign | int) -> Path:
        pk = campaign if isinstance(campaign, int) else campaign.id
        return self.settings.paths.spool / str(pk)

    def part_file(self, part: Part) -> Path:
        return self.folder(part.campaign) / part.remote_name

    # -- taking in -----------------------------------------------------------------------

    def take(self, dropped: Path) -> Campaign:
        """:meth:`move_in`, then :meth:`record`."""
        return self.record(self.move_in(dropped))

    def move_in(self, dropped: Path, contacts: Path | None = None) -> Path:
        """Move a complete entry out of the outbox into the spool (to be recorded).

        The spool name is a sequence number, never derived from the dropped name (which may
        be 255 bytes, undecodable, or hold a newline); the name itself is kept beside it
        until the journal has it. A symbolic link is moved as a link, never followed.

        A manifest moves to ``<ns>.manifest`` first, then its ``contacts`` file (when there
        is one) to ``<ns>.csv``: a crash between the two leaves a manifest without its
        contacts, which :meth:`recover` puts back in the outbox.
        """
        stamp = str(time.time_ns())
        label = self.incoming / f"{stamp}{NAME_SUFFIX}"
        fd = private_file(label)
        with os.fdopen(fd, "wb") as out:
            out.write(os.fsencode(dropped.name))
            out.flush()
            os.fsync(out.fileno())
        target = self.incoming / f"{stamp}.csv"
        first = target if not is_manifest_name(dropped.name) else target.with_suffix(
            MANIFEST_SPOOL_SUFFIX)
        try:
            dropped.rename(first)
        except BaseException:
            label.unlink(missing_ok=True)
            raise
        if first != target and contacts is not None:
            contacts.rename(target)
        fsync_dir(self.incoming)
        fsync_dir(dropped.parent)
        return target

    def recover(self) -> list[Path]:
        """Files taken before a crash but never recorded, in the order they were taken.

        Names left without their file (a crash between the two writes) are removed; a
        manifest taken without the contacts it was taken with goes back to the outbox."""
        known = self.store.sources()
        found = []
        for path in sorted(self.incoming.iterdir()):
            if path.name.endswith(NAME_SUFFIX):
                source = path.with_name(path.stem + ".csv")
                if not os.path.lexists(source) and source.name not in known:
                    manifest = source.with_suffix(MANIFEST_SPOOL_SUFFIX)
                    if manifest.exists():
                        back = self.settings.paths.outbox / self.dropped_name(source)
                        if not os.path.lexists(back):
                            manifest.replace(back)
                            log.warning("manifest_put_back", file=shown(back.name),
                                        detail="taken without its contacts file (a crash)")
                    _forget(path)
            elif path.suffix == ".csv" and path.name not in known and (
                    path.is_file() or path.is_symlink()):
                found.append(path)
        return found

    @staticmethod
    def manifest_of(source: Path) -> Path:
        """Where a spool file's manifest is, when it came with one."""
        return source.with_suffix(MANIFEST_SPOOL_SUFFIX)

    def dropped_name(self, source: Path) -> str:
        """The name ``source`` had in the outbox (a ``str`` with surrogate escapes)."""
        try:
            return os.fsdecode(_label(source).read_bytes())
        except FileNotFoundError:  # taken by an older version: <ns>-<name>
            return source.name.split("-", 1)[-1]

    def record(self, source: Path) -> Campaign:
        """A file in the spool, recorded in the journal: state ``received``."""
        dropped = self.dropped_name(source)
        name = shown(dropped)
        # The id from the name itself: an escape's letters (\xe9) are not the user's.
        campaign_id, _, _ = campaign_from_filename(plain(dropped), timing_from(self.settings))
        if self.manifest_of(source).exists():
            manifest = _manifest(self.manifest_of(source), dropped)
            if manifest is not None:
                campaign_id = manifest.campaign or safe_campaign_id(
                    manifest_stem(plain(dropped)))[0] or campaign_id
        return self.transitions.received(campaign_id=campaign_id or "-", file=name,
                                         source=source.name)

    def set_aside(self, source: Path, reason: str) -> Path:
        """A spool file that could not even be recorded: to ``failed/`` with its reason, so
        that start-up never trips on it again."""
        failed = self.settings.paths.failed
        try:
            name = self.dropped_name(source)
        except (OSError, ValueError):
            name = source.name
        target = failed / local_name(name, room=len(".reason.txt"), tag=source.stem)
        manifest = self.manifest_of(source)
        if manifest.exists():  # the manifest under its name, its contacts beside it
            manifest.replace(target)
            if os.path.lexists(source):
                source.replace(failed / local_name(f"{source.stem}.contacts.csv"))
        else:
            source.replace(target)
        _forget(_label(source))
        self._write_reason(target, reason)
        return target

    @staticmethod
    def _write_reason(held: Path, reason: str) -> None:
        fd = private_file(held.with_name(held.name + ".reason.txt"))
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(reason + "\n")

    # -- validation and planning ---------------------------------------------------------

    def validate(self, campaign: Campaign) -> Campaign:
        """received (or validated, after a crash) -> validated -> held | scheduled."""
        with bind_campaign(campaign.campaign_id):
            source = self.incoming / campaign.source
            folder = private_dir(self.folder(campaign))
            rows_path = folder / "rows.csv"
            errors_path = folder / "errors.csv"
            manifest = self.manifest_of(source)
            described = None
            if manifest.exists():
                try:
                    described = manifests.read(manifest, source, self.settings,
                                               name=self.dropped_name(source))
                except manifests.ManifestHeld as exc:
                    return self.hold(campaign, str(exc))
            rows_path.unlink(missing_ok=True)  # a new file: a part may be a link to the old
            fd = private_file(rows_path)
            with os.fdopen(fd, "wb") as out:
                writer = UploadWriter(out)
                now = self.clock()
                if described is not None:
                    intake, _ = manifests.take_in_manifest(
                        described, folder, now=now, on_row=writer.write, errors_to=errors_path,
                        map_to=folder / manifests.MAP_FILE)
                    (folder / manifests.RENDERED_FILE).unlink(missing_ok=True)
                else:
                    intake = take_in(
                        source, self.settings, now=now,
                        name=plain(self.dropped_name(source)),
                        validator=Validator(rules_from(self.settings)), rows_to=writer,
                        scratch=folder, errors_to=errors_path,
                    )
                writer.close()
                out.flush()
                os.fsync(out.fileno())
            summary, plan = intake.summary, intake.plan
            send_at, upload_at = plan.send_at, plan.upload_at
            if intake.groups:  # the first group's time: every file goes up together
                send_at = min(g.send_at for g in intake.groups)
                lead = datetime.timedelta(minutes=self.settings.campaign.upload_lead_minutes)
                upload_at = max(now, send_at - lead)
            campaign = self.transitions.campaign(
                campaign, C.VALIDATED, campaign_id=plan.campaign_id or "-",
                rows=summary.rows, valid=summary.valid, invalid=summary.invalid,
                duplicates=summary.duplicates, segments=summary.segments,
                send_at=send_at, upload_at=upload_at, summary=intake.as_dict(),
                say={"rows": summary.rows, "valid": summary.valid, "invalid": summary.invalid,
                     "duplicates": summary.duplicates, "segments": summary.segments})
            if plan.name_notes:
                log.warning("campaign_name_changed", notes=list(plan.name_notes))
            if intake.foreign:
                log.warning("campaign_foreign_numbers", rows=intake.foreign,
                            dropped=intake.foreign_dropped,
                            detail="numbers of other countries: sent at the campaign's time"
                            if not intake.foreign_dropped else "dropped (foreign = drop)")
            if intake.hold_reason:
                return self.hold(campaign, intake.hold_reason)
            say: dict[str, object] = {"send_at": send_at.isoformat(),
                                      "upload_at": upload_at.isoformat(), "note": plan.note}
            if len(intake.groups) > 1:
                say["groups"] = [{"zones": list(g.zones), "rows": g.rows,
                                  "send_at": g.send_at.isoformat()} for g in intake.groups]
            return self.transitions.campaign(campaign, C.SCHEDULED, say=say)

    def hold(self, campaign: Campaign, reason: str) -> Campaign:
        """Move the original to failed/ with its errors or reason; the campaign is held."""
        failed = self.settings.paths.failed
        room = len(".errors.csv")
        name = local_name(campaign.file, room=room)
        if os.path.lexists(failed / name):
            name = local_name(campaign.file, room=room, tag=str(campaign.id))
        errors = self.folder(campaign) / "errors.csv"
        # The reason first (the one write that needs space): a full disk leaves the file in
        # the spool, the hold to be tried again, nothing half-moved.
        if errors.exists() and campaign.invalid:
            errors.replace(failed / f"{name}.errors.csv")
        else:
            self._write_reason(failed / name, reason)
        self._move_originals(campaign, failed, name)
        fsync_dir(failed)
        shutil.rmtree(self.folder(campaign), ignore_errors=True)
        return self.transitions.campaign(
            campaign, C.HELD, detail=reason, reason=reason,
            say={"reason": reason, "file": shown(str(failed / name))})

    def _move_originals(self, campaign: Campaign, folder: Path, name: str) -> None:
        """The dropped file(s) from the spool into ``folder`` (failed/ or the archive): the
        file as ``name``; a manifest's contacts under the name the manifest gives them."""
        source = self.incoming / campaign.source
        manifest = self.manifest_of(source)
        if manifest.exists():
            manifest.replace(folder / name)
            read = _manifest(folder / name, name)
            contacts = read.contacts if read else f"{campaign.campaign_id}.contacts.csv"
            if os.path.lexists(source):
                target = folder / local_name(contacts, room=len(".errors.csv"))
                if os.path.lexists(target):
                    target = folder / local_name(contacts, room=len(".errors.csv"),
                                                 tag=str(campaign.id))
                source.replace(target)
        elif os.path.lexists(source):
            source.replace(folder / name)
        _forget(_label(source))

    # -- preparing the upload ------------------------------------------------------------

    def due(self) -> list[Campaign]:
        """Campaigns with provider files to prepare now: scheduled ones at their upload time,
        and those on their way whose next group of send times is due."""
        return self.store.due(self.clock())

    def prepare(self, campaign: Campaign) -> list[Part] | None:
        """The groups of send times due now: the suppression list applied, their provider
        files written, the intent recorded. A campaign whose recipients are in several time
        zones has one group per send time, each prepared at its own upload time: a STOP that
        arrives before a group's time keeps that number out of it.

        None when nothing was recorded (the campaign held: stale, nothing left, no free
        name; or the due groups had nobody left and later ones wait)."""
        with bind_campaign(campaign.campaign_id):
            now = self.clock()
            settings = self.settings
            stale = datetime.timedelta(minutes=settings.campaign.stale_after_minutes)
            lead = datetime.timedelta(minutes=settings.campaign.upload_lead_minutes)
            scheduled = campaign.state == C.SCHEDULED
            groups = _groups(campaign)
            waiting = [g for g in groups if g.waiting]
            due = [g for g in waiting if g.send_at - lead <= now]
            if scheduled and not due and waiting:
                due = waiting[:1]  # its upload time came (an upload lead changed since)
            skipped: dict[int, str] = {}
            for group in due:
                if now > group.send_at + stale:
                    when = group.send_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
                    skipped[group.index] = (f"stale: not uploaded by its send time {when} "
                                            "+ stale_after_minutes")
            live = [g for g in due if g.index not in skipped]
            later = [g for g in waiting if g not in due]
            if scheduled and not live and not later:
                self.hold(campaign, next(iter(skipped.values()), "nothing to send"))
                return None
            suppressed = self.suppressed()
            split = self._split(campaign, live, suppressed)
            if scheduled and not later and not any(split.kept):
                self._discard(split)
                self.hold(campaign, "no recipient left after the suppression list")
                return None
            try:
                named = self._names(campaign, live, split.kept)
            except ValueError as exc:  # every suffix within 20 characters is used
                self._discard(split)
                reason = (f"no free provider name for this id and time ({exc}): drop the "
                          "file again under another name or time")
                if scheduled and not later:
                    self.hold(campaign, reason)
                    return None
                named = []
                skipped.update({g.index: reason for g in live})
            plans = self._name_parts(campaign, split, named)
            self._record_dropped(campaign, live, split.dropped)
            fsync_dir(self.folder(campaign))
            summary = _settled(campaign, live, split, named=named, skipped=skipped, now=now)
            next_at = min((g.send_at - lead for g in later), default=None)
            for index, reason in skipped.items():
                log.warning("campaign_group_skipped", group=index, reason=reason)
            total = campaign.suppressed + len(split.dropped)
            if plans:
                return self.transitions.uploading(
                    campaign, plans, suppressed=total, summary=summary, next_upload_at=next_at)
            if scheduled:  # nobody left in the groups due; later ones wait
                self.store.update_campaign(campaign.id, summary=summary, suppressed=total,
                                           upload_at=next_at)
            else:
                self.store.update_campaign(campaign.id, summary=summary, suppressed=total,
                                           next_upload_at=next_at)
                self.transitions.follow_parts(self.store.campaign(campaign.id))
            return None

    def _split(self, campaign: Campaign, groups: list[_Group],
               suppressed: set[str] | frozenset[str]) -> _Split:
        """One pass over the surviving rows: each group's rows not on the suppression list
        into files of ``max_rows_per_file`` rows under temporary names (hashed as they are
        written), the suppressed ones noted. One group (the common case): :func:`_split_whole`."""
        per_file = self.settings.campaign.max_rows_per_file
        folder = self.folder(campaign)
        if len(groups) == 1:
            return _split_whole(folder, groups[0], per_file, suppressed)
        which = {zone: i for i, g in enumerate(groups) for zone in g.zones or ()}
        files: list[list[_PartFile]] = [[] for _ in groups]
        dropped: list[tuple[str, str]] = []
        dropped_at = [0] * len(groups)
        if groups:
            for idremote, msisdn, record in _records(folder / "rows.csv"):
                at = which.get(row_zone(msisdn))
                if at is None:
                    continue
                if msisdn in suppressed:
                    dropped.append((idremote, msisdn))
                    dropped_at[at] += 1
                    continue
                chunks = files[at]
                if not chunks or chunks[-1].rows >= per_file:
                    chunks.append(_PartFile(folder / f".prepare-{groups[at].index}-"
                                                      f"{len(chunks) + 1}.tmp"))
                chunks[-1].add(record)
        for chunks in files:
            for chunk in chunks:
                chunk.close()
        return _Split(files, dropped, dropped_at)

    @staticmethod
    def _discard(split: _Split) -> None:
        for chunks in split.files:
            for chunk in chunks:
                chunk.path.unlink(missing_ok=True)

    def _name_parts(self, campaign: Campaign, split: _Split,
                    named: list[tuple[int, tuple[str, ...]]]) -> list[PartPlan]:
        """The temporary files renamed to their provider names: the intent's plans."""
        plans = []
        for at, names in named:
            for chunk, name in zip(split.files[at], names, strict=True):
                chunk.path.replace(self.folder(campaign) / name)
                plans.append(PartPlan(name, chunk.size, chunk.sha256, chunk.rows))
        self._discard(split)  # what no name took (a group left out)
        return plans

    def _record_dropped(self, campaign: Campaign, groups: list[_Group],
                        dropped: list[tuple[str, str]]) -> None:
        """``dropped.csv``: the rows the suppression list kept out, for ``results``; the
        lines of groups prepared earlier kept, those of the groups prepared now written
        anew (a prepare redone after a crash writes the same)."""
        path = self.folder(campaign) / "dropped.csv"
        now_zones = {zone for g in groups for zone in g.zones or ()}
        every_row = any(g.zones is None for g in groups)
        kept: list[list[str]] = []
        if path.exists():
            with path.open(encoding="utf-8", newline="") as handle:
                kept = [row for row in list(csv.reader(handle, delimiter=";"))[1:]
                        if not every_row and row_zone(row[1]) not in now_zones]
        if not kept and not dropped:
            return
        with replaced(path, newline="") as out:
            writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
            writer.writerow(["idremote", "msisdn", "reason"])
            writer.writerows(kept)
            writer.writerows([idremote, msisdn, "suppressed"] for idremote, msisdn in dropped)

    def _names(
        self, campaign: Campaign, groups: list[_Group], kept: list[int]
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Each group's provider names (by its position in ``groups``), none already used by
        another campaign in the journal (two files with the same id and time: the second
        gets a suffix) nor by another group."""
        timing = timing_from(self.settings)
        chosen: set[str] = set()
        named = []
        for at, (group, rows) in enumerate(zip(groups, kept, strict=True)):
            if rows == 0:
                continue
            names = distinct_provider_names(
                campaign.campaign_id, group.send_at, rows, timing,
                lambda name: name in chosen or self.store.name_taken(name))
            first = provider_names(campaign.campaign_id, group.send_at, rows, timing)
            if names != first:
                log.warning("campaign_renamed", remote_names=list(names),
                            detail=f"{first[0]} is already used by another campaign")
            chosen.update(names)
            named.append((at, names))
        return named

    # -- after publication ---------------------------------------------------------------

    def archive_folder(self, campaign: Campaign) -> Path:
        stamp = campaign.received_at.astimezone(self.settings.tz).strftime("%Y%m%d-%H%M%S")
        return self.settings.paths.archive / f"{stamp}-{campaign.campaign_id}-{campaign.id}"

    def archive(self, campaign: Campaign) -> Path | None:
        """Keep the original, the uploaded files and a summary; free the spool."""
        folder = self.folder(campaign)
        if not folder.exists():
            return None
        target = private_dir(self.archive_folder(campaign))
        kept = local_name(campaign.file, room=len(".errors.csv"))
        parts = self.store.parts(campaign.id)
        self._move_originals(campaign, target,
                             archived_original(campaign.file, {p.remote_name for p in parts}))
        for part in parts:
            if self.part_file(part).exists():
                self.part_file(part).replace(target / part.remote_name)
        errors = folder / "errors.csv"
        if errors.exists():
            errors.replace(target / f"{kept}.errors.csv")
        for kept_for_results in RESULTS_FILES:
            if (folder / kept_for_results).exists():
                (folder / kept_for_results).replace(target / kept_for_results)
        summary = {
            **campaign.summary,
            "state": str(campaign.state),
            "remote_names": [p.remote_name for p in parts],
            "suppressed": campaign.suppressed,
            "uploaded": [{"name": p.remote_name, "rows": p.rows, "bytes": p.size,
                          "sha256": p.sha256} for p in parts],
        }
        self._write_summary(target, campaign, summary)
        shutil.rmtree(folder, ignore_errors=True)
        return target

    def record_report(self, campaign: Campaign) -> None:
        """A delivery report arrived: the archived summary gets its figures."""
        target = self.archive_folder(campaign)
        path = target / f"{campaign.campaign_id}.summary.json"
        if not path.exists():
            return
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary.update(state=str(campaign.state), acks=campaign.summary.get("acks", {}))
        self._write_summary(target, campaign, summary)

    @staticmethod
    def _write_summary(target: Path, campaign: Campaign, summary: dict[str, object]) -> None:
        """``<campaign>.summary.json`` in ``target``, replaced atomically."""
        with replaced(target / f"{campaign.campaign_id}.summary.json") as out:
            json.dump(summary, out, ensure_ascii=False, indent=2, default=str)

    def unarchived(self) -> list[Campaign]:
        """Campaigns on the provider's side whose spool is still here.

        Found from the spool's folders (``spool/<pk>``: a campaign not yet held or archived),
        never by reading every campaign of the journal: each poll asks this, and its cost
        follows what is in flight, not the history."""
        try:
            names = [entry.name for entry in self.settings.paths.spool.iterdir()]
        except FileNotFoundError:
            return []
        pks = [int(name) for name in names
               if name.isascii() and name.isdigit() and name == str(int(name))]
        return [c for c in self.store.campaigns_among(pks)
                if c.state not in WAITING | {C.HELD}
                and c.next_upload_at is None  # a group still to go reads the spool's rows
                and self.folder(c).exists()
                and all(p.state != PartState.UPLOADING for p in self.store.parts(c.id))]


@dataclass(frozen=True)
class _Group:
    """A campaign's group at upload: its position in the summary, its zones (None: every
    row), its send time, and whether it is still to prepare."""

    index: int
    zones: frozenset[str] | None
    send_at: datetime.datetime
    waiting: bool = True


def _groups(campaign: Campaign) -> list[_Group]:
    """The groups validation recorded (one per distinct send time of the recipients' zones),
    or the whole campaign at its send time (transactional, or recorded before groups)."""
    recorded = campaign.summary.get("groups") or []
    if not recorded:
        assert campaign.send_at is not None  # noqa: S101 - scheduled campaigns have one
        return [_Group(0, None, campaign.send_at, campaign.state == C.SCHEDULED)]
    return [_Group(i, frozenset(g["zones"]), datetime.datetime.fromisoformat(g["send_at"]),
                   g.get("state", "waiting") == "waiting"
                   and (campaign.state == C.SCHEDULED or campaign.next_upload_at is not None))
            for i, g in enumerate(recorded)]


def _settled(campaign: Campaign, prepared: list[_Group], split: _Split, *,
             named: list[tuple[int, tuple[str, ...]]], skipped: dict[int, str],
             now: datetime.datetime) -> dict[str, object]:
    """The campaign's summary with the groups prepared now marked (what went, under which
    names, how many the suppression list kept out) and those skipped with their reason."""
    summary = dict(campaign.summary)
    recorded = [dict(g) for g in summary.get("groups") or []]
    if not recorded:
        return summary
    names = dict(named)
    for at, group in enumerate(prepared):
        entry = recorded[group.index]
        entry.update(state="uploaded" if at in names else "empty",
                     rows_sent=sum(c.rows for c in split.files[at]),
                     suppressed=split.dropped_in(at), prepared_at=now.isoformat())
        if at in names:
            entry["remote_names"] = list(names[at])
    for index, reason in skipped.items():
        recorded[index].update(state="skipped", reason=reason)
    summary["groups"] = recorded
    return summary


def _split_whole(folder: Path, group: _Group, per_file: int,
                 suppressed: set[str] | frozenset[str]) -> _Split:
    """:meth:`Campaigns._split` for one group (the common case), a block of records of
    ``rows.csv`` at a time: a block whose numbers are all the group's and none suppressed goes
    to its file whole, as a range of ``rows.csv`` the kernel copies (its numbers found by a
    few calls in C when it holds no quoted message), a block of plain records with some to
    leave out as the ranges around them (copied here when they are many); any other block
    record by record. A file that would be ``rows.csv`` whole (nothing suppressed, one file)
    is a hard link to it: a million rows cost one read, neither a write nor an fsync."""
    source = folder / "rows.csv"
    zones = group.zones
    files: list[_PartFile] = []
    dropped: list[tuple[str, str]] = []

    def room() -> _PartFile:
        if not files or files[-1].rows >= per_file:
            name = f".prepare-{group.index}-{len(files) + 1}.tmp"
            files.append(_PartFile(folder / name, source))
        return files[-1]

    with source.open("rb") as handle:
        at = 0
        for block in record_blocks(handle):
            numbers = plain_numbers(block)
            records = None
            if numbers is None:  # quoted messages: read record by record
                records = list(_block_records(source, block))
                numbers = [msisdn for _, msisdn, _ in records]
            out, mixed = _left_out(numbers, suppressed, zones)
            kept = len(numbers) - len(out)
            if kept and (not out or records is None):
                chunk = room()
                if chunk.rows + kept <= per_file:
                    if out:  # plain records (a line each): the lines around them
                        spans, suppressed_here = _cut_out(block, numbers, out, mixed)
                        view = memoryview(block)
                        if len(spans) > MAX_SPANS:  # many holes: copied here, joined
                            chunk.add(b"".join(view[start:end] for start, end, _ in spans),
                                      kept)
                        else:
                            for start, end, rows in spans:
                                chunk.add_range(at + start, view[start:end], rows)
                        dropped += suppressed_here
                    else:
                        chunk.add_range(at, block, kept)
                    at += len(block)
                    continue
            for idremote, msisdn, record in (
                    _block_records(source, block) if records is None else records):
                if zones is not None and row_zone(msisdn) not in zones:
                    continue  # another group's
                if msisdn in suppressed:
                    dropped.append((idremote, msisdn))
                else:
                    room().add(record)
            at += len(block)
    for chunk in files:
        chunk.close()
    return _Split([files], dropped, [len(dropped)])


def _left_out(numbers: list[str], suppressed: set[str] | frozenset[str],
              zones: frozenset[str] | None) -> tuple[list[int], frozenset[str] | None]:
    """The places in ``numbers`` of those not sent: suppressed, or of no zone of ``zones``;
    and ``zones`` if some are of none of them, else None (all suppressed)."""
    if zones is None or in_zones(numbers, zones):
        hit = suppressed.intersection(numbers)
        return [at for at, msisdn in enumerate(numbers) if msisdn in hit] if hit else [], None
    return [at for at, msisdn in enumerate(numbers)
            if msisdn in suppressed or row_zone(msisdn) not in zones], zones


def _cut_out(block: bytes, numbers: list[str], out: list[int], zones: frozenset[str] | None,
             ) -> tuple[list[tuple[int, int, int]], list[tuple[str, str]]]:
    """A block of plain records (a line each) without those at ``out`` (sorted): the spans
    of the others, (start, end, records); (IDREMOTE, MSISDN) of those the suppression list
    keeps out: all, or those of ``zones`` when given (the rest are another group's)."""
    lines = block.split(b"\n")  # the last is empty: the block ends with a line end
    ends = list(accumulate(map((1).__add__, map(len, lines))))  # the end of each line
    spans = []
    dropped = []
    first = 0  # the first line of the next span
    for line in out:
        if line > first:
            spans.append((ends[first - 1] if first else 0, ends[line - 1], line - first))
        first = line + 1
        if zones is None or row_zone(numbers[line]) in zones:
            dropped.append((lines[line].split(b";", 1)[0].decode("ascii"), numbers[line]))
    if first < len(numbers):
        spans.append((ends[first - 1] if first else 0, len(block), len(numbers) - first))
    return spans, dropped


def _block_records(source: Path, block: bytes) -> Iterator[tuple[str, str, bytes]]:
    try:
        yield from upload_records(io.BytesIO(block))
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


class _PartFile:
    """A provider file being written in one pass: hashed as written, fsynced. Its bytes are
    records, or ranges of the campaign's ``rows.csv`` (``source``) copied by the kernel; a
    file that is ``source`` whole is a hard link to it (written and fsynced already)."""

    def __init__(self, path: Path, source: Path | None = None) -> None:
        self.path = path
        self._source = source
        self._reader: BinaryIO | None = None  # ``source``, opened at the first range
        self._out: BinaryIO | None = None  # opened at the first write
        self._hash = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._range: tuple[int, int] | None = None  # of ``source``, not written yet
        self.rows = 0
        self.size = 0

    def add(self, records: bytes, rows: int = 1) -> None:
        """``records``, ``rows`` of them."""
        self._copy_range()
        self._buffer.append(records)
        self._buffered += len(records)
        self.rows += rows
        if self._buffered >= BUFFER_BYTES:
            self._flush()

    def add_range(self, start: int, data: bytes | memoryview, rows: int) -> None:
        """``data``, ``rows`` records found at ``start`` in ``source``."""
        self._flush()
        if self._range is not None and self._range[1] != start:
            self._copy_range()
        begin = start if self._range is None else self._range[0]
        self._range = (begin, start + len(data))
        self._hash.update(data)
        self.rows += rows
        self.size += len(data)

    def _file(self) -> BinaryIO:
        if self._out is None:
            # A new file, never one opened through: a crash's leftover may be a link to
            # ``rows.csv``, which truncating would empty.
            self.path.unlink(missing_ok=True)
            self._out = os.fdopen(private_file(self.path), "wb")
        return self._out

    def _flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._hash.update(data)
        self._file().write(data)
        self.size += len(data)

    def _copy_range(self) -> None:
        if self._range is None:
            return
        assert self._source is not None  # noqa: S101 - ranges come with a source
        start, end = self._range
        self._range = None
        if self._reader is None:
            self._reader = self._source.open("rb")
        append_copy(self._reader, self._file(), start, end - start)

    def close(self) -> None:
        try:
            if self._out is None and not self._buffer and self._range is not None and (
                    self._range[0] == 0 and self._source is not None
                    and self._range[1] == self._source.stat().st_size
                    and _linked(self._source, self.path)):
                self._range = None
                return
            self._flush()
            self._copy_range()
            out = self._file()
            if not out.closed:
                out.flush()
                os.fsync(out.fileno())
                out.close()
        finally:
            if self._reader is not None:
                self._reader.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


BUFFER_BYTES = 1 << 20
"""Records gathered before they are written."""
MAX_SPANS = 32
"""Ranges of a block of ``rows.csv`` left for the kernel to copy, at most: a block with more
holes (numbers suppressed) is copied here."""


def _linked(source: Path, path: Path) -> bool:
    """``path`` made a hard link to ``source`` (a leftover of a crash replaced); False where
    the file system has no hard links."""
    path.unlink(missing_ok=True)
    try:
        os.link(source, path)
    except OSError:
        return False
    return True


@dataclass
class _Split:
    """What one pass over the surviving rows gave: per group, its files; the rows the
    suppression list kept out (IDREMOTE, MSISDN)."""

    files: list[list[_PartFile]]
    dropped: list[tuple[str, str]]
    dropped_at: list[int]

    @property
    def kept(self) -> list[int]:
        return [sum(c.rows for c in chunks) for chunks in self.files]

    def dropped_in(self, at: int) -> int:
        return self.dropped_at[at]


def _records(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """The records of a ``rows.csv`` as written (IDREMOTE, MSISDN, the record's exact bytes)."""
    with path.open("rb") as handle:
        try:
            yield from upload_records(handle)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _manifest(path: Path, dropped: str) -> Manifest | None:
    """A spool manifest, or None when it cannot be read (validation holds it, saying why)."""
    try:
        return manifests.load(path, shown(dropped))
    except ValueError:  # ManifestHeld, or what a strange file may raise on the way
        return None


def _label(source: Path) -> Path:
    """Where the dropped name of spool file ``<ns>.csv`` is kept: ``<ns>.name``."""
    return source.with_name(source.name.removesuffix(".csv") + NAME_SUFFIX)


def _forget(label: Path) -> None:
    """Remove a kept name, if it can be: a leftover is harmless, a failure here is not."""
    with contextlib.suppress(OSError):
        label.unlink(missing_ok=True)
