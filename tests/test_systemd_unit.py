"""The systemd unit: hardened (exposure <= 2.0), valid, and carrying what the contract needs.

``systemd-analyze`` comes with Debian's ``systemd`` package. Without it the checks skip on a
developer's machine and fail in CI (``$CI`` set), so that CI never passes by not looking.

``verify`` checks that every Exec*= binary exists, and /usr/local/bin/sftpd-agent does not on
a test machine. So the test builds a throwaway root: the host's system units (for the
targets the unit depends on), stub executables at the unit's Exec*= paths, and the unit in
``etc/systemd/system``; then runs ``systemd-analyze verify --root=<that root>``. With
``--root`` the unit must sit inside the root: a path outside it is not loaded.

Both units are checked: the agent's and the template its ``OnFailure=`` starts
(``sftpd-agent-alert@.service``, which e-mails that systemd gave up). Verifying the agent's
unit loads the alert unit through ``OnFailure=`` when it is in the root, so the root holds both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sftpd_agent.config import EmailSettings, Settings
from sftpd_agent.notify.alert import JOURNAL_SECONDS

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sftpd-agent.service"
ALERT = UNIT.with_name("sftpd-agent-alert@.service")
UNITS = (UNIT, ALERT)
MAX_EXPOSURE = 2.0
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")
_EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
              "ExecStopPost", "ExecCondition")


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI: apt-get install systemd")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [_analyze(), "--no-pager", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def _directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value, in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return _directives(UNIT.read_text(encoding="utf-8"))["Service"]


@pytest.fixture(scope="module")
def unit_section() -> dict[str, list[str]]:
    return _directives(UNIT.read_text(encoding="utf-8"))["Unit"]


@pytest.fixture(scope="module")
def alert() -> dict[str, dict[str, list[str]]]:
    return _directives(ALERT.read_text(encoding="utf-8"))


_UNITS_OF_TIME = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
_UNITS_OF_SIZE = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def seconds(value: str) -> float:
    """A systemd time span such as ``180``, ``90s`` or ``10min``, in seconds."""
    found = re.fullmatch(r"(\d+)\s*([a-z]*)", value)
    assert found and found[2] in _UNITS_OF_TIME, f"not a simple time span: {value!r}"
    return int(found[1]) * _UNITS_OF_TIME[found[2]]


def size(value: str) -> int:
    found = re.fullmatch(r"(\d+)([KMG]?)", value)
    assert found, f"not a simple size: {value!r}"
    return int(found[1]) * _UNITS_OF_SIZE.get(found[2], 1)


def _executables(unit_text: str) -> list[str]:
    """Absolute program paths of the Exec*= lines, without systemd's prefixes (-, @, +, !, :)."""
    programs = []
    for key, values in _directives(unit_text)["Service"].items():
        if key in _EXEC_KEYS:
            programs += [value.split()[0].lstrip("-@+!:") for value in values if value]
    return programs


def _verify_root(tmp_path: Path, texts: dict[str, str], *, stubs: bool) -> Path:
    units = next((d for d in SYSTEM_UNIT_DIRS if d.is_dir()), None)
    if units is None:
        pytest.fail("systemd-analyze is present but no system unit directory was found")
    root = tmp_path / "root"
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    programs = {program for text in texts.values() for program in _executables(text)}
    for program in sorted(programs) if stubs else []:
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, text in texts.items():
        (unit_dir / name).write_text(text, encoding="utf-8")
    return root


