"""srlib.paths: data and figure folders come from settings and the working directory, never
from where srlib's source lies."""

import pytest

from srlib import paths


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A fake srlib checkout with a notebooks/ folder; no SRLIB_* variables set."""
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.delenv(paths.FIGURES_ENV, raising=False)
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "srlib"\nversion = "0.1.0"\n')
    return root


def test_project_root_is_the_enclosing_srlib_checkout(checkout, monkeypatch):
    monkeypatch.chdir(checkout / "notebooks")
    assert paths.project_root() == checkout.resolve()
    assert paths.figures_dir() == checkout.resolve() / "figures"
    assert paths.data_dir() == checkout.resolve() / "data"


def test_another_projects_pyproject_is_not_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.FIGURES_ENV, raising=False)
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "srlib-extras"\n')
    monkeypatch.chdir(other / "sub")
    assert paths.project_root() is None
    assert paths.figures_dir() == (other / "sub").resolve() / "figures"  # the working directory


def test_explicit_settings_win(checkout, tmp_path, monkeypatch):
    monkeypatch.chdir(checkout)
    monkeypatch.setenv(paths.FIGURES_ENV, str(tmp_path / "env-figures"))
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "env-data"))
    assert paths.figures_dir() == tmp_path / "env-figures"
    assert paths.data_dir() == tmp_path / "env-data"
    assert paths.figures_dir(tmp_path / "arg") == tmp_path / "arg"  # an argument beats both


def test_fashion_mnist_searches_the_data_folder_first(checkout, monkeypatch):
    from srlib.data import fashion_mnist

    monkeypatch.chdir(checkout / "notebooks")
    folders = fashion_mnist.candidate_dirs(None)
    assert folders[0] == checkout.resolve() / "data" / "fashion-mnist"
    assert fashion_mnist.DEBIAN_DIR in folders
