"""Sphinx extension for srlib's site: tables read from the repository at build time, and the
pieces of ``srlib_docstrings`` and ``srlib_offline`` (beside this file).

- ``srlib-recipes`` (directive): one table of every ``configs/*.yaml`` recipe, each followed by
  the paper's settings for the same run (``srlib_paper.PAPER``); a value that differs from
  the paper's is marked.
- ``srlib-benchmark`` (directive): a ``benchmarks/results/<name>.md`` table as written by the
  harness, then the command that reproduces it (the directive's content). Every results file
  must be shown somewhere, or the build warns (and fails under ``-W``).
- ``srlib-test`` (role): names a test, ``tests/test_x.py::test_name``; the build fails when the
  test no longer exists, so the results page cannot cite a test that was renamed or removed.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

from srlib.train.config import read_recipe  # YAML and its mapping check, as srlib.train

import srlib_docstrings
import srlib_offline
from srlib_paper import PAPER

logger = logging.getLogger(__name__)

# The recipe table: (column title, recipe keys shown in it)
RECIPE_COLUMNS = (
    ("model", ("model",)),
    ("T", ("T",)),
    ("size", ("img_size",)),
    ("epochs", ("epochs",)),
    ("batch / process", ("batch_size",)),
    ("lr", ("lr",)),
    ("warm-up (epochs from lr)", ("warmup_epochs", "warmup_lr")),
    ("min lr", ("min_lr",)),
    ("weight decay", ("weight_decay",)),
    ("label smoothing", ("label_smoothing",)),
    ("Mixup / CutMix", ("mixup", "cutmix")),
    ("RandAugment", ("auto_augment",)),
)


def repository(env) -> Path:
    return Path(env.config.srlib_repository)


def format_value(value) -> str:
    """A recipe value as the table shows it: floats in short scientific or plain form."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_cell(keys: tuple[str, ...], values: dict) -> str:
    if keys == ("warmup_epochs", "warmup_lr"):
        return f"{format_value(values['warmup_epochs'])} from {format_value(values['warmup_lr'])}"
    if keys == ("img_size",):
        size = values["img_size"]
        return "the dataset's" if size is None else f"{size}x{size}"
    if keys == ("auto_augment",) and values["auto_augment"]:
        return f"`{values['auto_augment']}`"
    return " / ".join(format_value(values[key]) for key in keys)


def load_recipes(folder: Path) -> dict[str, dict]:
    """Every recipe in ``folder`` with ``default.yaml``'s values under it: the defaults of
    ``srlib.train.TrainConfig`` are ``default.yaml`` (tests/test_configs.py keeps them equal),
    so a recipe's file lists only what differs."""
    files = sorted(folder.glob("*.yaml"))
    default_path = folder / "default.yaml"
    if not default_path.exists():
        raise FileNotFoundError(f"no default.yaml in {folder}: expected the default recipe")
    defaults = read_recipe(default_path)
    return {path.stem: {**defaults, **read_recipe(path)} for path in files}


class RecipesDirective(SphinxDirective):
    """The recipes of ``configs/`` next to the paper's settings, as one table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        folder = repository(self.env) / "configs"
        for path in sorted(folder.glob("*.yaml")):
            self.env.note_dependency(str(path))
        recipes = load_recipes(folder)
        unknown = sorted(set(PAPER) - set(recipes))
        if unknown:
            logger.warning("srlib_paper.PAPER names recipes that configs/ lacks: %s",
                           ", ".join(unknown), location=self.get_location(),
                           type="srlib", subtype="recipes")
        header = ["recipe", "row"] + [title for title, _ in RECIPE_COLUMNS]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        # the main job, then the paper's runs in the paper's order, then the rest (baselines)
        order = ["default", *PAPER, *sorted(recipes)]
        for name in sorted(recipes, key=order.index):
            values = recipes[name]
            lines.append("| " + " | ".join([f"`{name}`", "srlib"] + [
                self.mark(format_cell(keys, values), name, keys, values)
                for _, keys in RECIPE_COLUMNS]) + " |")
            if name in PAPER:
                paper = PAPER[name]
                cells = [f"*{format_cell(keys, {**values, **paper})}*"
                         if all(k in paper for k in keys) else "·" for _, keys in RECIPE_COLUMNS]
                lines.append("| | *paper* | " + " | ".join(cells) + " |")
        container = nodes.container(classes=["srlib-recipes"])
        container += self.parse_text_to_nodes("\n".join(lines), allow_section_headings=False)
        return [container]

    @staticmethod
    def mark(cell: str, name: str, keys: tuple[str, ...], values: dict) -> str:
        """Bold where srlib's recipe differs from a setting the paper states."""
        paper = PAPER.get(name, {})
        if all(key in paper for key in keys) and any(values[k] != paper[k] for k in keys):
            return f"**{cell}**"
        return cell


