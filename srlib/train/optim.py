"""Optimizer, learning-rate schedules and losses of the paper's recipes.

* AdamW whose weight decay skips norms, biases and every other 1-d / 0-d parameter (PLIF's
  ``w``), as timm's ``create_optimizer_v2`` does in the authors' code.
* Cosine decay with a linear warm-up, in one of two forms (``schedule_unit``):

  "step" (srlib's main job): updated at every optimizer step s of S_c = cosine steps, W warm-up
  steps; the warm-up reaches the peak, then the cosine spans the remaining steps:
      lr(s) = warmup_lr + (lr - warmup_lr) s / W                                for s < W
      lr(s) = min_lr + (lr - min_lr) (1 + cos(pi (s - W) / (S_c - W))) / 2      for W <= s < S_c

  "epoch" (the authors'): timm's ``CosineLRScheduler`` as their ``main.py`` builds it
  (``create_scheduler_v2(sched='cosine', num_epochs=E, warmup_epochs=W, warmup_lr, min_lr)``,
  ``warmup_prefix=False``) and steps it once per epoch: every step of epoch e uses
      lr(e) = warmup_lr + (lr - warmup_lr) e / W                                for e < W
      lr(e) = min_lr + (lr - min_lr) (1 + cos(pi e / E_c)) / 2                  for W <= e < E_c
  The warm-up lies inside the cosine, which starts at its top at e = 0: the peak lr itself is
  never used (epoch W gets cos(pi W / E_c)), and the decay reaches min_lr only as e -> E_c.

  Both hold min_lr after the cosine: E_c = epochs - cooldown_epochs (Spikformer's timm script
  trains 10 cooldown epochs at min_lr; the SpikingResformer authors pass cooldown_epochs=10 but
  train exactly ``epochs``, so their E_c is the whole run). The per-step form changes the lr
  smoothly inside an epoch and reaches the peak; the per-epoch form is what the paper's numbers
  were trained with, so the paper recipes use it.
* The loss is taken on the time-mean of the per-step logits ``[T, B, K]``; TET (Deng et al.,
  ICLR 2022) instead averages the per-step losses and can add an MSE pull of the logits
  towards a constant phi.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights (dim >= 2), and the rest without decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)


class StepSchedule:
    """A learning rate that is a function of the optimizer step, ``lr_at(step)``.

    Call :meth:`step` after every optimizer step. The state is the step counter alone, so
    ``state_dict`` holds one integer and a resumed run continues exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


class CosineWarmupSchedule(StepSchedule):
    """Per-step cosine schedule with linear warm-up ("step" in the module docstring); steps
    past ``total_steps`` hold ``min_lr``.

    Args:
        optimizer: its every param group gets the same learning rate.
        total_steps: S_c, the optimizer steps of the cosine (the whole run without cooldown).
        lr: the peak learning rate.
        warmup_steps: W.
        warmup_lr: learning rate at step 0.
        min_lr: learning rate at step S_c and after.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, lr: float,
                 warmup_steps: int = 0, warmup_lr: float = 1e-5, min_lr: float = 1e-5):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                             f"({total_steps}) and total_steps >= 1")
        self.total_steps, self.lr = total_steps, lr
        self.warmup_steps, self.warmup_lr, self.min_lr = warmup_steps, warmup_lr, min_lr
        super().__init__(optimizer)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class EpochCosineSchedule(StepSchedule):
    """The authors' per-epoch cosine ("epoch" in the module docstring: timm's
    ``CosineLRScheduler``, one cycle, ``warmup_prefix=False``), driven per optimizer step: every
    step of epoch e = step // steps_per_epoch gets lr(e).

    Args:
        optimizer: its every param group gets the same learning rate.
        steps_per_epoch: optimizer steps per epoch.
        cosine_epochs: E_c, the length of the cosine in epochs (timm's ``t_initial``); later
            epochs hold ``min_lr``.
        lr: the cosine's top (timm's base lr).
        warmup_epochs: W (timm's ``warmup_t``), inside the cosine.
        warmup_lr: learning rate of epoch 0.
        min_lr: the cosine's bottom.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                 cosine_epochs: int, lr: float, warmup_epochs: float = 0,
                 warmup_lr: float = 1e-5, min_lr: float = 1e-5):
        if steps_per_epoch < 1 or cosine_epochs < 1 or not 0 <= warmup_epochs <= cosine_epochs:
            raise ValueError(f"need steps_per_epoch ({steps_per_epoch}) >= 1, cosine_epochs "
                             f"({cosine_epochs}) >= 1 and 0 <= warmup_epochs ({warmup_epochs}) "
                             "<= cosine_epochs")
        self.steps_per_epoch, self.cosine_epochs, self.lr = steps_per_epoch, cosine_epochs, lr
        self.warmup_epochs, self.warmup_lr, self.min_lr = warmup_epochs, warmup_lr, min_lr
        super().__init__(optimizer)

    def lr_at(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        if epoch < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * epoch / self.warmup_epochs
        if epoch >= self.cosine_epochs:
            return self.min_lr
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (
            1 + math.cos(math.pi * epoch / self.cosine_epochs))


def build_schedule(optimizer: torch.optim.Optimizer, config,
                   steps_per_epoch: int) -> StepSchedule:
    """The schedule of a :class:`~srlib.train.TrainConfig` (``schedule_unit``, ``lr``,
    ``warmup_epochs``, ``warmup_lr``, ``min_lr``, ``epochs``, ``cooldown_epochs``) for a run of
    ``steps_per_epoch`` optimizer steps per epoch."""
    cosine_epochs = config.epochs - config.cooldown_epochs
    if config.schedule_unit == "epoch":
        return EpochCosineSchedule(optimizer, steps_per_epoch, cosine_epochs, config.lr,
                                   warmup_epochs=min(config.warmup_epochs, cosine_epochs),
                                   warmup_lr=config.warmup_lr, min_lr=config.min_lr)
    total = cosine_epochs * steps_per_epoch
    return CosineWarmupSchedule(optimizer, total, config.lr,
                                warmup_steps=min(round(config.warmup_epochs * steps_per_epoch),
                                                 total),
                                warmup_lr=config.warmup_lr, min_lr=config.min_lr)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, *, kind: str = "mean",
                        label_smoothing: float = 0.0, tet_lambda: float = 0.0,
                        tet_phi: float = 1.0) -> torch.Tensor:
    """Cross-entropy of per-step logits.

    Args:
        logits: ``[T, B, K]``.
        targets: class indices ``[B]`` or soft labels ``[B, K]`` (Mixup / CutMix).
        kind: ``"mean"``: CE(mean_t logits, y). ``"tet"``: (1 - lambda) mean_t CE(logits_t, y)
            + lambda mean_t MSE(logits_t, phi).
        label_smoothing: mixes the targets with the uniform distribution.
        tet_lambda: weight of TET's MSE term.
        tet_phi: TET's MSE target value.
    """
    T, B, K = logits.shape
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if kind == "mean":
        return F.cross_entropy(logits.mean(0), targets, label_smoothing=label_smoothing)
    if kind != "tet":
        raise ValueError(f"loss kind must be 'mean' or 'tet', got {kind!r}")
    repeated = targets.expand(T, *targets.shape).flatten(0, 1)  # [T*B] or [T*B, K]
    ce = F.cross_entropy(logits.flatten(0, 1), repeated, label_smoothing=label_smoothing)
    if tet_lambda == 0:
        return ce
    mse = F.mse_loss(logits, torch.full_like(logits, tet_phi))
    return (1 - tet_lambda) * ce + tet_lambda * mse
