"""The training engine: one :class:`Trainer` for a laptop CPU and for torchrun on GPU clusters.

    trainer = Trainer(load_config("configs/default.yaml"))
    trainer.fit()            # -> runs/<name>/{last.pth, best.pth, metrics.csv, curves.png, ...}

Each optimizer step: for each of ``accum_steps`` micro-batches, a finiteness check of the batch
-> (Mixup/CutMix) -> model under autocast -> per-step logits [T, B, K] -> loss on their time-mean
(or TET), divided by ``accum_steps`` -> backward (DDP averages gradients, on the last
micro-batch only) ; then the gradient check, optional clipping, AdamW, the cosine schedule
(per step or per epoch, :mod:`srlib.train.optim`) and the state check (:mod:`srlib.train.finite`).
Steps, logging, ``save_every`` and the resume position count optimizer steps. Evaluation runs
in float32 unless ``eval_amp`` (the authors evaluate in fp32; fp16 can flip a spike sitting at
the threshold) and sums loss and correct counts over every process and every test item exactly
once. The run state (see :mod:`srlib.train.run_state`) holds everything needed to resume bit
for bit.
"""

import contextlib
import dataclasses
import itertools
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler
from torchvision import tv_tensors
from tqdm.auto import tqdm

from srlib.checkpoint import load_checkpoint
from srlib.data import build_loader, dataset_info, mixup_cutmix
from srlib.perf import PerfOptions, apply_perf_options, tune_cpu_allocator
from srlib.train import distributed, run_state
from srlib.train.config import TrainConfig
from srlib.train.finite import (FiniteChecks, NonFiniteError, NonFiniteLossError,
                                describe_item)
from srlib.train.metrics import (RunLog, classification_totals, plot_run_curves,
                                 totals_to_metrics, write_firing_rates)
from srlib.train.optim import build_optimizer, build_schedule, classification_loss
from srlib.train.setup import build_datasets, build_model, seed_everything

# config fields that may differ between a run and its resumption without changing its course
_RESUME_FREE = {"resume", "progress", "tensorboard", "plots", "log_every", "workers", "device",
                "save_every", "eval_batch_size", "tune_allocator", "omp_wait_policy", "eval_amp"}
RATE_IMAGES = 512  # test images for the per-layer firing-rate table at the end of a run


def _bar_interval() -> dict:
    """tqdm refresh settings: live on a terminal or in Jupyter; every 30 s into a log file or a
    cluster job's output, so that a long run's log holds lines, not one line per step."""
    live = sys.stderr.isatty() or "ipykernel" in sys.modules
    return {} if live else {"mininterval": 30.0}