class BenchmarkDirective(SphinxDirective):
    """A results table of ``benchmarks/results`` and the command that made it."""

    required_arguments = 1  # the file name, e.g. cpu_ti224_b4_train.md
    has_content = True  # the command that reproduces it
    option_spec = {"caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        path = repository(self.env) / "benchmarks" / "results" / name
        if not path.is_file():
            logger.warning("benchmark results file %s not found", path,
                           location=self.get_location(), type="srlib", subtype="benchmark")
            return []
        self.env.note_dependency(str(path))
        shown = getattr(self.env, "srlib_benchmarks_shown", {})
        shown[name] = self.env.docname
        self.env.srlib_benchmarks_shown = shown
        command = "\n".join(self.content).strip()
        if not command:
            logger.warning("srlib-benchmark %s: give the command that reproduces it as the "
                           "directive's content", name, location=self.get_location(),
                           type="srlib", subtype="benchmark")
        stem = Path(name).stem
        if command and f"--name {stem}" not in " ".join(shlex.split(command)):
            logger.warning("srlib-benchmark %s: the command writes another file (expected "
                           "'--name %s' in it)", name, stem, location=self.get_location(),
                           type="srlib", subtype="benchmark")
        text = path.read_text()
        title, body = split_title(text)
        container = nodes.container(classes=["srlib-benchmark"])
        container += nodes.rubric(text=f"{title} (benchmarks/results/{name})")
        container += self.parse_text_to_nodes(body, allow_section_headings=False)
        if command:
            container += nodes.paragraph(text="Reproduce (from the repository root):")
            block = nodes.literal_block(command, command, language="bash")
            container += block
        return [container]


def split_title(markdown: str) -> tuple[str, str]:
    """The first ``# title`` line and the rest; later headings become bold lines (a
    directive's body cannot open sections)."""
    lines = markdown.splitlines()
    title = ""
    if lines and lines[0].startswith("# "):
        title, lines = lines[0][2:].strip(), lines[1:]
    body = [f"**{line.lstrip('#').strip()}**" if re.match(r"#{1,6} ", line) else line
            for line in lines]
    return title, "\n".join(body)


def check_benchmarks_shown(app: Sphinx, env) -> None:
    shown = getattr(env, "srlib_benchmarks_shown", {})
    results = repository(env) / "benchmarks" / "results"
    for path in sorted(results.glob("*.md")):
        if path.name not in shown:
            logger.warning("benchmarks/results/%s is on no page: add a srlib-benchmark "
                           "directive with the command that reproduces it to results.md",
                           path.name, type="srlib", subtype="benchmark")


def forget_benchmarks(app: Sphinx, env, docname: str) -> None:
    shown = getattr(env, "srlib_benchmarks_shown", {})
    for name in [name for name, doc in shown.items() if doc == docname]:
        del shown[name]


def merge_benchmarks(app: Sphinx, env, docnames, other) -> None:
    shown = getattr(env, "srlib_benchmarks_shown", {})
    shown.update(getattr(other, "srlib_benchmarks_shown", {}))
    env.srlib_benchmarks_shown = shown


class TestRole(SphinxRole):
    """``{srlib-test}`tests/test_x.py::test_name``` : the test's name as code, checked to
    exist (a function or class of that name defined in that file)."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        target = self.text.strip()
        file_part, _, test_name = target.partition("::")
        path = repository(self.env) / file_part
        test_name = test_name.split("[")[0]  # a parametrised id names the same function
        if not path.is_file():
            logger.warning("srlib-test: %s does not exist", file_part,
                           location=self.get_location(), type="srlib", subtype="test")
        else:
            self.env.note_dependency(str(path))
            defined = {node.name for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            if test_name and test_name not in defined:
                logger.warning("srlib-test: %s defines no %s", file_part, test_name,
                               location=self.get_location(), type="srlib", subtype="test")
        shown = target.removeprefix("tests/")
        return [nodes.literal(shown, shown, classes=["srlib-test"])], []


def setup(app: Sphinx) -> dict:
    app.add_config_value("srlib_repository", os.fspath(Path(__file__).resolve().parents[2]),
                         "env", types=(str,))
    srlib_offline.mathjax_folder()  # fail now, not after the build, when the package is missing
    app.add_directive("srlib-recipes", RecipesDirective)
    app.add_directive("srlib-benchmark", BenchmarkDirective)
    app.add_role("srlib-test", TestRole())
    app.connect("autodoc-process-docstring", srlib_docstrings.plain_module_docstrings,
                priority=400)  # before napoleon's
    app.connect("missing-reference", srlib_docstrings.resolve_srlib_reference)
    app.connect("doctree-read", srlib_offline.offline_outputs)
    app.connect("html-page-context", srlib_offline.drop_widget_state,
                priority=400)  # before myst-nb's
    app.connect("env-check-consistency", check_benchmarks_shown)
    app.connect("env-purge-doc", forget_benchmarks)
    app.connect("env-merge-info", merge_benchmarks)
    app.connect("build-finished", srlib_offline.copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
