"""Faster drop-in variants of srlib's plain modules, swapped in by :mod:`srlib.perf`.

Each class here subclasses a plain module (:class:`srlib.layers.BN`,
:class:`srlib.layers.SpikingMatmul`, :class:`srlib.attention.DSSA`, the stem's
``nn.Sequential``), adds no parameter or buffer, and computes the same numbers; only the memory
layout or the amount of repeated work differs. :func:`swap_class` turns a built module into
its variant in place (its parameters, buffers, hooks and state-dict keys stay), so checkpoints
move freely between a plain and a fast model. ``tests/test_perf_options.py`` checks every
variant against its plain module: outputs, gradients, running statistics, state dicts.

Channels-last (NHWC) variants keep a channels-last stream channels-last end to end (oneDNN
convolutions are fastest in NHWC, and a layout change per layer costs a copy):

- :class:`ChannelsLastBN` hands its gradient on channels-last (batch norm's CPU backward is ~10x
  slower with a channels-last input and a plain gradient, as after DSSA's head split);
- :class:`ChannelsLastSpikingMatmul` multiplies a column-major spike operand (a channels-last
  stream seen as ``[.., C, HW]``) in transposed order, keeping the result column-major;
- :class:`ChannelsLastDSSA` merges its heads straight into an NHWC stream.

:class:`StemOnce` runs SpikingResformer's analog stem (conv, BN, max-pool: no neuron) once when
every time step holds the very same image (direct encoding, a zero time stride) and repeats its
output; batch norm's running variance gets the unbiased correction of the repeated count, so
running statistics match the plain model exactly.
"""

import torch
from torch import nn

from srlib.attention import DSSA
from srlib.layers import BN, SpikingMatmul


def swap_class(module: nn.Module, variant: type) -> nn.Module:
    """Make ``module`` an instance of ``variant`` (a subclass of its class adding no state).

    The object is kept, so parameters, buffers, hooks and state-dict keys are unchanged.
    """
    if not issubclass(variant, type(module)) and not issubclass(type(module), variant):
        raise TypeError(f"{variant.__name__} is not a variant of {type(module).__name__}")
    module.__class__ = variant
    return module


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a ``[T, B, C, H, W]`` (or ``[N, C, H, W]``) tensor is laid out channels-last
    (NHWC steps) and not also plain contiguous (as when C, H and W are 1)."""
    if x.dim() == 5:
        x = x.flatten(0, 1)
    return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


def channels_last_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[O, I, kh, kw]`` with the NHWC strides ``(kh*kw*I, 1, kw*I, I)`` exactly.

    ``.contiguous(channels_last)`` alone leaves a tensor unchanged when its plain layout is
    already "channels-last contiguous", as when a dimension is 1, and then keeps its plain
    strides. Two cases matter: with one input channel (a 1-channel image's stem, depthwise
    convolutions) the convolution then keeps its output NCHW, and the 1-channel stem of the
    Fashion-MNIST model sent all of stage 0 down the slow mixed-layout path; with a 1x1 kernel
    the weight's gradient comes back NHWC-strided while DDP's gradient buckets follow the
    weight's plain strides ("Grad strides do not match bucket view strides"). The same memory
    read with the canonical NHWC strides is unambiguous in both.
    """
    _, in_channels, kh, kw = weight.shape
    nhwc = weight.contiguous(memory_format=torch.channels_last)  # NHWC order in memory
    return nhwc.as_strided(weight.shape, (kh * kw * in_channels, 1, kw * in_channels, in_channels))


class ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient channels-last."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


def _to_steps(y: torch.Tensor, steps) -> torch.Tensor:
    """``[T*B, C, H, W]`` normalised -> ``[T, B, C, H, W]``; a channels-last ``y`` passes its
    gradient on channels-last."""
    if y.requires_grad and is_channels_last(y):
        y = ChannelsLastGrad.apply(y)
    return y.unflatten(0, steps)