def _verify(
    tmp_path: Path, unit_text: str | None = None, *, stubs: bool = True, unit: Path = UNIT,
    alert_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``verify`` of ``unit`` in a root holding both units (their texts, or the files')."""
    _analyze()
    texts = {UNIT.name: UNIT.read_text(encoding="utf-8"),
             ALERT.name: ALERT.read_text(encoding="utf-8")}
    if unit_text is not None:
        texts[unit.name] = unit_text
    if alert_text is not None:
        texts[ALERT.name] = alert_text
    root = _verify_root(tmp_path, texts, stubs=stubs)
    return _run("verify", f"--root={root}", "--man=no", "--generators=no",
                str(root / "etc/systemd/system" / unit.name))


# --- what systemd-analyze says ---------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_overall_exposure_is_at_most_two(unit: Path) -> None:
    result = _run("security", "--offline=true", str(unit))
    assert result.returncode == 0, result.stderr
    found = _EXPOSURE.search(result.stdout)
    assert found, f"no overall exposure line in:\n{result.stdout}\n{result.stderr}"
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    # systemd's own threshold (exposure x 10) must agree with the parsed figure.
    threshold = _run("security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
                     str(unit))
    assert threshold.returncode == 0, threshold.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_verify_is_clean(tmp_path: Path, unit: Path) -> None:
    result = _verify(tmp_path, unit=unit)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("ProtectSystem=strict", "ProtectSytem=strict"), "Unknown key 'ProtectSytem'"),
        (("WatchdogSec=60", "WatchdogSec=sixty"), "sixty"),
        (("RestrictAddressFamilies=AF_INET", "RestrictAddressFamilies=AF_NOPE"), "AF_NOPE"),
    ],
    ids=["typo", "bad-value", "bad-family"],
)
def test_verify_harness_does_see_mistakes(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    # The clean verdict above means something only if a broken unit is reported.
    text = UNIT.read_text(encoding="utf-8")
    assert change[0] in text
    result = _verify(tmp_path, text.replace(change[0], change[1], 1))
    assert complaint in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("RestartPreventExitStatus=2", "RestartPreventExitStatus=two"), "two"),
        (("TimeoutStartSec=180", "TimeoutStartSek=180"), "Unknown key 'TimeoutStartSek'"),
    ],
    ids=["bad-value", "typo"],
)
def test_verify_harness_does_see_mistakes_in_the_alert_unit(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    text = ALERT.read_text(encoding="utf-8")
    assert change[0] in text
    broken = text.replace(change[0], change[1], 1)
    alone = _verify(tmp_path / "alone", broken, unit=ALERT)
    assert complaint in alone.stdout + alone.stderr
    # Verifying the agent's unit loads the alert unit too, through OnFailure=.
    through = _verify(tmp_path / "through", alert_text=broken)
    assert complaint in through.stdout + through.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_verify_harness_does_see_a_missing_program(tmp_path: Path, unit: Path) -> None:
    result = _verify(tmp_path, unit=unit, stubs=False)
    assert "/usr/local/bin/sftpd-agent is not executable" in result.stdout + result.stderr


def test_a_weaker_unit_scores_worse(tmp_path: Path) -> None:
    # The exposure parser reads the figure systemd computed, not a constant.
    weak = tmp_path / UNIT.name
    kept = [line for line in UNIT.read_text(encoding="utf-8").splitlines()
            if not line.startswith(("Protect", "Private", "SystemCall", "Restrict"))]
    weak.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = _run("security", "--offline=true", str(weak))
    found = _EXPOSURE.search(result.stdout)
    assert found
    assert float(found.group(1)) > MAX_EXPOSURE


# --- what the contract and the operators rely on ---------------------------------------------


def test_unit_is_a_notify_service_with_watchdog_and_restart(
    service: dict[str, list[str]],
) -> None:
    assert service["Type"] == ["notify"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["Restart"] == ["on-failure"]
    assert service["ExecStart"][0].startswith("/usr/local/bin/sftpd-agent run --config ")
    assert "-HUP $MAINPID" in service["ExecReload"][0]


def test_unit_runs_as_a_fixed_user_with_its_directories(service: dict[str, list[str]]) -> None:
    assert service["User"] == ["sftpd-agent"]
    assert service["Group"] == ["sftpd-agent"]
    assert service.get("DynamicUser", ["no"]) == ["no"]
    assert service["StateDirectory"] == ["sftpd-agent"]
    assert service["StateDirectoryMode"] == ["0700"]
    assert service["ConfigurationDirectory"] == ["sftpd-agent"]
    assert service["UMask"] == ["0077"]


def test_secrets_come_as_credentials(service: dict[str, list[str]]) -> None:
    credentials = dict(value.split(":", 1) for value in service["LoadCredential"])
    assert credentials["private_key"] == "/etc/sftpd-agent/id_ed25519"
    # Optional secrets must not be absolute paths: a missing one would stop the start.
    optional = {name: path for name, path in credentials.items() if name != "private_key"}
    assert all(not path.startswith("/") for path in optional.values())


def test_network_is_allowed_for_any_provider_address(service: dict[str, list[str]]) -> None:
    families = " ".join(service["RestrictAddressFamilies"]).split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    assert "IPAddressDeny" not in service
    assert "PrivateNetwork" not in service


def test_nothing_but_the_state_directory_is_writable(service: dict[str, list[str]]) -> None:
    assert service["ProtectSystem"] == ["strict"]
    assert "ReadWritePaths" not in service
    assert service["CapabilityBoundingSet"] == [""]


def test_exec_programs_are_found() -> None:
    programs = _executables(UNIT.read_text(encoding="utf-8"))
    assert programs == ["/usr/local/bin/sftpd-agent", "/bin/kill"]


def test_exec_program_of_the_alert_unit(alert: dict[str, dict[str, list[str]]]) -> None:
    assert _executables(ALERT.read_text(encoding="utf-8")) == ["/usr/local/bin/sftpd-agent"]
    assert alert["Service"]["ExecStart"] == [
        "/usr/local/bin/sftpd-agent alert --unit %i --config /etc/sftpd-agent/agent.toml"]


# --- resources, restarts and the alert ---------------------------------------------------------


def test_stop_timeout_leaves_room_for_the_agents_own_stop(service: dict[str, list[str]]) -> None:
    # The agent waits operation_timeout_seconds for its tasks on SIGTERM (daemon.Agent.run),
    # then closes the session and the journal: systemd's SIGKILL must come well after that.
    waited = Settings().remote.operation_timeout_seconds
    assert seconds(service["TimeoutStopSec"][0]) >= waited + 30
    assert seconds(service["TimeoutStopSec"][0]) <= 10 * 60  # a stop does not take forever


def test_memory_and_tasks_are_bounded(service: dict[str, list[str]]) -> None:
    # Above the measured peaks (README "Performance": 331 MB for a 1,000,000-number STOP
    # report), below what would let a leak or a runaway hook hurt the host.
    assert 512 << 20 <= size(service["MemoryMax"][0]) <= 4 << 30
    assert 64 <= int(service["TasksMax"][0]) <= 1024


def test_a_crash_loop_ends_and_starts_the_alert(
    unit_section: dict[str, list[str]], service: dict[str, list[str]],
) -> None:
    # In [Unit]: in [Service] systemd 229+ ignores them (with a warning verify would show).
    window = seconds(unit_section["StartLimitIntervalSec"][0])
    burst = int(unit_section["StartLimitBurst"][0])
    assert 2 <= burst <= 20
    # The burst must fit in the window at the restart pace, or the limit is never reached.
    assert burst * seconds(service["RestartSec"][0]) < window
    assert "StartLimitIntervalSec" not in service and "StartLimitBurst" not in service
    (on_failure,) = unit_section["OnFailure"]
    assert on_failure == "sftpd-agent-alert@%n.service"
    template = on_failure.replace("%n", "")
    assert (UNIT.parent / template).is_file()


def test_alert_unit_is_a_oneshot_that_retries_a_failed_send_only(
    alert: dict[str, dict[str, list[str]]],
) -> None:
    service = alert["Service"]
    assert service["Type"] == ["oneshot"]
    assert "Install" not in alert  # started by OnFailure=, never enabled
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a configuration error: no retry
    # Oneshot units have no start timeout unless given one; it must cover the SMTP timeouts
    # (aiosmtplib's per step, 4 x in all) and the journal.
    email = EmailSettings()
    needed = email.timeout_seconds * 4 + JOURNAL_SECONDS
    assert needed < seconds(service["TimeoutStartSec"][0]) <= 15 * 60
    assert int(alert["Unit"]["StartLimitBurst"][0]) >= 2


def test_alert_unit_reads_what_the_agent_reads(
    service: dict[str, list[str]], alert: dict[str, dict[str, list[str]]],
) -> None:
    alerting = alert["Service"]
    assert alerting["User"] == service["User"] and alerting["Group"] == service["Group"]
    assert "systemd-journal" in " ".join(alerting["SupplementaryGroups"]).split()
    assert "PrivateUsers" not in alerting  # it would unmap the systemd-journal group
    theirs = dict(value.split(":", 1) for value in alerting["LoadCredential"])
    ours = dict(value.split(":", 1) for value in service["LoadCredential"])
    assert theirs == {"smtp_password": ours["smtp_password"]}  # no private key: not needed
    assert "--config /etc/sftpd-agent/agent.toml" in service["ExecStart"][0]
    assert "StateDirectory" not in alerting and "ReadWritePaths" not in alerting
    assert alerting["ProtectSystem"] == ["strict"]


def test_start_timeout_leaves_room_for_a_journal_migration(
        service: dict[str, list[str]], tmp_path: Path) -> None:
    """READY=1 comes after the journal is opened, and so after its migrations: migration 7
    copies every delivery line once, migration 8 every opt-out line. Measured here on 200,000
    lines each, the start timeout must cover 50,000,000 delivery lines (the history
    benchmark's journal) and 5,000,000 opt-out lines with room to spare, and still end a start
    that hangs."""
    import sqlite3  # noqa: PLC0415
    import time  # noqa: PLC0415

    from sftpd_agent.store.schema import MIGRATIONS  # noqa: PLC0415

    db = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for number in range(6):
        db.executescript(f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; "
                         "COMMIT;")
    lines = 200_000
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO deliveries SELECT i / 50000, printf('+336%08d', (i * 7919) % 100000000), "
        "'R' || i, NULL, 'Shop', '2', 'sent', 'operator', '2026-12-04T10:00:00+00:00' FROM n",
        (lines - 1,))
    began = time.monotonic()
    db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[6]}; PRAGMA user_version = 7; COMMIT;")
    per_delivery = (time.monotonic() - began) / lines
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO optouts (report, key, occurrence, msisdn, received_at, at) SELECT "
        "i / 50000, (i * 2654435761) % 9223372036854775807, 1, "
        "printf('+336%08d', (i * 7919) % 100000000), '2026-12-04T10:00:00+00:00', "
        "'2026-12-04T10:00:00+00:00' FROM n", (lines - 1,))
    began = time.monotonic()
    db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[7]}; PRAGMA user_version = 8; COMMIT;")
    per_optout = (time.monotonic() - began) / lines
    assert db.execute("SELECT count(*) FROM optouts").fetchone()[0] == lines
    db.close()
    timeout = seconds(service["TimeoutStartSec"][0])
    assert (per_delivery * 50_000_000 + per_optout * 5_000_000) * 2 < timeout <= 30 * 60
