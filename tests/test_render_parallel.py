"""Rendering a contact export on every core gives exactly what the single pass gives: the
same rendered.csv and contacts.map.csv bytes, the same line map, rejected rows, first rows
and longest row, and the same intake; and a file it cannot cut goes back to the single pass.

The files are small and seeded; ``MIN_BYTES`` is set to 0 and the spans per core raised so
that a file of a few thousand rows is cut a dozen times."""

from __future__ import annotations

import datetime as dt
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.errors import InputError
from sftpd_agent.pipeline import manifests, render_parallel
from sftpd_agent.pipeline.manifests import Described, Rendering
from sftpd_agent.rules import contacts as contacts_module
from sftpd_agent.rules.manifest import Columns, Manifest

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
TEMPLATE = "Bonjour {Prénom}, -20 % à {Ville|votre ville} ; STOP au 36111"
PLAIN_VALUES = ["Zoé", "Hélène", "François", "Noël", "Paul", "Léa", "Saint-Étienne", "Nîmes"]
PLAIN_TEMPLATE = "Bonjour {Prénom}, -20 % à {Ville|votre ville} ! STOP au 36111"
"""No ';' of its own: rows of spans without quotes are written without the quoting check."""
TRICKY_VALUES = ["a;b", "a,b", 'dit "oui"', "deux\nlignes", "trois\r\nli\ngnes", "cr\rseul",
                 '"', ";", " espacé "]


@pytest.fixture(autouse=True)
def small_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(render_parallel, "SPANS_PER_WORKER", 6)


@dataclass(frozen=True)
class Shape:
    encoding: str = "cp1252"
    newline: str = "\r\n"
    delimiter: str = ";"
    id_column: bool = True
    ids: str = "unique"  # unique | repeated | like_generated
    tricky: float = 0.15  # share of values with quotes, delimiters or line breaks
    missing: float = 0.05  # share of rows without a first name (template_value_missing)
    blank: float = 0.03  # share of blank lines
    rows: int = 2500
    template: str = TEMPLATE


