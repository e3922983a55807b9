"""The production process set: the Procfile and the systemd units in deploy/ start what the README says,
with restart policies, an environment file, resource limits and stop timeouts the processes fit in."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runs.management.commands.cmo_worker import SHUTDOWN_GRACE_SECONDS
from runs.worker.host import WorkerHost
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SERVICES = ["cmo-web.service", "cmo-worker@.service", "cmo-scheduler.service", "cmo-specialist@.service"]
COMMANDS = {p.stem for p in (ROOT / "runs" / "management" / "commands").glob("*.py")}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line and not line.startswith("#"))


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|min)?", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "min" else 1)


def test_the_procfile_starts_web_worker_scheduler_and_a_specialist_with_real_commands() -> None:
    processes = procfile()
    assert list(processes) == ["web", "worker", "scheduler", "healer"]
    assert "daphne" in processes["web"] and "cmo_site.asgi:application" in processes["web"]
    assert '--port "$PORT"' in processes["web"]
    for name in ("worker", "scheduler", "healer"):
        command = re.search(r"manage\.py (\w+)", processes[name])
        assert command and command.group(1) in COMMANDS, processes[name]


@pytest.mark.parametrize("unit", SERVICES)
def test_each_unit_restarts_on_failure_as_the_cmo_user_with_the_env_file_and_limits(unit: str) -> None:
    d = directives(unit)
    assert d["Restart"] == ["on-failure"]
    assert d["User"] == ["cmo"] and d["Group"] == ["cmo"]
    assert d["EnvironmentFile"][0] == "/etc/cmo/cmo.env"
    assert d["MemoryMax"] and d["LimitNOFILE"]
    assert d["StateDirectory"] == ["cmo"]
    assert d["WantedBy"] == ["cmo.target"]
    command = d["ExecStart"][0]
    assert command.startswith("/opt/cmo/.venv/bin/")
    if "manage.py" in command:
        assert command.split("manage.py ")[1].split()[0] in COMMANDS


def test_a_worker_is_given_longer_to_stop_than_it_takes_to_finish_its_steps_and_release_its_leases() -> None:
    finish_steps = inspect.signature(WorkerHost.stop).parameters["timeout"].default
    needed = finish_steps + SHUTDOWN_GRACE_SECONDS
    assert seconds(directives("cmo-worker@.service")["TimeoutStopSec"][0]) >= 2 * needed
    assert seconds(directives("cmo-specialist@.service")["TimeoutStopSec"][0]) >= 2 * needed


def test_the_example_env_file_sets_only_variables_the_settings_read() -> None:
    settings_source = (ROOT / "cmo_site" / "settings.py").read_text()
    lines = (ROOT / "deploy" / "cmo.env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"} <= set(names)
    assert [n for n in names if f'"{n}"' not in settings_source] == []


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """The units as installed, with /opt/cmo pointing at this checkout's interpreter (verify checks it exists)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        service_missing("systemd-analyze (apt-get install systemd)")
    venv = tmp_path / "opt" / ".venv" / "bin"
    venv.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    for exe in ("python", "daphne"):
        (venv / exe).symlink_to(bin_dir / exe)
    for unit in [*SERVICES, "cmo.target"]:
        (tmp_path / unit).write_text((UNITS / unit).read_text().replace("/opt/cmo", str(tmp_path / "opt")))
    result = subprocess.run(
        [tool, "verify", "--man=no", *(f"./{u}" for u in [*SERVICES, "cmo.target"])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
