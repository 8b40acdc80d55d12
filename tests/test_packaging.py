"""Packaging: pins agree between pyproject.toml and environment.yml; the README's commands."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["dev"]
    return pins, project["tool"]["srlib"]["no-deps"]


def test_every_dependency_is_pinned_exactly():
    pins, no_deps = pyproject_pins()
    for requirement in pins + no_deps:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", requirement), requirement


def test_environment_yml_has_the_same_pins():
    pins, no_deps = pyproject_pins()
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert sorted(pip_section) == sorted(pins)
    text = (ROOT / "environment.yml").read_text()
    for requirement in no_deps:
        assert f"--no-deps {requirement}" in text
    assert "python=3.11" in environment["dependencies"]


def test_installed_versions_match_the_pins():
    from importlib.metadata import version
    pins, no_deps = pyproject_pins()
    for requirement in pins + no_deps:
        name, pinned = requirement.split("==")
        assert version(name.split("[")[0]) == pinned, requirement


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/run.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
