"""Static checks of the committed lessons (nbval executes them; this reads what readers see).

Every cell that saves a figure shows it, every saved figure is committed, outputs stay light,
and each lesson opens with its banner (run time, data, what is interactive).
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SAVEFIG = re.compile(r"""savefig\(\s*\w+\s*,\s*["']([A-Za-z0-9_\-]+)["']""")
SAVE_GIF = re.compile(r"""save_gif\(\s*\w+\s*,\s*["']([A-Za-z0-9_\-]+)["']""")
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|usr/share|var)/\S*")
MAX_OUTPUT_BYTES = 400_000  # one cell's outputs (an embedded animation is the largest)
MAX_NOTEBOOK_BYTES = 2_500_000
BANNER = re.compile(r"^> \*\*Run time:\*\* about \d+ min on a laptop CPU · \*\*Data:\*\* .+ · "
                    r"\*\*Interactive:\*\* .+", re.MULTILINE)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_lessons_are_numbered_in_order():
    numbers = [int(path.name[:2]) for path in NOTEBOOKS]
    assert numbers == list(range(1, len(NOTEBOOKS) + 1)), [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_cells_that_save_a_figure_show_it(path):
    prefix = path.name[:2]
    for index, cell in enumerate(cells(path)):
        if cell["cell_type"] != "code":
            continue
        text = source(cell)
        outputs = cell.get("outputs", [])
        kinds = {kind for output in outputs for kind in output.get("data", {})}
        for name in SAVEFIG.findall(text):
            assert name.startswith(prefix + "_"), f"{path.name} cell {index}: {name} not {prefix}_*"
            assert "image/png" in kinds, (f"{path.name} cell {index} saves figure {name} but "
                                          "shows no image: leave the figure open or display it")
            assert (ROOT / "figures" / f"{name}.png").is_file(), f"figures/{name}.png missing"
        for name in SAVE_GIF.findall(text):
            assert name.startswith(prefix + "_"), f"{path.name} cell {index}: {name} not {prefix}_*"
            assert (ROOT / "figures" / f"{name}.gif").is_file(), f"figures/{name}.gif missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_are_executed_and_light(path):
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    code = [cell for cell in cells(path) if cell["cell_type"] == "code" and source(cell).strip()]
    counts = [cell.get("execution_count") for cell in code]
    assert all(counts), f"{path.name}: some code cells were never executed (commit outputs)"
    assert counts == sorted(counts), f"{path.name}: cells executed out of order"
    for index, cell in enumerate(code):
        size = len(json.dumps(cell.get("outputs", [])))
        assert size < MAX_OUTPUT_BYTES, f"{path.name} code cell {index}: outputs of {size} bytes"
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name} code cell {index} has an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_lessons_open_with_their_banner(path):
    first = source(cells(path)[0])
    assert first.startswith(f"# {path.name[:2]} · "), f"{path.name}: title must be '# NN · ...'"
    assert BANNER.search(first), f"{path.name}: the banner line (run time, data, interactive)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_outputs_name_no_machine_paths(path):
    """Outputs read the same on every machine: no absolute path of the machine that ran them
    (print a figure's name, not the path savefig returns) and no warning with a kernel path."""
    for index, cell in enumerate(cells(path)):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(
                output.get("data", {}).get("text/plain", ""))
            found = ABSOLUTE_PATH.search(text)
            assert not found, f"{path.name} cell {index} prints {found.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_widgets_go_through_plotting_interact(path):
    """ipywidgets.interact on a function that returns a figure shows it twice (the return value
    and the inline backend's open figure); srlib.plotting.interact closes it after drawing."""
    for index, cell in enumerate(cells(path)):
        source = "".join(cell["source"])
        assert not re.search(r"from ipywidgets import[^\n]*\binteract\b", source), (
            f"{path.name} cell {index}: import interact from srlib.plotting, not ipywidgets")
        assert not re.search(r"(?<![\w.])interact\(", source), (
            f"{path.name} cell {index}: call plotting.interact(...), not a bare interact(...)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_private_notes_are_cited(path):
    text = path.read_text()
    for word in ("PAPER_FACTS", "reference/official", "/work/shared"):
        assert word not in text, f"{path.name} cites {word}, which users do not have"
