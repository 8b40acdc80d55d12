"""The training engine: one :class:`Trainer` for a laptop CPU and for torchrun on GPU clusters.

    trainer = Trainer(load_config("configs/default.yaml"))
    trainer.fit()            # -> runs/<name>/{last.pth, best.pth, metrics.csv, curves.png, ...}

Each step: (Mixup/CutMix) -> model under autocast -> per-step logits [T, B, K] -> loss on their
time-mean (or TET) -> backward (DDP averages gradients) -> optional clipping -> AdamW -> the
per-iteration cosine schedule. Evaluation sums loss and correct counts over every process and
every test item exactly once. The run state (see :mod:`srlib.train.run_state`) holds
everything needed to resume bit for bit.
"""

import contextlib
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors
from tqdm.auto import tqdm

from srlib.checkpoint import load_checkpoint
from srlib.data import build_loader, dataset_info, mixup_cutmix
from srlib.perf import PerfOptions, apply_perf_options, tune_cpu_allocator
from srlib.train import distributed, run_state
from srlib.train.config import TrainConfig
from srlib.train.metrics import RunLog, plot_run_curves
from srlib.train.optim import CosineWarmupSchedule, build_optimizer, classification_loss
from srlib.train.setup import build_datasets, build_model, seed_everything

# config fields that may differ between a run and its resumption without changing its course
_RESUME_FREE = {"resume", "progress", "tensorboard", "plots", "log_every", "workers", "device",
                "save_every", "eval_batch_size", "tune_allocator", "omp_wait_policy"}
RATE_IMAGES = 512  # test images for the per-layer firing-rate table at the end of a run