class ChannelsLastBN(BN):
    """:class:`srlib.layers.BN` whose gradient leaves channels-last when its output is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"BN expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        return _to_steps(self.bn(x.flatten(0, 1)), x.shape[:2])


class ChannelsLastSpikingMatmul(SpikingMatmul):
    """:class:`srlib.layers.SpikingMatmul` that keeps a column-major right operand's layout."""

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        if right.dim() >= 2 and right.stride(-2) == 1 and right.stride(-1) != 1:
            # (left @ right) = (right^T @ left^T)^T: reads right row by row, and the result is
            # laid out like right (column-major)
            return (right.mT @ left.mT).mT
        return left @ right


class ChannelsLastDSSA(DSSA):
    """:class:`srlib.attention.DSSA` whose heads merge straight into an NHWC stream."""

    @staticmethod
    def merge_heads(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not is_channels_last(x):
            return DSSA.merge_heads(out, x)
        T, B, h, d, _ = out.shape
        H, W = x.shape[-2:]
        out = out.permute(0, 1, 4, 2, 3).contiguous()  # [T, B, HW, h, d] in memory
        return out.view(T, B, H, W, h * d).permute(0, 1, 4, 2, 3)  # [T, B, C, H, W], NHWC


CHANNELS_LAST_VARIANTS = {BN: ChannelsLastBN, SpikingMatmul: ChannelsLastSpikingMatmul,
                          DSSA: ChannelsLastDSSA}


def batch_norm_repeated(module: BN, x: torch.Tensor, repeats: int) -> torch.Tensor:
    """What ``module(x repeated repeats times along T)`` gives, computed on ``x`` once.

    Batch statistics of identical copies equal those of one copy, so normalising ``x`` alone
    is the same map; only the running variance's unbiased correction ``n / (n - 1)`` depends on
    the count ``n``, and it is applied here for the repeated count, as batch norm would.
    Batch-norm subclasses (``SyncBatchNorm``, whose statistics are all-reduced) see every copy.
    """
    bn = module.bn
    if x.dim() != 5:
        raise ValueError(f"BN expects [T, B, C, H, W], got shape {tuple(x.shape)}")
    if not (bn.training and bn.track_running_stats) or repeats == 1:
        return module(x)  # batch statistics of one copy, or running ones: the same map
    if type(bn) is not nn.BatchNorm2d:
        return module(x.expand(repeats * x.shape[0], *x.shape[1:]))[:x.shape[0]]
    x4 = x.flatten(0, 1)  # [T*B, C, H, W]
    y = nn.functional.batch_norm(x4, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / bn.num_batches_tracked.item() if bn.momentum is None else bn.momentum
        var, mean = torch.var_mean(x4, dim=(0, 2, 3), correction=0)
        count = repeats * x4.numel() // x4.shape[1]
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
        bn.running_var.lerp_((var * count / (count - 1)).to(bn.running_var.dtype), momentum)
    return _to_steps(y, x.shape[:2])


def repeat_steps(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[1, B, C, H, W]`` -> ``[T, B, C, H, W]`` (copies, in the layout of ``x``)."""
    if is_channels_last(x):
        nhwc = x[0].permute(0, 2, 3, 1).repeat(T, 1, 1, 1)  # [T*B, H, W, C]
        return nhwc.permute(0, 3, 1, 2).unflatten(0, (T, x.shape[1]))
    return x.expand(T, *x.shape[1:]).contiguous()


class StemOnce(nn.Sequential):
    """An analog stem (``nn.Sequential`` of multi-step conv / BN / pooling, no neuron) that runs
    once when all T steps of its input are the same tensor.

    A static image enters the model as a view with time stride 0 (direct encoding, see
    :func:`srlib.models._common.to_time_major`): then the stem's T outputs are equal, so one is
    computed and repeated. Any other input (event frames ``[T, B, ...]``) runs every step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[0] == 1 or x.stride(0) != 0:
            return super().forward(x)
        T = x.shape[0]
        y = x[:1]  # [1, B, C, H, W]: one step stands for all T
        for module in self:
            y = batch_norm_repeated(module, y, T) if isinstance(module, BN) else module(y)
        return repeat_steps(y, T)  # [T, B, C0, H/stem, W/stem]


__all__ = ["CHANNELS_LAST_VARIANTS", "ChannelsLastBN", "ChannelsLastDSSA", "ChannelsLastGrad",
           "ChannelsLastSpikingMatmul", "StemOnce", "batch_norm_repeated", "channels_last_weight",
           "is_channels_last", "repeat_steps", "swap_class"]