def _quoted(value: str, delimiter: str) -> str:
    if any(c in value for c in (delimiter, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_contacts(path: Path, shape: Shape, seed: int) -> None:
    rng = random.Random(seed)
    d, nl = shape.delimiter, shape.newline
    headers = ["Prénom", "Nom", "Mobile", "Ville"] + (["Client ID"] if shape.id_column else [])
    lines = [d.join(headers)]
    for n in range(shape.rows):
        if rng.random() < shape.blank:
            lines.append(rng.choice(["", d * (len(headers) - 1), "  "]))
            continue

        def value() -> str:
            pool = TRICKY_VALUES if rng.random() < shape.tricky else PLAIN_VALUES
            if d != ";" and pool is PLAIN_VALUES and rng.random() < 0.05:
                return "Pont;Neuf"  # not quoted here, but quoted in the provider row
            return rng.choice(pool)

        first = "" if rng.random() < shape.missing else value()
        city = rng.choice(["", value()])
        phone = f"06 {rng.randrange(100):02d} {rng.randrange(100):02d} 34 {n % 100:02d}"
        row = [first, value(), phone, city]
        if shape.id_column:
            if shape.ids == "unique":
                crm = f"C{n}"
            elif shape.ids == "repeated":
                crm = f"C{rng.randrange(40)}"  # the same ids all over the file
            else:  # ids that generated ones (L<line>, L<line>X1) collide with, and bad ones
                crm = rng.choice([f"L{rng.randrange(shape.rows)}", f"L{n + 2}X1", f"C{n}",
                                  "", "bad id", "x" * 41, f"L{n + 3}"])
            row.append(crm)
        lines.append(d.join(_quoted(v, d) for v in row))
    path.write_bytes(nl.join(lines).encode(shape.encoding) + nl.encode())


def describe(tmp_path: Path, contacts: Path, template: str = TEMPLATE,
             columns: Columns | None = None) -> Described:
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": False, "max_invalid_percent": 100})
    manifest = Manifest(contacts=contacts.name, message=template, columns=columns or Columns())
    return manifests.describe(manifest, contacts, contacts, settings)


def single(described: Described, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Rendering:
    """The reference: manifests.render_to's single pass, which writes what ``render`` and
    ``write_provider_rows`` write (checked here, the plainest form of the rules)."""
    folder.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(render_parallel, "render_in_parallel", lambda *args, **kwargs: None)
        rendering = manifests.render_to(described, folder, map_to=folder / manifests.MAP_FILE)
    plain = io.BytesIO()
    rejected: list[Any] = []
    contacts_module.write_provider_rows(
        contacts_module.split(contacts_module.render(described.contacts, described.format,
                                                     described.template), rejected.append),
        plain, header_line=described.format.header_line)
    assert rendering.path.read_bytes() == plain.getvalue()
    assert rendering.rejected == rejected
    return rendering


def parallel(described: Described, folder: Path, workers: int = 3) -> Rendering:
    folder.mkdir()
    rendering = render_parallel.render_in_parallel(
        described, folder / manifests.RENDERED_FILE, folder / manifests.MAP_FILE,
        workers=workers)
    assert rendering is not None, "the file was not rendered on several cores"
    return rendering


def assert_same(one: Rendering, many: Rendering) -> None:
    assert many.path.read_bytes() == one.path.read_bytes()
    map_file = manifests.MAP_FILE
    assert (many.path.parent / map_file).read_bytes() == (one.path.parent / map_file).read_bytes()
    assert len(many.lines) == len(one.lines)
    written = many.path.read_bytes().count(b"\n")
    assert [many.lines.contact_line(n) for n in range(written + 3)] == \
        [one.lines.contact_line(n) for n in range(written + 3)]
    assert many.rejected == one.rejected
    assert many.first == one.first
    assert [list(r.values) for r in many.first] == [list(r.values) for r in one.first]
    assert many.longest == one.longest
    assert (many.longest is None) == (one.longest is None)
    if many.longest is not None and one.longest is not None:
        assert list(many.longest.values) == list(one.longest.values)
    assert many.format == one.format
    assert sorted(p.name for p in many.path.parent.iterdir()) == sorted(
        [manifests.RENDERED_FILE, manifests.MAP_FILE])  # no part file left behind


SHAPES = {
    "cp1252-crlf": Shape(),
    "cp1252-lf-comma": Shape(newline="\n", delimiter=","),
    "utf8-bom-crlf": Shape(encoding="utf-8-sig"),
    "utf8-lf-tab": Shape(encoding="utf-8", newline="\n", delimiter="\t"),
    "ids-repeated-across-spans": Shape(ids="repeated"),
    "ids-like-generated": Shape(ids="like_generated", tricky=0.3),
    "no-id-column": Shape(id_column=False),
    "many-line-breaks-in-quotes": Shape(tricky=0.6, blank=0.1),
    "many-missing-values": Shape(missing=0.5),
    "no-quotes-cp1252-crlf": Shape(tricky=0, template=PLAIN_TEMPLATE),
    "no-quotes-utf8-bom-lf": Shape(encoding="utf-8-sig", newline="\n", tricky=0,
                                   template=PLAIN_TEMPLATE),
    "no-quotes-comma": Shape(delimiter=",", tricky=0, template=PLAIN_TEMPLATE),
    "no-quotes-ids-like-generated": Shape(tricky=0, ids="like_generated",
                                          template=PLAIN_TEMPLATE),
    "few-quotes": Shape(tricky=0.002, template=PLAIN_TEMPLATE),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seed", [1, 2])
def test_every_core_renders_what_the_single_pass_renders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, seed: int) -> None:
    shape = SHAPES[name]
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, shape, seed)
    described = describe(tmp_path, contacts, shape.template)
    assert described.format.encoding == shape.encoding
    assert described.format.delimiter == shape.delimiter
    assert (described.format.id is not None) == shape.id_column
    one = single(described, tmp_path / "one", monkeypatch)
    read = []
    plain_rows = contacts_module._plain_rows

    def spy(*args: Any) -> Any:
        rows = plain_rows(*args)
        read.append(rows is not None)
        return rows

    monkeypatch.setattr(contacts_module, "_plain_rows", spy)
    many = parallel(described, tmp_path / "many")
    assert_same(one, many)
    assert one.rejected and len(one.lines) > shape.rows // 3  # the file holds both kinds
    # Spans without a quote are split without csv (checked here by the spans this process
    # rendered: the first, and whichever others it took before the workers); the others are
    # read with csv. Which spans it took depends on the machine, so a file with both kinds
    # is checked span by span instead.
    assert read
    if shape.tricky == 0:
        assert all(read)
    elif shape.tricky >= 0.1:  # a quote in every span
        assert not any(read)
    else:  # both kinds of spans in one file
        kinds = {plain_rows(contacts, described.format, span) is None
                 for span in render_parallel.cut(contacts, 3 * render_parallel.SPANS_PER_WORKER)}
        assert kinds == {True, False}


def test_cuts_skip_line_breaks_inside_quotes(tmp_path: Path) -> None:
    """Where a mark falls inside a quoted value, the cut moves past the value's end; every
    span starts a record, and the first line numbers are those of the file (CR, LF, CRLF)."""
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(tricky=0.6), 3)
    data = contacts.read_bytes()
    spans = render_parallel.cut(contacts, 40)
    assert len(spans) > 20
    moved = 0
    for span in spans[1:]:
        before = data[:span.start]
        assert before.endswith(b"\n") and before.count(b'"') % 2 == 0
        lines = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n")
        assert span.first_line == lines + 1
        naive = data.find(b"\n", len(data) * spans.index(span) // 40) + 1
        moved += naive != span.start
    assert moved  # some marks fell inside a quoted value
    assert [s.start for s in spans[1:]] == [s.end for s in spans[:-1]]
    assert spans[0].start == 0 and spans[-1].end == len(data)


def test_repeated_ids_make_every_span_render_again_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(ids="repeated", tricky=0, missing=0, blank=0), 4)
    described = describe(tmp_path, contacts)
    rendered = []
    original = render_parallel._Job.do

    def spy(job: render_parallel._Job, index: int, used: set[str] | None = None
            ) -> render_parallel._Done:
        rendered.append((index, used is not None))
        return original(job, index, used)

    monkeypatch.setattr(render_parallel._Job, "do", spy)
    one = single(described, tmp_path / "one", monkeypatch)
    many = parallel(described, tmp_path / "many", workers=2)
    assert_same(one, many)
    again = [index for index, with_used in rendered if with_used]
    spans = max(index for index, _ in rendered) + 1
    assert again == list(range(spans))  # every span again, in order, from the ids before
    written = many.path.read_bytes()
    assert written.count(b"\r\nC7;") == 1  # a CRM id goes once; its repeats get L<line>
    assert written.count(b"\r\nL") > 2000


def test_a_cut_at_blank_lines_and_rows_without_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["Prénom;Mobile;Ville;Client ID"]
    for n in range(3000):
        lines.append(["", ";;;", "  ", f"Léa;06 12 34 56 {n % 100:02d};;C{n}",
                      f";06 12 34 56 {n % 100:02d};Metz;C{n}"][n % 5])
    contacts = tmp_path / "crm.csv"
    contacts.write_bytes("\r\n".join(lines).encode("cp1252"))  # no line end at the end
    described = describe(tmp_path, contacts, "Salut {Prénom}, {Ville|ici}")
    assert_same(single(described, tmp_path / "one", monkeypatch),
                parallel(described, tmp_path / "many"))


def test_blank_lines_before_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(newline="\n"), 5)
    contacts.write_bytes(b"\n\n \n" + contacts.read_bytes())
    described = describe(tmp_path, contacts)
    assert described.format.header_line == 4
    assert_same(single(described, tmp_path / "one", monkeypatch),
                parallel(described, tmp_path / "many"))