def _bar_interval() -> dict:
    """tqdm refresh settings: live on a terminal or in Jupyter; every 30 s into a log file or a
    cluster job's output, so that a long run's log holds lines, not one line per step."""
    live = sys.stderr.isatty() or "ipykernel" in sys.modules
    return {} if live else {"mininterval": 30.0}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good run state."""


class Trainer:
    """Builds a run from a :class:`TrainConfig` and trains it.

    Construction joins the process group (under torchrun), seeds, builds the datasets and
    loaders, the model (on its device, with its speed options, DDP-wrapped), AdamW, the schedule
    and the run folder, and resumes from ``config.resume`` if given. Then :meth:`fit` trains;
    :meth:`train_step`, :meth:`evaluate` and :meth:`save` are usable on their own.

    Args:
        config: the run's recipe (see :mod:`srlib.train.config`).
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.context, self.device = distributed.setup(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError("amp='fp16' needs CUDA (with a grad scaler); on the CPU use "
                             "amp='bf16' or 'none'")
        seed_everything(config.seed + self.context.rank)
        self.info = dataset_info(config.dataset)
        self.train_set, self.test_set = build_datasets(config)
        self.train_loader = build_loader(
            self.train_set, config.batch_size, train=True, seed=config.seed,
            num_workers=config.workers, sequence=self.info.sequence,
            pin_memory=self.device.type == "cuda")
        self.test_loader = build_loader(
            self.test_set, config.eval_batch_size or 2 * config.batch_size, train=False,
            num_workers=config.workers, sequence=self.info.sequence,
            pin_memory=self.device.type == "cuda")
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.train_set)} training items make no full batch of "
                             f"{config.batch_size} per process x {self.context.world_size}")
        self._build_model()
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay,
                                         tuple(config.betas))
        total = config.epochs * self.steps_per_epoch
        self.schedule = CosineWarmupSchedule(
            self.optimizer, total, config.lr,
            warmup_steps=min(round(config.warmup_epochs * self.steps_per_epoch), total),
            warmup_lr=config.warmup_lr, min_lr=config.min_lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.mix = mixup_cutmix(config.num_classes or self.info.num_classes, config.mixup,
                                config.cutmix, config.mixup_switch_prob)
        self.run_dir = Path(config.output_dir) / config.name
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.run_dir, self.context.is_main, config.tensorboard)
        self.epoch, self.epoch_step, self.step = 0, 0, 0
        self.best_acc1, self.best_step = 0.0, None  # best test accuracy and its step
        self.epoch_stats = [0.0, 0.0, 0.0]  # loss sum, correct, count (this process)
        self.interval_stats = [0.0, 0.0, 0.0]  # the same since the last steps.csv row
        resume = config.resume
        if resume == "auto":  # continue this run if it has a run state, else start afresh
            last = self.run_dir / run_state.LAST
            resume = str(last) if last.is_file() else None
        if resume:
            self.resume(resume)

    def _build_model(self) -> None:
        config = self.config
        self.model = build_model(config, self.device)  # state dicts and evaluation use it
        self.perf = PerfOptions.from_spec(config.perf, self.device)
        if config.tune_allocator and self.device.type == "cpu":
            tune_cpu_allocator(True)
        apply_perf_options(self.model, self.perf)  # swaps modules: state-dict keys stay
        if config.sync_bn and self.context.enabled:
            if self.device.type != "cuda":
                raise ValueError("sync_bn needs CUDA processes (NCCL); gloo on CPU has no "
                                 "SyncBatchNorm")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.network = self.model
        if self.context.enabled:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        return (images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True))

    def _mix(self, images: torch.Tensor, labels: torch.Tensor):
        """Mixup/CutMix on the batch axis (time-major sequences are mixed batch-first)."""
        if self.mix is None:
            return images, labels
        if self.info.sequence:  # torchvision mixes 5-d batches only as videos
            video = tv_tensors.Video(images.transpose(0, 1))  # [B, T, C, H, W]
            mixed, targets = self.mix(video, labels)
            return mixed.as_subclass(torch.Tensor).transpose(0, 1), targets  # [T, B, C, H, W]
        return self.mix(images, labels)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """One optimizer step on a batch; returns its loss and correct count (this process).

        Raises:
            NonFiniteLossError: the loss is NaN or infinite on any process (nothing updated).
        """
        config = self.config
        images, labels = self._to_device(images, labels)
        inputs, targets = self._mix(images, labels)
        with self._autocast():
            logits = self.network(inputs)  # [T, B, K]
            loss = classification_loss(logits, targets, kind=config.loss,
                                       label_smoothing=config.label_smoothing,
                                       tet_lambda=config.tet_lambda, tet_phi=config.tet_phi)
        value = loss.item()
        if not math.isfinite(distributed.all_reduce_sum([value], self.device)[0]):
            raise NonFiniteLossError(
                f"non-finite loss ({value} on rank {self.context.rank}) at epoch "
                f"{self.epoch + 1}, step {self.step + 1}: stopping. The last good run state "
                f"is {self.run_dir / run_state.LAST}; try a lower lr, clip_grad or "
                "amp='none'.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        correct = (logits.detach().mean(0).argmax(-1) == labels).sum().item()
        return {"loss": value, "correct": correct, "count": labels.shape[0]}

    def train_epoch(self, epoch: int) -> dict:
        """Train one epoch (from ``self.epoch_step`` on, when resuming); returns its means."""
        config = self.config
        self.model.train()
        self.train_loader.sampler.set_epoch(epoch, start=self.epoch_step * config.batch_size)
        bar = tqdm(total=self.steps_per_epoch, initial=self.epoch_step, unit="step",
                   desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True,
                   disable=not (config.progress and self.context.is_main), leave=False,
                   **_bar_interval())
        start, images_seen = time.perf_counter(), 0
        for images, labels in self.train_loader:
            result = self.train_step(images, labels)
            self.step, self.epoch_step = self.step + 1, self.epoch_step + 1
            for stats in (self.epoch_stats, self.interval_stats):
                stats[0] += result["loss"] * result["count"]
                stats[1] += result["correct"]
                stats[2] += result["count"]
            images_seen += result["count"] * self.context.world_size
            rate = images_seen / (time.perf_counter() - start)
            lr = self.schedule.get_last_lr()[0]
            bar.set_postfix(loss=f"{result['loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}",
                            refresh=False)
            bar.update()
            if self.step % config.log_every == 0 or self.epoch_step == self.steps_per_epoch:
                loss_sum, correct, count = distributed.all_reduce_sum(self.interval_stats,
                                                                      self.device)
                self.interval_stats = [0.0, 0.0, 0.0]
                self.log.interval({
                    "step": self.step, "epoch": epoch + self.epoch_step / self.steps_per_epoch,
                    "lr": lr, "train_loss": loss_sum / count, "train_acc": 100 * correct / count,
                    "img_per_s": rate})
            if (config.save_every and self.step % config.save_every == 0
                    and self.epoch_step < self.steps_per_epoch):
                self.save(run_state.LAST)
        bar.close()
        loss_sum, correct, count = distributed.all_reduce_sum(self.epoch_stats, self.device)
        return {"train_loss": loss_sum / count, "train_acc": 100 * correct / count,
                "train_img_per_s": images_seen / (time.perf_counter() - start)}

    @torch.no_grad()
    def evaluate(self, loader=None) -> dict:
        """Loss (of the time-mean logits, no smoothing) and top-1/top-5 accuracy in percent,
        over every item of the test set once (summed over processes)."""
        loader = self.test_loader if loader is None else loader
        self.model.eval()
        totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1, top-5, count
        for images, labels in tqdm(loader, desc="test", unit="batch", leave=False,
                                   disable=not (self.config.progress and self.context.is_main),
                                   **_bar_interval()):
            images, labels = self._to_device(images, labels)
            with self._autocast():
                logits = self.model(images).float().mean(0)  # [B, K]
            top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # [B, 5]
            totals[0] += F.cross_entropy(logits, labels, reduction="sum").item()
            totals[1] += (top5[:, 0] == labels).sum().item()
            totals[2] += (top5 == labels[:, None]).any(-1).sum().item()
            totals[3] += labels.shape[0]
        loss_sum, top1, top5, count = distributed.all_reduce_sum(totals, self.device)
        return {"test_loss": loss_sum / count, "test_acc": 100 * top1 / count,
                "test_acc5": 100 * top5 / count}

    def save(self, name: str) -> None:
        """Write the run state into the run folder (gathers RNG states from all ranks)."""
        processes = run_state.gather_process_states(self.epoch_stats,
                                                        self.interval_stats)
        if self.context.is_main:
            run_state.save_run_state(
                self.run_dir / name, model=self.model, optimizer=self.optimizer,
                scheduler=self.schedule, scaler=self.scaler, epoch=self.epoch,
                epoch_step=self.epoch_step, step=self.step, best_acc1=self.best_acc1,
                best_step=self.best_step, processes=processes, config=self.config.to_dict(),
                world_size=self.context.world_size)
        distributed.barrier()

    def resume(self, path) -> None:
        """Continue from a run state: weights, optimizer, schedule, position, RNG."""
        state = run_state.load_run_state(path)
        saved = state["config"]
        changed = sorted(key for key, value in self.config.to_dict().items()
                         if key not in _RESUME_FREE and saved.get(key, value) != value)
        if changed and self.context.is_main:
            warnings.warn(f"resuming {path} with a different {', '.join(changed)}: the run "
                          "will not match an uninterrupted one")
        load_checkpoint(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.epoch_step = state["epoch"], state["epoch_step"]
        self.step, self.best_acc1 = state["step"], state["best_acc1"]
        self.best_step = state.get("best_step")
        processes = state["processes"]
        if len(processes) == self.context.world_size:
            own = processes[self.context.rank]
            run_state.set_rng_state(own["rng"])
            self.epoch_stats = list(own["epoch_stats"])
            self.interval_stats = list(own["interval_stats"])
        else:
            warnings.warn(f"{path} was written by {len(processes)} process(es), this run has "
                          f"{self.context.world_size}: random streams reseeded")
            seed_everything(self.config.seed + self.context.rank + self.step)
            if self.context.is_main:  # keep the epoch's sums so far on one process
                self.epoch_stats = [sum(p["epoch_stats"][i] for p in processes) for i in range(3)]
        self.log.truncate(self.epoch, self.step)

    def fit(self) -> dict:
        """Train for the remaining epochs; returns the final metrics row."""
        config, main = self.config, self.context.is_main
        if main:
            print(f"[srlib.train] {config.name}: {config.model} on {config.dataset} "
                  f"({len(self.train_set)} train / {len(self.test_set)} test), device "
                  f"{self.device}, {self.context.world_size} process(es), "
                  f"{self.steps_per_epoch} steps/epoch, run folder {self.run_dir}")
            changed = {f.name: getattr(self.perf, f.name) for f in dataclasses.fields(self.perf)
                       if getattr(self.perf, f.name) != f.default}
            print(f"[srlib.train] speed options ({config.perf!r}): "
                  + (", ".join(f"{key}={value}" for key, value in changed.items()) or "none"))
        row = {}
        for epoch in range(self.epoch, config.epochs):
            start = time.perf_counter()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            row["lr"] = self.schedule.get_last_lr()[0]
            improved = False
            if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                row.update(self.evaluate())
                improved = self.best_step is None or row["test_acc"] > self.best_acc1
                if improved:  # updated before saving: the saved run state holds the real best
                    self.best_acc1, self.best_step = row["test_acc"], self.step
            row.update(step=self.step, epoch_time_s=time.perf_counter() - start)
            self.epoch, self.epoch_step, self.epoch_stats = epoch + 1, 0, [0.0, 0.0, 0.0]
            self.save(run_state.LAST)
            if improved:
                self.save(run_state.BEST)
            self.log.epoch(row)
            if main:
                print(_summary(row, config.epochs, self.best_acc1))
        if main and config.plots:
            self.finish()
        self.log.close()
        return row

    def finish(self) -> None:
        """Curves and the per-layer firing-rate table/plot of the final model (main process)."""
        from matplotlib.figure import Figure

        from srlib import plotting
        from srlib.analysis import FiringRateMonitor

        plot_run_curves(self.run_dir, title=self.config.name)
        subset = torch.utils.data.Subset(self.test_set, range(min(RATE_IMAGES,
                                                                  len(self.test_set))))
        loader = build_loader(subset, self.config.eval_batch_size or 2 * self.config.batch_size,
                              train=False, sequence=self.info.sequence)
        self.model.eval()
        with FiringRateMonitor(self.model, rate_maps=False) as monitor, torch.no_grad():
            for images, _ in loader:
                self.model(images.to(self.device))
        table = monitor.table()
        table.to_csv(self.run_dir / "firing_rates.csv", index=False)
        with plotting.style():  # a standalone Figure: no pyplot, no global state touched
            fig = Figure(figsize=(max(plotting.FIGSIZE[0], 0.12 * len(table)),
                                  plotting.FIGSIZE[1]))
            ax = plotting.plot_layer_rates(table, ax=fig.add_subplot())
            ax.set_title(f"{self.config.name}: firing rate per layer ({len(subset)} test images)")
            fig.savefig(self.run_dir / "firing_rates.png", dpi=120, bbox_inches="tight")


def _summary(row: dict, epochs: int, best: float) -> str:
    text = (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.2f}%")
    if "test_acc" in row:
        text += (f"  |  test loss {row['test_loss']:.4f} acc {row['test_acc']:.2f}% "
                 f"(best {best:.2f}%)")
    return text + (f"  |  lr {row['lr']:.2e}  {row['epoch_time_s']:.0f} s  "
                   f"{row['train_img_per_s']:.0f} img/s")


def train(config: TrainConfig) -> dict:
    """Build a :class:`Trainer` and run it; tears the process group down afterwards."""
    try:
        return Trainer(config).fit()
    finally:
        distributed.cleanup()


__all__ = ["NonFiniteLossError", "Trainer", "train"]
