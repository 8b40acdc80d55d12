"""Feedback of a run: per-epoch ``metrics.csv``, TensorBoard events, and the curves figure.

Only the main process writes (the others get a :class:`RunLog` with ``enabled=False``).
``metrics.csv`` holds one row per evaluated epoch with the columns of :data:`COLUMNS`
(accuracies in percent), the layout :func:`srlib.plotting.plot_curves` reads.
"""

import csv
import math
import warnings
from pathlib import Path

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
           "test_acc5", "epoch_time_s", "train_img_per_s")
METRICS = "metrics.csv"
CURVES = "curves.png"


class RunLog:
    """Writes the run folder's metrics.

    Args:
        run_dir: the run folder.
        enabled: False on every process but the main one.
        tensorboard: also write TensorBoard events into ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only when used

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS

    def rows(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="") as file:
            return list(csv.DictReader(file))

    def truncate(self, completed_epochs: int) -> None:
        """Drop rows of epochs after ``completed_epochs`` (written after the checkpoint a run
        resumes from), so a resumed run's table has no duplicates."""
        if not self.enabled or not self.metrics_path.is_file():
            return
        kept = [row for row in self.rows() if int(row["epoch"]) <= completed_epochs]
        self._write(kept)

    def _write(self, rows: list[dict]) -> None:
        tmp = self.metrics_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.metrics_path)

    def scalars(self, step: int, **values: float) -> None:
        """TensorBoard scalars at a global step (``train/loss``, ``train/lr``, ...)."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def epoch(self, row: dict) -> None:
        """Append one epoch's row to metrics.csv and TensorBoard."""
        if not self.enabled:
            return
        row = {key: row.get(key, float("nan")) for key in COLUMNS}
        self._write(self.rows() + [row])
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_acc5", "lr"):
            value = row[key]
            if isinstance(value, float) and not math.isnan(value):
                split, _, name = key.partition("_")
                self.scalars(int(row["epoch"]), **{f"epoch/{split}_{name}": value})
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir):
    """metrics.csv of a run as a pandas DataFrame (numbers as floats)."""
    import pandas as pd

    return pd.read_csv(Path(run_dir) / METRICS)


def plot_run_curves(run_dir) -> Path | None:
    """Draw loss and accuracy against epoch into ``run_dir/curves.png``.

    Uses :func:`srlib.plotting.plot_curves` (the house style). Returns the path, or None (with
    a warning) when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from srlib import plotting

    metrics = read_metrics(run_dir)
    if metrics.empty:
        warnings.warn(f"{run_dir}/{METRICS} has no rows: no curves drawn")
        return None
    plotting.set_style()
    fig = plotting.plot_curves(metrics)
    fig.suptitle(Path(run_dir).name)
    path = Path(run_dir) / CURVES
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