def test_a_span_that_cannot_be_read_sends_the_file_to_the_single_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte that is not CP1252 near the end: the parallel path gives up (None) and the
    single pass says which line, as it always did."""
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(tricky=0), 6)
    described = describe(tmp_path, contacts)  # sniffed before (it would see the byte)
    data = contacts.read_bytes()
    at = data.rindex(b"Paul")
    contacts.write_bytes(data[:at] + b"\x81" + data[at + 1:])
    (tmp_path / "many").mkdir()
    assert render_parallel.render_in_parallel(
        described, tmp_path / "many" / "rendered.csv", None, workers=2) is None
    assert [p.name for p in (tmp_path / "many").iterdir()] == ["rendered.csv"]
    line = data[:at].count(b"\n") + 1
    with pytest.raises(InputError) as caught:
        manifests.render_to(described, tmp_path / "many")
    assert caught.value.line == line and "0x81" in str(caught.value)


@pytest.mark.parametrize("seed", range(4))
def test_stray_quotes_never_change_the_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """A quote inside an unquoted value fools the count of quotes before a cut: the spans
    then fail to end at a record's end, and the single pass decides (same files or same
    error)."""
    rng = random.Random(seed)
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(tricky=0.3), seed)
    data = bytearray(contacts.read_bytes())
    for _ in range(3):  # a quote in the middle of a value: not RFC 4180, read as a character
        at = data.index(b"Paul", rng.randrange(len(data) // 2))
        data[at + 2:at + 2] = b'"'
    contacts.write_bytes(bytes(data))
    described = describe(tmp_path, contacts)
    try:
        one: Rendering | InputError = single(described, tmp_path / "one", monkeypatch)
    except InputError as exc:
        one = exc
    (tmp_path / "many").mkdir()
    try:
        many: Rendering | InputError = manifests.render_to(
            described, tmp_path / "many", map_to=tmp_path / "many" / manifests.MAP_FILE)
    except InputError as exc:
        many = exc
    if isinstance(one, InputError):
        assert isinstance(many, InputError) and str(many) == str(one)
    else:
        assert isinstance(many, Rendering)
        assert_same(one, many)


def test_too_small_or_one_core_is_the_single_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(rows=50), 7)
    described = describe(tmp_path, contacts)
    target = tmp_path / "rendered.csv"
    assert render_parallel.render_in_parallel(described, target, None, workers=1) is None
    monkeypatch.setattr(render_parallel, "MIN_BYTES", contacts.stat().st_size + 1)
    assert render_parallel.render_in_parallel(described, target, None, workers=4) is None
    assert render_parallel.workers_for(contacts.stat().st_size) == 1
    assert not target.exists()


def test_take_in_manifest_is_the_same_with_and_without_every_core(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = tmp_path / "crm.csv"
    write_contacts(contacts, Shape(ids="like_generated", tricky=0.2, rows=4000), 8)
    described = describe(tmp_path, contacts)
    taken = {}
    calls = []
    original = render_parallel.render_in_parallel

    def counted(*args: object, **kwargs: object) -> Rendering | None:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(result is not None)
        return result

    monkeypatch.setattr(render_parallel, "render_in_parallel", counted)
    monkeypatch.setattr(render_parallel, "workers_for", lambda size: 3)
    for name, enabled in (("one", False), ("many", True)):
        folder = tmp_path / name
        folder.mkdir()
        with monkeypatch.context() as patch:
            if not enabled:
                patch.setattr(render_parallel, "MIN_BYTES", 1 << 40)
            intake, rendering = manifests.take_in_manifest(
                described, folder, now=NOW, errors_to=folder / "errors.csv",
                map_to=folder / manifests.MAP_FILE)
        taken[name] = (intake.as_dict(), (folder / "errors.csv").read_bytes(),
                       (folder / manifests.MAP_FILE).read_bytes(),
                       manifests.preview(described, intake, rendering))
    assert calls == [False, True]
    assert taken["many"] == taken["one"]
    summary = taken["one"][0]
    assert summary["invalid"] and summary["valid"] and summary["rows"] > 3000


def _checked(described: Described, folder: Path, *, fused: bool,
             monkeypatch: pytest.MonkeyPatch, suppressed: set[str] | None = None,
             ) -> tuple[Any, ...]:
    """What ``check`` takes from take_in_manifest (no rows kept): the intake, the errors
    file and the preview; whether the rows were rendered and checked at once."""
    folder.mkdir()
    used = []
    original = render_parallel.check_in_parallel

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        used.append(result is not None)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(render_parallel, "check_in_parallel", spy)
        patch.setattr(render_parallel, "workers_for", lambda size: 3)
        if not fused:
            patch.setattr(render_parallel, "MIN_BYTES", 1 << 40)
        intake, rendering = manifests.take_in_manifest(
            described, folder, now=NOW, errors_to=folder / "errors.csv", suppressed=suppressed)
    assert used == [fused]
    assert (folder / manifests.RENDERED_FILE).exists() is not fused  # nothing written
    errors = folder / "errors.csv"
    return (intake.as_dict(), errors.read_bytes() if errors.exists() else None,
            manifests.preview(described, intake, rendering))


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seed", [3, 4])
def test_rows_checked_as_rendered_give_what_the_rendered_file_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, seed: int) -> None:
    """check's way for a big export: each core renders a span and checks its rows at once,
    nothing written, rows as if without an id column; the summary, errors file and preview
    are those of rendering the file and checking it (the reference)."""
    contacts = tmp_path / "crm.csv"
    shape = SHAPES[name]
    write_contacts(contacts, shape, seed)
    described = describe(tmp_path, contacts, shape.template)
    one = _checked(described, tmp_path / "one", fused=False, monkeypatch=monkeypatch)
    many = _checked(described, tmp_path / "many", fused=True, monkeypatch=monkeypatch)
    assert many == one
    summary = one[0]
    assert summary["valid"] and summary["rows"] > 2000
    assert summary["invalid"] or name.startswith("no-quotes")


def test_rows_checked_as_rendered_count_zones_and_duplicates_across_spans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Marketing hours on: the zones are counted from the numbers every span found; a number
    repeated in another span is one duplicate, and one suppressed row, as in the rendered
    file."""
    contacts = tmp_path / "crm.csv"
    rows = ["Prénom;Mobile;Client ID"]
    for n in range(3000):
        number = f"06 12 34 {n % 900 // 100:02d} {n % 100:02d}"  # 900 numbers, each ~3 times
        if n % 7 == 0:
            number = f"+590 690 12 {n % 100:02d} 34"  # Guadeloupe: another zone
        rows.append(f"Léa{n};{number};C{n}")
    contacts.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": True, "max_invalid_percent": 100})
    manifest = Manifest(contacts=contacts.name, message="Bonjour {Prénom} STOP au 36111")
    described = manifests.describe(manifest, contacts, contacts, settings)
    listed = {f"+336123400{n:02d}" for n in range(0, 100, 3)} | {"+590690120034"}
    one = _checked(described, tmp_path / "one", fused=False, monkeypatch=monkeypatch,
                   suppressed=listed)
    many = _checked(described, tmp_path / "many", fused=True, monkeypatch=monkeypatch,
                    suppressed=listed)
    assert many == one
    summary = one[0]
    assert summary["duplicates"] > 1500 and summary["valid"] < 1100
    assert summary["suppressed"] == 35  # each listed number once, though in several spans
    assert len(summary["groups"]) == 2  # metropolitan France and the Antilles