class Trainer:
    """Builds a run from a :class:`TrainConfig` and trains it.

    Construction joins the process group (under torchrun), seeds, builds the datasets and
    loaders, the model (on its device, with its speed options, DDP-wrapped), AdamW, the schedule,
    reads the run state of ``config.resume`` if given, and only then creates the run folder:
    a bad recipe, checkpoint or accumulation count fails before anything is written. Then
    :meth:`fit` trains; :meth:`train_step`, :meth:`evaluate` and :meth:`save` are usable on
    their own.

    Gradient accumulation (``accum_steps`` = k): the loader's batches are micro-batches of
    ``batch_size``; every k of them make one optimizer step, whose gradient is the mean of their
    mean-loss gradients: that of one batch of k x ``batch_size`` for a model without batch
    statistics. Batch norm differs: each micro-batch is normalised with its own statistics, and
    the running statistics move k times per step. An epoch holds ``batches // k`` steps; the
    last ``batches % k`` micro-batches fill no step and are skipped, as ``drop_last`` skips a
    partial batch (the number is printed when the run starts).

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
        batches = len(self.train_loader)  # micro-batches per epoch and process
        if batches == 0:
            raise ValueError(f"{len(self.train_set)} training items make no full batch of "
                             f"{config.batch_size} per process x {self.context.world_size}")
        if batches < config.accum_steps:
            raise ValueError(
                f"accum_steps {config.accum_steps} exceeds the {batches} batches per epoch of "
                f"each process ({len(self.train_set)} training items, batch_size "
                f"{config.batch_size} x {self.context.world_size} process(es)): no optimizer "
                "step would fit in an epoch")
        self.steps_per_epoch = batches // config.accum_steps  # optimizer steps
        # the last batches % accum_steps micro-batches of an epoch fill no optimizer step and
        # are skipped, as drop_last skips a partial batch: the authors' 1,281,167 ImageNet
        # images make 5004 steps of 256 on 8 GPUs x 32, and so on 2 GPUs x 32 x 4
        self.skipped_batches = batches % config.accum_steps
        self._build_model()
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay,
                                         tuple(config.betas))
        self.schedule = build_schedule(self.optimizer, config, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.mix = mixup_cutmix(config.num_classes or self.info.num_classes, config.mixup,
                                config.cutmix, config.mixup_switch_prob)
        self.mixing = self.mix is not None  # off from mixup_off_epoch on
        self.run_dir = Path(config.output_dir) / config.name
        self.epoch, self.epoch_step, self.step = 0, 0, 0
        self.best_acc1, self.best_step = 0.0, None  # best test accuracy and its step
        self.epoch_stats = [0.0, 0.0, 0.0]  # loss sum, correct, count (this process)
        self.interval_stats = [0.0, 0.0, 0.0]  # the same since the last steps.csv row
        resume = config.resume
        if resume == "auto":  # continue this run if it has a run state, else start afresh
            last = self.run_dir / run_state.LAST
            resume = str(last) if last.is_file() else None
        if resume:
            self._restore(resume)  # a run state that does not fit fails here, nothing written
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.run_dir, self.context.is_main, config.tensorboard)
        self.checks = FiniteChecks(self.model, self.device, self.context.rank,
                                   self.info.sequence, self.run_dir / run_state.LAST)
        if resume:
            self.log.truncate(self.epoch, self.step)

    def _build_model(self) -> None:
        config = self.config
        self.model = build_model(config, self.device)  # state dicts and evaluation use it
        self.perf = PerfOptions.from_spec(config.perf, self.device, self.model)
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

    def _autocast(self, evaluation: bool = False):
        if self.config.amp == "none" or (evaluation and not self.config.eval_amp):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        return (images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True))

    def _mix(self, images: torch.Tensor, labels: torch.Tensor):
        """Mixup/CutMix on the batch axis (time-major sequences are mixed batch-first)."""
        if not self.mixing:
            return images, labels
        if self.info.sequence:  # torchvision mixes 5-d batches only as videos
            video = tv_tensors.Video(images.transpose(0, 1))  # [B, T, C, H, W]
            mixed, targets = self.mix(video, labels)
            return mixed.as_subclass(torch.Tensor).transpose(0, 1), targets  # [T, B, C, H, W]
        return self.mix(images, labels)

    def _where(self, micro: int) -> str:
        """Where in the run a micro-batch is, for error messages."""
        k = self.config.accum_steps
        return (f"epoch {self.epoch + 1}, step {self.step + 1}"
                + (f" (micro-batch {micro + 1} of {k})" if k > 1 else ""))

    def _locate(self, micro: int, index: int) -> str:
        """The dataset item behind sample ``index`` of micro-batch ``micro`` of this step."""
        order = list(DistributedSampler.__iter__(self.train_loader.sampler))  # the epoch's
        position = (self.epoch_step * self.config.accum_steps + micro) * \
            self.config.batch_size + index
        if position >= len(order):
            return "position unknown: not this trainer's loader"
        return describe_item(self.train_set, order[position])

    def train_step(self, images, labels) -> dict:
        """One optimizer step; returns its mean loss, correct count and items (this process).

        The batch check assumes the batch comes from this trainer's loader at its current
        position (it names the item's dataset index).

        Args:
            images: a batch ``[B, ...]`` (``[T, B, ...]`` for event data), or a list of
                ``accum_steps`` such micro-batches.
            labels: its labels ``[B]``, or the list of the micro-batches' labels.

        Raises:
            NonFiniteError: a batch, the loss, a gradient or the model state holds NaN or
                infinity (see :mod:`srlib.train.finite`); the run folder is untouched.
        """
        config = self.config
        if torch.is_tensor(images):
            images, labels = [images], [labels]
        k = len(images)
        if k != config.accum_steps or len(labels) != k:
            raise ValueError(f"train_step needs accum_steps = {config.accum_steps} "
                             f"micro-batch(es), got {k} image and {len(labels)} label batch(es)")
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, correct, count = 0.0, 0, 0
        for micro, (micro_images, micro_labels) in enumerate(zip(images, labels)):
            micro_images, micro_labels = self._to_device(micro_images, micro_labels)
            self.checks.batch(micro_images, self._where(micro),
                              lambda index: self._locate(micro, index))
            inputs, targets = self._mix(micro_images, micro_labels)
            # DDP averages gradients on the last micro-batch only: the others accumulate locally
            last = micro == k - 1
            sync = (self.network.no_sync() if self.context.enabled and not last
                    else contextlib.nullcontext())
            with sync:
                with self._autocast():
                    logits = self.network(inputs)  # [T, B, K]
                    loss = classification_loss(logits, targets, kind=config.loss,
                                               label_smoothing=config.label_smoothing,
                                               tet_lambda=config.tet_lambda,
                                               tet_phi=config.tet_phi)
                value = loss.item()
                self.checks.loss(value, self._where(micro))
                self.scaler.scale(loss / k).backward()
            items = micro_labels.shape[0]
            loss_sum, count = loss_sum + value * items, count + items
            correct += (logits.detach().mean(0).argmax(-1) == micro_labels).sum().item()
        if not self.scaler.is_enabled():  # fp16: the scaler skips overflowing steps itself
            self.checks.gradients(self._where(k - 1))
        if config.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self.checks.state(self._where(k - 1))
        return {"loss": loss_sum / count, "correct": correct, "count": count}

    def train_epoch(self, epoch: int) -> dict:
        """Train one epoch (from ``self.epoch_step`` on, when resuming); returns its means."""
        config = self.config
        self.model.train()
        self.mixing = self.mix is not None and not (config.mixup_off_epoch and
                                                    epoch >= config.mixup_off_epoch)
        k = config.accum_steps
        self.train_loader.sampler.set_epoch(epoch, start=self.epoch_step * k * config.batch_size)
        bar = tqdm(total=self.steps_per_epoch, initial=self.epoch_step, unit="step",
                   desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True,
                   disable=not (config.progress and self.context.is_main), leave=False,
                   **_bar_interval())
        start, images_seen = time.perf_counter(), 0
        micro_images, micro_labels = [], []
        remaining = (self.steps_per_epoch - self.epoch_step) * k  # micro-batches left to run
        for images, labels in itertools.islice(self.train_loader, remaining):
            micro_images.append(images)
            micro_labels.append(labels)
            if len(micro_images) < k:
                continue
            result = self.train_step(micro_images, micro_labels)
            micro_images, micro_labels = [], []
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
        over every item of the test set once (summed over processes); in float32 unless
        ``eval_amp``."""
        loader = self.test_loader if loader is None else loader
        self.model.eval()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        for images, labels in tqdm(loader, desc="test", unit="batch", leave=False,
                                   disable=not (self.config.progress and self.context.is_main),
                                   **_bar_interval()):
            images, labels = self._to_device(images, labels)
            with self._autocast(evaluation=True):
                logits = self.model(images)  # [T, B, K]
            totals += classification_totals(logits, labels)  # loss sum, top-1, top-5, count
        return totals_to_metrics(distributed.all_reduce_sum(totals.tolist(), self.device))

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
        """Continue from a run state: weights, optimizer, schedule, position, RNG; the run
        folder's tables lose the rows written after it."""
        self._restore(path)
        self.log.truncate(self.epoch, self.step)

    def _restore(self, path) -> None:
        """Load a run state into the trainer (writes no file)."""
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

    def fit(self) -> dict:
        """Train for the remaining epochs; returns the final metrics row."""
        config, main = self.config, self.context.is_main
        if main:
            print(f"[srlib.train] {config.name}: {config.model} on {config.dataset} "
                  f"({len(self.train_set)} train / {len(self.test_set)} test), device "
                  f"{self.device}, {self.context.world_size} process(es), "
                  f"{self.steps_per_epoch} steps/epoch of {config.accum_steps} x "
                  f"{config.batch_size} x {self.context.world_size} = "
                  f"{config.accum_steps * config.batch_size * self.context.world_size} "
                  f"images, run folder {self.run_dir}")
            changed = {f.name: getattr(self.perf, f.name) for f in dataclasses.fields(self.perf)
                       if getattr(self.perf, f.name) != f.default}
            if self.skipped_batches:
                print(f"[srlib.train] the last {self.skipped_batches} batch(es) of each epoch "
                      f"({self.skipped_batches * config.batch_size} images per process) fill no "
                      f"optimizer step of {config.accum_steps} and are skipped")
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
        plot_run_curves(self.run_dir, title=self.config.name)
        subset = torch.utils.data.Subset(self.test_set, range(min(RATE_IMAGES,
                                                                  len(self.test_set))))
        loader = build_loader(subset, self.config.eval_batch_size or 2 * self.config.batch_size,
                              train=False, sequence=self.info.sequence)
        write_firing_rates(self.run_dir, self.model, loader, self.device,
                           title=f"{self.config.name}: firing rate per layer ({len(subset)} "
                                 "test images)")


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


__all__ = ["NonFiniteError", "NonFiniteLossError", "Trainer", "train"]
