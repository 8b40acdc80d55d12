"""Metrics of a run: the evaluation totals, and the feedback files (``metrics.csv``,
``steps.csv``, TensorBoard events, the curves figure).

:func:`classification_totals` scores a batch of per-step logits; the trainer's evaluation and
``python -m srlib.evaluate`` both sum it over the evaluation split. Only the main process writes
files (the others get a :class:`RunLog` with ``enabled=False``).

* ``metrics.csv``: one row per epoch, columns :data:`COLUMNS` (accuracies in percent), the
  layout :func:`srlib.plotting.plot_curves` reads.
* ``steps.csv``: one row every ``log_every`` steps (and at each epoch end), columns
  :data:`STEP_COLUMNS`: the training loss and accuracy over the steps since the previous row,
  with ``epoch`` a fraction (1.5 = half-way through the second epoch).
"""

import csv
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
           "test_acc5", "epoch_time_s", "train_img_per_s")
STEP_COLUMNS = ("step", "epoch", "lr", "train_loss", "train_acc", "img_per_s")
METRICS, STEPS, CURVES = "metrics.csv", "steps.csv", "curves.png"
RATES_CSV, RATES_PNG = "firing_rates.csv", "firing_rates.png"


def classification_totals(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sums over a batch, as a float64 tensor ``[4]`` on the logits' device (no host sync):
    cross-entropy (no smoothing) of the time-mean logits, top-1 hits, top-5 hits, items.

    Args:
        logits: per-step logits ``[T, B, K]``; the prediction is their mean over T.
        labels: class indices ``[B]``.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: score in float32
        logits = logits.float()
    mean = logits.mean(0)  # [B, K]
    top5 = mean.topk(min(5, mean.shape[-1]), dim=-1).indices  # [B, 5]
    hits = top5 == labels[:, None]  # [B, 5]
    return torch.stack([F.cross_entropy(mean, labels, reduction="sum").double(),
                        hits[:, 0].sum().double(), hits.any(-1).sum().double(),
                        mean.new_full((), labels.shape[0], dtype=torch.float64)])


def totals_to_metrics(totals) -> dict:
    """``{"test_loss", "test_acc", "test_acc5"}`` (accuracies in percent) from summed
    :func:`classification_totals`."""
    loss_sum, top1, top5, count = (float(value) for value in totals)
    return {"test_loss": loss_sum / count, "test_acc": 100 * top1 / count,
            "test_acc5": 100 * top5 / count}


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _rewrite(path: Path, columns, rows: list[dict]) -> None:
    """Write the whole table to a temporary file, then rename it into place."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _append(path: Path, columns, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key, float("nan")) for key in columns})


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

    def truncate(self, completed_epochs: int, step: int) -> None:
        """Drop rows written after the checkpoint a run resumes from (epochs after
        ``completed_epochs``, steps after ``step``), so the resumed tables have no duplicates."""
        if not self.enabled:
            return
        for name, columns, keep in ((METRICS, COLUMNS,
                                     lambda row: int(row["epoch"]) <= completed_epochs),
                                    (STEPS, STEP_COLUMNS, lambda row: int(row["step"]) <= step)):
            path = self.run_dir / name
            if path.is_file():
                _rewrite(path, columns, [row for row in _read(path) if keep(row)])

    def scalars(self, step: int, **values: float) -> None:
        """TensorBoard scalars at a global step."""
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self.writer.add_scalar(name, value, step)

    def interval(self, row: dict) -> None:
        """Append a steps.csv row (and its TensorBoard scalars ``train/...``)."""
        if not self.enabled:
            return
        _append(self.run_dir / STEPS, STEP_COLUMNS, row)
        self.scalars(row["step"], **{"train/loss": row["train_loss"],
                                     "train/acc": row["train_acc"], "train/lr": row["lr"],
                                     "train/img_per_s": row["img_per_s"]})

    def epoch(self, row: dict) -> None:
        """Append a metrics.csv row (and its TensorBoard scalars ``epoch/...``)."""
        if not self.enabled:
            return
        _append(self.run_dir / METRICS, COLUMNS, row)
        self.scalars(int(row["epoch"]), **{f"epoch/{key}": row[key] for key in COLUMNS[2:]
                                           if key in row})
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir, name: str = METRICS):
    """A run's ``metrics.csv`` (or ``steps.csv``) as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(Path(run_dir) / name)


def plot_run_curves(run_dir, title: str | None = None) -> Path | None:
    """Loss and accuracy against epoch into ``run_dir/curves.png``: training values from
    steps.csv (every few steps), test values from metrics.csv (every evaluation).

    Drawn by :func:`srlib.plotting.plot_curves` on a standalone ``Figure`` (no pyplot, so the
    caller's matplotlib backend and open figures are untouched). Returns the path, or None (with
    a warning) when there is nothing to plot.
    """
    import pandas as pd
    from matplotlib.figure import Figure

    from srlib import plotting

    run_dir = Path(run_dir)
    frames = []
    if (run_dir / STEPS).is_file():
        frames.append(read_metrics(run_dir, STEPS)[["epoch", "train_loss", "train_acc"]])
    if (run_dir / METRICS).is_file():
        epochs = read_metrics(run_dir)
        test = [c for c in ("test_loss", "test_acc") if c in epochs]
        frames.append(epochs[["epoch"] + test] if frames else epochs)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        warnings.warn(f"{run_dir} has no {METRICS} or {STEPS} rows: no curves drawn")
        return None
    table = table.sort_values("epoch", kind="stable")
    panels = int(table.filter(["train_loss", "test_loss"]).notna().any().any()) + \
        int(table.filter(["train_acc", "test_acc"]).notna().any().any())
    with plotting.style():
        fig = Figure(figsize=(plotting.FIGSIZE[0], plotting.FIGSIZE[1] * 0.9))
        plotting.plot_curves(table, axes=fig.subplots(1, panels, squeeze=False)[0])
        if title:
            fig.suptitle(title)
            fig.tight_layout()
        path = run_dir / CURVES
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def write_firing_rates(run_dir, model, loader, device, title: str) -> None:
    """The per-layer firing rates of ``model`` (eval mode, float32) over ``loader`` into
    ``run_dir/firing_rates.csv`` and ``firing_rates.png``."""
    from matplotlib.figure import Figure

    from srlib import plotting
    from srlib.analysis import FiringRateMonitor

    run_dir = Path(run_dir)
    model.eval()
    with FiringRateMonitor(model, rate_maps=False) as monitor, torch.no_grad():
        for images, _ in loader:
            model(images.to(device))
    table = monitor.table()
    table.to_csv(run_dir / RATES_CSV, index=False)
    with plotting.style():  # a standalone Figure: no pyplot, no global state touched
        fig = Figure(figsize=(max(plotting.FIGSIZE[0], 0.12 * len(table)), plotting.FIGSIZE[1]))
        ax = plotting.plot_layer_rates(table, ax=fig.add_subplot())
        ax.set_title(title)
        fig.savefig(run_dir / RATES_PNG, dpi=120, bbox_inches="tight")
