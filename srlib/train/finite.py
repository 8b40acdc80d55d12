"""Non-finite guards: a NaN or infinity anywhere in a step stops the run with an error that says
where it came from.

A NaN spreads silently through a spiking network. One NaN pixel in one training image sets a
stem batch-norm running mean to NaN; the loss stays finite (a neuron fed NaN simply does not
fire), and from then on the model, in eval mode, outputs all-zero logits on clean input. So the
engine checks, at every step, with one fused reduction per group and one host sync each
(a sum or 2-norm, through which NaN and infinity propagate; only when it is not finite, an exact
element-wise check, since a huge but finite tensor can overflow it):

    the batch       before it reaches the model (the sample's index is named)
    the loss        before backward
    the gradients   after backward, before the optimizer step (without a grad scaler: with fp16,
                    the scaler itself skips steps whose gradients overflow, legitimately)
    the state       parameters and floating buffers (batch-norm statistics, DSSA's firing-rate
                    averages) after the step, before anything can be saved

and raises a :class:`NonFiniteError` subclass (:class:`FiniteChecks` does all four for the
trainer). The run folder keeps its last good run state. Under DDP every process takes the same
branch: a check whose value may differ between processes ends in one small collective.
"""

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from srlib.train import distributed


class NonFiniteError(RuntimeError):
    """A NaN or infinity stopped the run; the run folder keeps its last good run state."""


class NonFiniteBatchError(NonFiniteError):
    """A training batch holds NaN or infinite values (caught before the model saw it)."""


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN or infinite (nothing updated)."""


class NonFiniteGradientError(NonFiniteError):
    """A gradient became NaN or infinite (caught before the optimizer step)."""


class NonFiniteStateError(NonFiniteError):
    """A parameter or buffer became NaN or infinite during the step."""


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Every value of every tensor is finite.

    A fused ``torch._foreach_norm`` (2-norm) per dtype, summed: NaN and infinity propagate into
    it, and it costs a fraction of an element-wise test. Only if that sum is not finite are the
    tensors tested element by element (finite values large enough to overflow the sum pass).
    """
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault(tensor.dtype, []).append(tensor.detach())
    if all(bool(torch.stack(torch._foreach_norm(group)).sum().isfinite())
           for group in groups.values()):
        return True
    return all(bool(torch.isfinite(tensor).all()) for tensor in tensors)


def batch_finite(images: torch.Tensor) -> bool:
    """Every value of a batch is finite: its sum, then (only if that is not) each element."""
    return bool(images.sum().isfinite()) or bool(torch.isfinite(images).all())


def model_state(model: nn.Module) -> list[torch.Tensor]:
    """Parameters and floating-point buffers (BN statistics, DSSA rates; not the counters)."""
    return [*model.parameters(),
            *(buffer for buffer in model.buffers() if buffer.is_floating_point())]


def gradients(model: nn.Module) -> list[torch.Tensor]:
    return [parameter.grad for parameter in model.parameters() if parameter.grad is not None]


def first_non_finite_sample(images: torch.Tensor, time_major: bool) -> int:
    """Index in the batch of the first sample holding a NaN or infinity (``[B, ...]``, or
    ``[T, B, ...]`` when ``time_major``)."""
    bad = ~torch.isfinite(images)
    if time_major:
        bad = bad.transpose(0, 1)  # [B, T, ...]
    return int(bad.flatten(1).any(1).nonzero()[0, 0])


def non_finite_names(model: nn.Module, gradient: bool = False) -> list[str]:
    """Names of the parameters (or their gradients) and buffers holding NaN or infinity (for
    the error message; slow, only on the error path)."""
    if gradient:
        return [name for name, parameter in model.named_parameters()
                if parameter.grad is not None and not torch.isfinite(parameter.grad).all()]
    named = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, tensor in named
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def describe_item(dataset, index: int) -> str:
    """``dataset index i`` of an item, followed through ``Subset`` wrappers to the full set, with
    its file when the dataset lists files (``samples``, as image folders do)."""
    text = f"dataset index {index}"
    while isinstance(dataset, torch.utils.data.Subset):
        index, dataset = dataset.indices[index], dataset.dataset
        text += f" (index {index} of the full set)"
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)) and isinstance(samples[index], (list, tuple)):
        text += f", file {samples[index][0]}"
    return text


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


class FiniteChecks:
    """The trainer's four checks (module docstring). ``where`` arguments say where in the run
    the step is, e.g. "epoch 2, step 371".

    Args:
        model: the unwrapped model (parameters, gradients, buffers).
        device: where the batches and the model live.
        rank: this process (for messages).
        time_major: batches are ``[T, B, ...]``.
        last_state: the run state file that stays the last good one.
    """

    def __init__(self, model: nn.Module, device: torch.device, rank: int, time_major: bool,
                 last_state: Path):
        self.model, self.device, self.rank = model, device, rank
        self.time_major, self.last_state = time_major, last_state

    def _stop(self) -> str:
        return f"The last good run state is {self.last_state}."

    def batch(self, images: torch.Tensor, where: str, locate: Callable[[int], str]) -> None:
        """Raise :class:`NonFiniteBatchError` if ``images`` (on any process) holds NaN or
        infinity; ``locate(i)`` describes sample i of this process's batch."""
        bad_here = not batch_finite(images)
        if not distributed.any_process([bad_here], self.device)[0]:
            return
        if not bad_here:
            raise NonFiniteBatchError(f"non-finite input on another process at {where}: "
                                      f"stopping. {self._stop()}")
        index = first_non_finite_sample(images, self.time_major)
        raise NonFiniteBatchError(
            f"non-finite input at {where} on rank {self.rank}: sample {index} of the batch "
            f"({locate(index)}) holds NaN or infinite values; it was not fed to the model. "
            f"{self._stop()} Check or remove that item.")

    def loss(self, value: float, where: str) -> None:
        """Raise :class:`NonFiniteLossError` if the loss of any process is not finite."""
        if not math.isfinite(distributed.all_reduce_sum([value], self.device)[0]):
            raise NonFiniteLossError(
                f"non-finite loss ({value} on rank {self.rank}) at {where}: stopping. "
                f"{self._stop()} Try a lower lr, clip_grad or amp='none'.")

    def gradients(self, where: str) -> None:
        """Before the optimizer step (DDP's averaged gradients agree on every process)."""
        if not all_finite(gradients(self.model)):
            names = non_finite_names(self.model, gradient=True)
            raise NonFiniteGradientError(
                f"non-finite gradient at {where} in {len(names)} parameter(s) ({_names(names)})"
                f": stopping before the optimizer step, the weights are unchanged. "
                f"{self._stop()} Try a lower lr or clip_grad.")

    def state(self, where: str) -> None:
        """After the optimizer step: parameters and buffers (BN statistics, DSSA rates)."""
        bad_here = not all_finite(model_state(self.model))
        if not distributed.any_process([bad_here], self.device)[0]:
            return
        names = non_finite_names(self.model) if bad_here else []
        culprit = (f"in {len(names)} parameter(s) / buffer(s) ({_names(names)}) on rank "
                   f"{self.rank}" if names else "on another process")
        raise NonFiniteStateError(f"non-finite model state after {where} {culprit}: stopping; "
                                  f"this state is not saved. {self._stop()}")
