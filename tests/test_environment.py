"""environment.yml describes the same environment as pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_environment_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert set(pip) - {"-e ."} == pins
    assert all("==" in pin for pin in pins)  # every dependency is pinned exactly
    python = next(dep for dep in env["dependencies"] if isinstance(dep, str) and dep.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins() -> dict[str, str]:
    """name -> version of every requirement in requirements.lock."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, version = line.split(";")[0].strip().split("==")
            pins[_canonical(name)] = version
    return pins


#: Installed but deliberately not locked: the project itself (editable) and pip, the venv's own installer.
NOT_LOCKED = {"cnode", "pip"}


def test_venv_matches_the_lock_in_both_directions():
    installed = {_canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    locked = locked_pins()
    missing = {name: version for name, version in locked.items() if name not in installed}
    extra = {name: version for name, version in installed.items() if name not in locked and name not in NOT_LOCKED}
    different = {name: (installed[name], version) for name, version in locked.items()
                 if name in installed and installed[name] != version}
    assert not missing, f"locked but not installed: {missing} (run `make venv`)"
    assert not extra, f"installed but not locked: {extra} (add it to pyproject.toml and run `make lock`)"
    assert not different, f"installed != locked: {different}"


def test_lock_names_no_host_and_pins_every_top_level_requirement():
    text = (ROOT / "requirements.lock").read_text()
    assert "://" not in text and "--index-url" not in text and "--find-links" not in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    top = list(project["dependencies"]) + [pin for extra in project["optional-dependencies"].values() for pin in extra]
    locked = locked_pins()
    for pin in top:
        name, version = pin.split("==")
        assert locked.get(_canonical(name)) == version, f"{pin} is not what requirements.lock pins: run `make lock`"
