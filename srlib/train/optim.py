"""Optimizer, learning-rate schedule and losses of the paper's recipes.

* AdamW whose weight decay skips norms, biases and every other 1-d / 0-d parameter (PLIF's
  ``w``), as timm's ``create_optimizer_v2`` does in the authors' code.
* Cosine decay with a linear warm-up, updated every iteration:
  lr(s) = warmup_lr + (lr - warmup_lr) s / W                                for s < W
  lr(s) = min_lr + (lr - min_lr) (1 + cos(pi (s - W) / (S - W))) / 2        for W <= s < S
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


class CosineWarmupSchedule:
    """Per-iteration cosine schedule with linear warm-up (formula in the module docstring).

    Call :meth:`step` after every optimizer step. The state is the step counter alone, so
    ``state_dict`` holds one integer.

    Args:
        optimizer: its every param group gets the same learning rate.
        total_steps: S, the number of optimizer steps of the whole run.
        lr: the peak learning rate.
        warmup_steps: W.
        warmup_lr: learning rate at step 0.
        min_lr: learning rate at step S.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, lr: float,
                 warmup_steps: int = 0, warmup_lr: float = 1e-5, min_lr: float = 1e-5):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                             f"({total_steps}) and total_steps >= 1")
        self.optimizer, self.total_steps, self.lr = optimizer, total_steps, lr
        self.warmup_steps, self.warmup_lr, self.min_lr = warmup_steps, warmup_lr, min_lr
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

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
    logits = logits.float()
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
