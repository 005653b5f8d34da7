"""A campaign described by a manifest: a contact export and a message template, taken in.

    <name>.campaign.toml + contacts.csv
        --read, sniff, parse the template--> held at once, before any row is read, when the
                                             manifest, the contacts' columns or a placeholder
                                             is wrong (one line naming the file and key)
        --render--> a provider-shaped file (IDREMOTE;MSISDN;OADC;MSG, one row per contact)
                    and contacts.map.csv (line;crm_id;idremote;phone: for ``results``)
        --take_in--> the same validation and planning as a dropped provider file, its errors
                     in the contact file's lines and column headers

The manifest's ``marketing``, ``stop_mention`` and ``sender`` override the account's
``[campaign]`` keys for this campaign, checked as they are at start-up.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ..config import CampaignSettings, Settings
from ..errors import InputError
from ..rules.contacts import (
    ContactsFormat,
    LineMap,
    Rendered,
    render_part,
    sniff,
    write_provider_rows,
)
from ..rules.gsm import count
from ..rules.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    is_manifest_name,
    manifest_stem,
    parse_manifest,
)
from ..rules.masking import mask
from ..rules.template import Slot, Template, TemplateError
from ..rules.validation import Row, RowError, RowSink, Validator
from .entries import open_regular, refusal
from .intake import Intake, rules_from, take_in

MAP_FILE = "contacts.map.csv"
RENDERED_FILE = "rendered.csv"


class ManifestHeld(ValueError):
    """The campaign cannot go as described: the one-line reason it is held."""


@dataclass(frozen=True)
class Described:
    """A manifest read and checked against its contacts file, before any row is read."""

    manifest: Manifest
    path: Path
    name: str             # the manifest's file name, as dropped
    contacts: Path
    settings: Settings    # the account's, with the manifest's overrides
    format: ContactsFormat
    template: Template

    @property
    def plan_name(self) -> str:
        """The file name the campaign is planned under, as if dropped in the provider's
        shape: ``SEND-<service>-<date>-<time>-<campaign>.csv`` when the manifest gives a
        time (the same rules: stale, daylight saving, window), else ``<campaign>.csv``."""
        campaign = self.manifest.campaign or (
            manifest_stem(self.name) if is_manifest_name(self.name) else Path(self.name).stem)
        when = self.manifest.send_at
        if when is None:
            return f"{campaign}.csv"
        if when.tzinfo is not None:
            when = when.astimezone(self.settings.tz)
        return f"SEND-{self.settings.service_id}-{when:%Y%m%d-%H%M}-{campaign}.csv"


def load(path: Path, name: str) -> Manifest:
    """The manifest at ``path`` (dropped as ``name``), a link never followed;
    :class:`ManifestHeld` with the reason when it cannot be read or is not valid."""
    try:
        with open_regular(path) as stream:
            return parse_manifest(stream.read(MAX_MANIFEST_BYTES + 1), name)
    except ManifestError as exc:
        raise ManifestHeld(str(exc)) from None
    except OSError as exc:
        raise ManifestHeld(f"{name}: cannot be read: {getattr(exc, 'reason', None) or exc}") \
            from None


def read(manifest_path: Path, contacts: Path | None, settings: Settings, *,
         name: str | None = None) -> Described:
    """The manifest at ``manifest_path`` (dropped as ``name``) and its ``contacts`` file
    (None: beside the manifest, under the name it gives), checked; :class:`ManifestHeld`
    with the reason when the campaign cannot go."""
    name = name or manifest_path.name
    manifest = load(manifest_path, name)
    if contacts is None:
        contacts = manifest.contacts_path(manifest_path)
    return describe(manifest, manifest_path, contacts, settings, name=name)


def describe(manifest: Manifest, path: Path, contacts: Path, settings: Settings, *,
             name: str | None = None) -> Described:
    """``manifest`` (at ``path``, or made up by ``check``/``submit``) checked against its
    ``contacts`` file: the columns found and every placeholder resolved, before any row is
    read; :class:`ManifestHeld` with the reason otherwise."""
    name = name or path.name
    if not os.path.lexists(contacts):
        raise ManifestHeld(f"{name}: its contacts file {manifest.contacts} is not in the outbox "
                           "(drop it beside the manifest, then the manifest again)")
    refused = refusal(contacts)
    if refused is not None:
        raise ManifestHeld(f"{manifest.contacts}: cannot be read: {refused}")
    overridden = _settings(settings, manifest, name)
    try:
        fmt = sniff(contacts, delimiter=manifest.delimiter_char, phone=manifest.columns.phone,
                    id_column=manifest.columns.id)
    except InputError as exc:
        raise ManifestHeld(f"{manifest.contacts}: {exc.reason}") from None
    try:
        template = Template.parse(manifest.message, fmt.headers)
    except TemplateError as exc:
        raise ManifestHeld(f"{name}: message: {exc}") from None
    return Described(manifest, path, name, contacts, overridden, fmt, template)


def _settings(settings: Settings, manifest: Manifest, name: str) -> Settings:
    """The account's settings with the manifest's ``marketing``, ``stop_mention`` and
    ``sender`` (as ``default_sender``), validated as the configuration is."""
    updates: dict[str, object] = {}
    if manifest.marketing is not None:
        updates["marketing"] = manifest.marketing
    if manifest.stop_mention is not None:
        updates["stop_mention"] = manifest.stop_mention
    if manifest.sender is not None:
        updates["default_sender"] = manifest.sender
    if not updates:
        return settings
    try:
        campaign = CampaignSettings.model_validate(
            {**settings.campaign.model_dump(exclude_unset=False), **updates})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "manifest"
        key = {"default_sender": "sender"}.get(key, key)
        raise ManifestHeld(f"{name}: {key}: {error['msg'].removeprefix('Value error, ')}") \
            from None
    return settings.model_copy(update={"campaign": campaign})


@dataclass
class Rendering:
    """A contact export rendered to a provider-shaped file; for ``check``'s preview, its
    first rows and its longest message."""

    path: Path
    lines: LineMap
    format: ContactsFormat
    rejected: list[RowError]   # rows that never became provider rows, by line
    first: list[Rendered]
    longest: Rendered | None

    def translate(self, error: RowError) -> RowError:
        return self.lines.translate(error, self.format)


PREVIEW_ROWS = 5


def render_to(described: Described, folder: Path, *, map_to: Path | None = None) -> Rendering:
    """Render ``described``'s contacts into ``folder/rendered.csv`` (and the contact map to
    ``map_to``, for ``results``): on every core for a big file
    (:mod:`.render_parallel`, the same files), else in one pass over the contacts."""
    from .render_parallel import render_in_parallel  # noqa: PLC0415 - it imports this module

    target = folder / RENDERED_FILE
    parallel = render_in_parallel(described, target, map_to)
    if parallel is not None:
        return parallel
    fmt = described.format
    with target.open("wb") as out, open_contact_map(map_to) as contact_map:
        part = render_part(described.contacts, fmt, described.template, out,
                           contact_map=contact_map, preview=PREVIEW_ROWS)
    return Rendering(target, part.lines, fmt, list(part.rejected), part.first, part.longest)


MAP_HEADER = ("line", "crm_id", "idremote", "phone")


@contextmanager
def open_contact_map(path: Path | None) -> Iterator[TextIO | None]:
    """``contacts.map.csv`` (for ``results``) opened to be written, private, its header row
    ``line;crm_id;idremote;phone`` in; its rows, one per contact row, come after
    (:func:`.contacts.render_part` writes them); flushed to disk at the end. None: no map."""
    if path is None:
        yield None
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";", lineterminator="\r\n").writerow(MAP_HEADER)
        yield handle
        handle.flush()
        os.fsync(fd)


def take_in_manifest(
    described: Described, folder: Path, *, now: datetime.datetime,
    on_row: RowSink | None = None, errors_to: Path | None = None, map_to: Path | None = None,
    progress: TextIO | None = None, suppressed: set[str] | None = None,
) -> tuple[Intake, Rendering]:
    """Render, then validate and plan as a dropped provider file would be (the daemon and
    ``check`` alike); the summary names the manifest.

    When no row is kept (``check``: neither ``on_row`` nor ``map_to``), a big file is
    rendered and checked at once on every core, nothing written
    (:func:`.render_parallel.check_in_parallel`); else rendered to ``folder`` first."""
    from .render_parallel import check_in_parallel  # noqa: PLC0415 - it imports this module

    settings = described.settings
    validator = Validator(rules_from(settings), suppressed=suppressed)
    checked = None
    if on_row is None and map_to is None:
        both = check_in_parallel(described, validator, folder / RENDERED_FILE,
                                 keep_errors=errors_to is not None)
        if both is not None:
            checked, rendering = both
    if checked is None:
        rendering = render_to(described, folder, map_to=map_to)
    intake = take_in(rendering.path, settings, now=now, name=described.plan_name,
                     validator=validator, on_row=on_row, errors_to=errors_to,
                     progress=progress, translate=rendering.translate,
                     rejected=rendering.rejected, checked=checked)
    intake.summary.file = described.name
    intake.summary.header = False  # the rendered file's own header, not the contacts'
    intake.summary.encoding = described.format.encoding.removesuffix("-sig")
    return dataclasses.replace(intake, path=described.path), rendering


def preview(described: Described, intake: Intake, rendering: Rendering) -> dict[str, Any]:
    """``check``'s preview: the first messages as they would be sent (numbers masked), how
    many rows take 1, 2, 3... SMS, the SMS in all, and the longest message with what each
    placeholder put in it."""
    rules = rules_from(described.settings)
    sent: list[Row] = []
    buffer = io.BytesIO()
    lines = write_provider_rows(rendering.first, buffer)
    buffer.seek(0)
    Validator(rules).validate(buffer, file=described.name, on_row=sent.append)
    first = [{"line": lines.contact_line(row.line), "number": mask(row.msisdn),
              "sms": row.segments, "text": row.text} for row in sent]
    longest = None
    if rendering.longest is not None:
        item = rendering.longest
        counted = count(item.message, rules.policy)
        values = list(item.values)
        def inserted(slot: Slot) -> int:  # the value, or the default put in its place
            value = values[slot.index].strip() if slot.index < len(values) else ""
            return len(value or slot.default or "")

        sizes = sorted(((inserted(slot), slot.header) for slot in described.template.slots),
                       reverse=True)
        longest = {
            "line": item.line, "characters": len(item.message), "sms": counted.segments,
            "text": item.message,
            "placeholders": [{"placeholder": header, "characters": size}
                             for size, header in sizes],
        }
    per_row = intake.summary.per_row
    return {"first": first,
            "sms_per_row": {str(n): per_row[n] for n in sorted(per_row) if per_row[n]},
            "sms_total": intake.summary.segments, "longest": longest}
