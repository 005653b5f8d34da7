"""The systemd unit: hardened (exposure <= 2.0), valid, and carrying what the contract needs.

``systemd-analyze`` comes with Debian's ``systemd`` package. Without it the checks skip on a
developer's machine and fail in CI (``$CI`` set), so that CI never passes by not looking.

``verify`` checks that every Exec*= binary exists, and /usr/local/bin/sftpd-agent does not on
a test machine. So the test builds a throwaway root: the host's system units (for the
targets the unit depends on), stub executables at the unit's Exec*= paths, and the unit in
``etc/systemd/system``; then runs ``systemd-analyze verify --root=<that root>``. With
``--root`` the unit must sit inside the root: a path outside it is not loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sftpd-agent.service"
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


def _executables(unit_text: str) -> list[str]:
    """Absolute program paths of the Exec*= lines, without systemd's prefixes (-, @, +, !, :)."""
    programs = []
    for key, values in _directives(unit_text)["Service"].items():
        if key in _EXEC_KEYS:
            programs += [value.split()[0].lstrip("-@+!:") for value in values if value]
    return programs


def _verify_root(tmp_path: Path, unit_text: str, *, stubs: bool) -> Path:
    units = next((d for d in SYSTEM_UNIT_DIRS if d.is_dir()), None)
    if units is None:
        pytest.fail("systemd-analyze is present but no system unit directory was found")
    root = tmp_path / "root"
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    for program in _executables(unit_text) if stubs else []:
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / UNIT.name).write_text(unit_text, encoding="utf-8")
    return root


def _verify(
    tmp_path: Path, unit_text: str, *, stubs: bool = True
) -> subprocess.CompletedProcess[str]:
    _analyze()
    root = _verify_root(tmp_path, unit_text, stubs=stubs)
    return _run("verify", f"--root={root}", "--man=no", "--generators=no",
                str(root / "etc/systemd/system" / UNIT.name))


# --- what systemd-analyze says ---------------------------------------------------------------


def test_overall_exposure_is_at_most_two() -> None:
    result = _run("security", "--offline=true", str(UNIT))
    assert result.returncode == 0, result.stderr
    found = _EXPOSURE.search(result.stdout)
    assert found, f"no overall exposure line in:\n{result.stdout}\n{result.stderr}"
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    # systemd's own threshold (exposure x 10) must agree with the parsed figure.
    threshold = _run("security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
                     str(UNIT))
    assert threshold.returncode == 0, threshold.stdout


def test_verify_is_clean(tmp_path: Path) -> None:
    result = _verify(tmp_path, UNIT.read_text(encoding="utf-8"))
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


def test_verify_harness_does_see_a_missing_program(tmp_path: Path) -> None:
    result = _verify(tmp_path, UNIT.read_text(encoding="utf-8"), stubs=False)
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
    assert service["TimeoutStopSec"] == ["120"]
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
