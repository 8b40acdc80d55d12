"""Packaging: pins agree between pyproject.toml and environment.yml; the README's commands."""

import os
import re
import tomllib
from pathlib import Path

import pytest
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


def test_the_package_list_names_every_package_folder():
    """pyproject lists srlib's packages explicitly (the recipes ship as srlib.configs)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    folders = {".".join(path.parent.relative_to(ROOT).parts)
               for path in (ROOT / "srlib").rglob("__init__.py")}
    assert listed == folders | {"srlib.configs"}


def test_repository_files_named_by_the_project_exist():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "MIT" == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert "## ImageNet-1k" in (ROOT / "data" / "README.md").read_text()


@pytest.mark.slow
def test_srlib_works_installed_from_its_wheel(tmp_path):
    """The wheel, unpacked first on the path of this environment (torch & co. reused), run from
    a folder outside the checkout: the CLI finds its packaged recipes, trains, and writes into
    the working directory; nothing is read from the checkout."""
    import subprocess
    import sys
    import zipfile

    from tiny_datasets import write_fashion_mnist

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "--quiet", "-w", str(wheels)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = wheels.glob("srlib-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "srlib" / "configs" / "imagenet_ti.yaml").is_file()
    work = tmp_path / "elsewhere"
    data = write_fashion_mnist(tmp_path / "fmnist", n_train=32, n_test=16)
    work.mkdir()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("SRLIB_")}
    environment["PYTHONPATH"] = str(site)

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=work, env=environment,
                              capture_output=True, text=True, timeout=600)

    where = run("-c", "import srlib; print(srlib.__file__)")
    assert where.stdout.strip() == str(site / "srlib" / "__init__.py"), where.stderr
    help_text = run("-m", "srlib.train", "--help")
    assert help_text.returncode == 0 and "the run folder is <output_dir>/<name>" in help_text.stdout
    recipes = run("-m", "srlib.train", "--list-recipes")
    assert "imagenet_ti" in recipes.stdout.split()
    result = run("-m", "srlib.train", "--data-root", str(data), "--batch-size", "16",
                 "--perf", "plain", "--threads", "1", "--no-progress", "--no-tensorboard")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = work / "runs" / "fashion_mnist"
    assert {"metrics.csv", "last.pth", "curves.png"} <= {p.name for p in run_dir.iterdir()}
