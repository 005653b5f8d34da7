"""Campaign manifests: read with one-line errors, written so that they read back equal."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.manifest import (
    MANIFEST_SUFFIX,
    MAX_MANIFEST_BYTES,
    Columns,
    Manifest,
    ManifestError,
    claimed_contacts,
    is_manifest_name,
    manifest_stem,
    read_manifest,
    write_manifest,
)

GOOD = '''\
contacts = "clients-decembre.csv"
message = "Bonjour {Prénom}, -20 % à {Ville|votre magasin} ce week-end ! STOP au 36111"
campaign = "Noël 2026"
send_at = 2026-12-05 10:00:00
sender = "MAGASIN"
marketing = true
stop_mention = "STOP au 36111"
delimiter = "tab"

[columns]
phone = "Portable"
id = "Client ID"
'''


def manifest_file(tmp_path: Path, text: str, name: str = "promo.campaign.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest_file(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("promo.campaign.toml: ")
    return message.removeprefix("promo.campaign.toml: ")


def test_a_good_manifest(tmp_path: Path) -> None:
    path = manifest_file(tmp_path, GOOD)
    manifest = read_manifest(path)
    assert manifest.contacts == "clients-decembre.csv"
    assert manifest.message.startswith("Bonjour {Prénom}")
    assert manifest.campaign == "Nol2026"  # letters and digits, as file names give
    assert manifest.send_at == datetime.datetime(2026, 12, 5, 10, 0)
    assert manifest.send_at.tzinfo is None  # local time: the configured zone applies
    assert (manifest.sender, manifest.marketing) == ("MAGASIN", True)
    assert manifest.stop_mention == "STOP au 36111"
    assert manifest.delimiter_char == "\t"
    assert manifest.columns == Columns(phone="Portable", id="Client ID")
    assert manifest.contacts_path(path) == tmp_path / "clients-decembre.csv"


def test_only_contacts_and_message_are_required(tmp_path: Path) -> None:
    manifest = read_manifest(manifest_file(tmp_path, 'contacts = "c.txt"\nmessage = "Soldes"\n'))
    assert manifest.campaign is manifest.send_at is manifest.sender is None
    assert manifest.marketing is manifest.delimiter_char is None
    assert manifest.columns == Columns()


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "b.campaign.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'contacts = "c.csv"\nmessage = "x"\n')
    assert read_manifest(path).contacts == "c.csv"


@pytest.mark.parametrize(("value", "expected"), [
    ('"2026-12-05 10:00"', datetime.datetime(2026, 12, 5, 10, 0)),
    ('"2026-12-05T10:00"', datetime.datetime(2026, 12, 5, 10, 0)),
    ("2026-12-05T10:00:00", datetime.datetime(2026, 12, 5, 10, 0)),
    ("2026-12-05T10:00:00+01:00",
     datetime.datetime(2026, 12, 5, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))),
])
def test_send_at_forms(tmp_path: Path, value: str, expected: datetime.datetime) -> None:
    manifest = read_manifest(manifest_file(
        tmp_path, f'contacts = "c.csv"\nmessage = "x"\nsend_at = {value}\n'))
    assert manifest.send_at == expected


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'contacts = "c.csv"\nmesage = "x"\n')
    assert message.startswith("key 'mesage' is not known (keys: contacts, message, campaign,")
    assert "did you mean 'message'?" in message
    assert message.endswith("(and 1 more problem)")  # message is missing too


def test_unknown_key_in_columns(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'contacts = "c.csv"\nmessage = "x"\n[columns]\nmobile = "M"\n')
    assert message.startswith("key 'columns.mobile' is not known (keys: phone, id)")


@pytest.mark.parametrize("missing", ["contacts", "message"])
def test_missing_required_key(tmp_path: Path, missing: str) -> None:
    lines = {"contacts": 'contacts = "c.csv"', "message": 'message = "x"'}
    del lines[missing]
    message = error_of(tmp_path, "\n".join(lines.values()) + "\n")
    assert message.startswith(f"key '{missing}' is missing: ")


def test_blank_message(tmp_path: Path) -> None:
    assert error_of(tmp_path, 'contacts = "c.csv"\nmessage = "  \\n "\n') == (
        "key 'message': is empty; expected the message, e.g. message = \"Bonjour {Prénom}, ...\"")


@pytest.mark.parametrize("value", ['"demain 10h"', '"2026-13-05 10:00"', "2026-12-05", "10:00:00",
                                   "1764925200", "true"])
def test_bad_send_at(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, f'contacts = "c.csv"\nmessage = "x"\nsend_at = {value}\n')
    assert message.startswith("key 'send_at'")
    assert "send_at = 2026-12-05 10:00:00" in message  # what is expected


@pytest.mark.parametrize("name", ["../c.csv", "sub/c.csv", "..\\c.csv", ".hidden.csv", "/etc/c.csv",
                                  "c.xlsx", "c", "", "c\n.csv"])
def test_contacts_must_be_a_file_name_beside_the_manifest(tmp_path: Path, name: str) -> None:
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
    message = error_of(tmp_path, f'contacts = "{escaped}"\nmessage = "x"\n')
    assert message.startswith("key 'contacts'")


@pytest.mark.parametrize(("line", "start"), [
    ("marketing = \"yes\"", "key 'marketing' is 'yes': expected true or false"),
    ("delimiter = \"|\"", "key 'delimiter' is '|': expected one of"),
    ("sender = 12", "key 'sender' is 12: expected"),
    ("columns = 3", "key 'columns' is 3: expected a table"),
    ("campaign = \"!!!\"", "key 'campaign': '!!!' has no ASCII letter or digit"),
])
def test_wrong_values_say_what_is_expected(tmp_path: Path, line: str, start: str) -> None:
    assert error_of(tmp_path, f'contacts = "c.csv"\nmessage = "x"\n{line}\n').startswith(start)


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'contacts = "c.csv"\nmessage = "Bonjour\nsuite"\n')
    assert message.startswith("line 2, column ")
    assert 'triple quotes: message = """..."""' in message
    message = error_of(tmp_path, 'contacts = "c.csv"\nsender = MAGASIN\nmessage = "x"\n')
    assert message.startswith("line 2, column 10: invalid value")


def test_oversize_and_non_utf8_and_unreadable(tmp_path: Path) -> None:
    big = 'contacts = "c.csv"\nmessage = "x"\n' + "# " + "x" * MAX_MANIFEST_BYTES + "\n"
    assert "larger than 64 KiB" in error_of(tmp_path, big)
    path = tmp_path / "promo.campaign.toml"
    path.write_bytes('contacts = "c.csv"\nmessage = "Prénom"\n'.encode("cp1252"))
    assert error_of_path(path).startswith("line 2: byte 0xE9 is not UTF-8")
    with pytest.raises(ManifestError, match="cannot be read"):
        read_manifest(tmp_path / "absent.campaign.toml")


def error_of_path(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    return str(caught.value).removeprefix(f"{path.name}: ")


TRICKY = [
    'Il a dit "oui" \\o/ C:\\chemin\\n pas un saut',
    "ligne 1\nligne 2\r\nligne 3\rfin",
    "tab\tNUL-free \x01\x1f\x7f controls",
    "'''\"\"\" triple quotes and {{braces}} {Prénom|} é ç œ € 😀",
    "   spaces around   ",
]


@pytest.mark.parametrize("message", TRICKY)
def test_write_manifest_round_trips_tricky_messages(tmp_path: Path, message: str) -> None:
    manifest = Manifest(
        contacts="c.csv", message=message, campaign="promo", sender="SHOP",
        send_at=datetime.datetime(2026, 12, 5, 10, 0), marketing=False,
        stop_mention='STOP "36111"', delimiter=",", columns=Columns(phone="Tél. \"portable\""))
    path = tmp_path / f"x{MANIFEST_SUFFIX}"
    text = write_manifest(path, manifest)
    assert path.read_text(encoding="utf-8") == text
    assert read_manifest(path) == manifest
    stream = io.StringIO()
    assert write_manifest(stream, manifest) == stream.getvalue() == text


def test_write_manifest_leaves_out_what_is_not_set() -> None:
    text = write_manifest(None, Manifest(contacts="c.csv", message="x"))
    assert text == 'contacts = "c.csv"\nmessage = "x"\n'


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
       .filter(str.strip),
       send_at=st.none() | st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                                        max_value=datetime.datetime(2100, 1, 1)))
def test_round_trip_property(tmp_path: Path, message: str,
                             send_at: datetime.datetime | None) -> None:
    manifest = Manifest(contacts="c.csv", message=message, send_at=send_at)
    path = tmp_path / "p.campaign.toml"
    write_manifest(path, manifest)
    assert read_manifest(path) == manifest


def test_manifest_names() -> None:
    assert is_manifest_name("noel.campaign.toml")
    assert is_manifest_name("Noel.Campaign.TOML")
    assert not is_manifest_name(".noel.campaign.toml")
    assert not is_manifest_name(".campaign.toml")
    assert not is_manifest_name("noel.toml")
    assert manifest_stem("noel.campaign.toml") == "noel"


def test_claimed_contacts(tmp_path: Path) -> None:
    manifest_file(tmp_path, 'contacts = "a.csv"\nmessage = "x"\n', "a.campaign.toml")
    manifest_file(tmp_path, 'contacts = "b.txt"\nmessage = "x"\n', "b.campaign.toml")
    manifest_file(tmp_path, 'contacts = "a.csv"\nmessage = "y"\n', "c.campaign.toml")
    manifest_file(tmp_path, 'contacts = "d.csv"\nmesage = "x"\n', "d.campaign.toml")
    manifest_file(tmp_path, 'contacts = "e.csv"\nmessage = "x"\n', ".e.campaign.toml")
    manifest_file(tmp_path, 'contacts = "f.csv"\nmessage = "x"\n', "f.toml")
    (tmp_path / "g.campaign.toml").mkdir()
    assert claimed_contacts(tmp_path) == {"a.csv": tmp_path / "a.campaign.toml",
                                          "b.txt": tmp_path / "b.campaign.toml"}
    assert claimed_contacts(tmp_path / "absent") == {}
