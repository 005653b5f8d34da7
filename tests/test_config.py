"""Configuration: the file, the environment, credentials, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftpd_agent.config import load_settings
from sftpd_agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "agent.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SFTPD_AGENT_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_file_loads_with_every_documented_key() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.service_id == "12345"
    assert settings.remote.send_dir == "Send"
    assert settings.campaign.window_end == "21:30"
    assert settings.reports.stop_keywords[0] == "STOP"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'service_id = "12345"\n[remote]\nhost = "a.example"\nport = 22\n')
    monkeypatch.setenv("SFTPD_AGENT_REMOTE__HOST", "b.example")
    monkeypatch.setenv("SFTPD_AGENT_CAMPAIGN__MAX_SEGMENTS", "1")
    settings = load_settings(path)
    assert settings.remote.host == "b.example"
    assert settings.remote.port == 22
    assert settings.campaign.max_segments == 1


def test_config_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'service_id = "ABCDE"\n')
    monkeypatch.setenv("SFTPD_AGENT_CONFIG", str(path))
    assert load_settings(None).service_id == "ABCDE"


@pytest.mark.parametrize(("text", "expected"), [
    ('service_id = "12345"\n[remote]\nhots = "x"\n', "unknown key remote.hots"),
    ('service_id = "12345"\nbogus = 1\n', "unknown key bogus"),
    ('service_id = "1234"\n', "service_id"),
    ('service_id = "12345"\n[remote]\nport = "abc"\n', "remote.port"),
    ('service_id = "12345"\n[campaign]\nnon_gsm = "ascii"\n', "campaign.non_gsm"),
    ('service_id = "12345"\n[campaign]\nwindow_days = "Mon-Funday"\n', "window"),
    ('service_id = "12345"\n[campaign]\nwindow_start = "22:00"\n', "window_start"),
    ('service_id = "12345"\n[campaign]\nholiday_subdivisions = ["99"]\n', "99"),
    ('service_id = "12345"\n[campaign]\ndefault_region = "XX"\n', "default_region"),
    ('timezone = "Mars/Olympus"\n', "timezone"),
    ('service_id = "12345"\n[[notify.hooks]]\nevents = ["campaign.exploded"]\ncommand = ["x"]\n',
     "notify.hooks.0.events"),
    ("service_id = \n", "not valid TOML"),
    ('[campaign]\ndefault_sender = "0612345678"\n', "campaign.default_sender: a French mobile"),
    ('[campaign]\ndefault_sender = "+33712345678"\n', "campaign.default_sender: a French mobile"),
    ('[campaign]\ndefault_sender = "Info"\n', "campaign.default_sender: a generic sender"),
    ('[campaign]\nsender_blocklist = ["PROMO"]\ndefault_sender = "promo"\n',
     "campaign.default_sender: a generic sender"),
    ('[campaign]\ndefault_sender = "Boutiqué"\n', "campaign.default_sender: must be 1-11"),
    ('[campaign]\ndefault_sender = "Ma Boutique"\n', "campaign.default_sender: must be 1-11"),
    ('[campaign]\nstop_mention = "STOP au 36xxx"\n', "campaign.stop_mention: must hold STOP"),
    ('[campaign]\nnon_gsm = "reject"\nstop_mention = "STOP au 36111 🛑"\n',
     "campaign.stop_mention: '🛑' cannot be sent"),
    ('[campaign]\nstop_mention_policy = "append"\n', "campaign.stop_mention_policy: "),
    ('[campaign]\nstop_mention_policy = "always"\n', "campaign.stop_mention_policy"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_a_missing_default_file_is_allowed_for_offline_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sftpd_agent.config.DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert load_settings(None, required=False).campaign.default_region == "FR"
    with pytest.raises(ConfigError):
        load_settings(None, required=True)


def test_secrets_come_from_credentials_and_are_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "smtp_password").write_text("s3cr3t-from-credential\n")
    (creds / "key_passphrase").write_text("pass-phrase-42")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(tmp_path, 'service_id = "12345"\n[notify.email]\nto = ["ops@example.net"]\n')
    settings = load_settings(path)
    assert settings.notify.email is not None
    assert settings.notify.email.password.get_secret_value() == "s3cr3t-from-credential"
    assert settings.remote.private_key_passphrase is not None
    assert settings.remote.private_key_passphrase.get_secret_value() == "pass-phrase-42"
    assert "s3cr3t" not in repr(settings)

    bad = write(tmp_path, 'service_id = "12345"\n[notify.email]\npassword = ["hunter2-secret"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(bad)
    assert "hunter2" not in str(caught.value)
    assert "notify.email.password" in str(caught.value)


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, 'service_id = "12345"\n[remote]\nport = "abc"\n')
    sample = tmp_path / "c.csv"
    sample.write_text("a;+33612345678;S;x\n")
    done = subprocess.run(
        [sys.executable, "-m", "sftpd_agent", "check", "--config", str(path), str(sample)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "remote.port" in done.stderr and "Traceback" not in done.stderr


def test_the_metrics_file_must_be_one_node_exporter_reads(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('service_id = "12345"\n[metrics]\ntextfile = "/var/lib/x/agent.txt"\n')
    with pytest.raises(ConfigError, match=r"metrics\.textfile.*\.prom"):
        load_settings(config)


def test_the_compliance_keys_and_their_defaults(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    base = 'service_id = "12345"\n[campaign]\n'
    defaults = load_settings(write(tmp_path, base)).campaign
    assert defaults.stop_mention == "" and defaults.stop_mention_policy is None
    assert defaults.optout_policy == "require"  # marketing by default
    assert defaults.sender_blocklist == ("INFO", "ALERTE", "RDV", "BANQUE", "COLIS",
                                         "PAIEMENT", "LIVRAISON")
    appending = load_settings(write(tmp_path, base + 'stop_mention = " STOP au 36111 "\n'))
    assert appending.campaign.stop_mention == "STOP au 36111"
    assert appending.campaign.optout_policy == "append"
    transactional = load_settings(write(tmp_path, base + "marketing = false\n"
                                        'default_sender = "0612345678"\n'))
    assert transactional.campaign.optout_policy == "off"  # and a mobile sender is allowed
    link = load_settings(write(tmp_path, base + 'stop_mention = "Desabo : https://ex.co/u"\n'
                               'stop_mention_policy = "require"\n'))
    assert link.campaign.optout_policy == "require"
    monkeypatch.setenv("SFTPD_AGENT_CAMPAIGN__SENDER_BLOCKLIST", '["PROMO"]')
    monkeypatch.setenv("SFTPD_AGENT_CAMPAIGN__DEFAULT_SENDER", "Info")  # no longer blocked
    overridden = load_settings(write(tmp_path, base)).campaign
    assert overridden.sender_blocklist == ("PROMO",) and overridden.default_sender == "Info"
    monkeypatch.setenv("SFTPD_AGENT_CAMPAIGN__DEFAULT_SENDER", "promo")
    with pytest.raises(ConfigError, match=r"campaign\.default_sender: a generic sender"):
        load_settings(write(tmp_path, base))


def test_a_mobile_default_sender_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'service_id = "12345"\n[campaign]\ndefault_sender = "0612345678"\n')
    sample = tmp_path / "c.csv"
    sample.write_text("a;+33612345678;S;x STOP au 36111\n")
    done = subprocess.run(
        [sys.executable, "-m", "sftpd_agent", "check", "--config", str(path), str(sample)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "campaign.default_sender" in done.stderr and "'0612345678'" in done.stderr
