"""Synaptic operations (SOPs) and dense multiply-accumulates (MACs), counted the paper's way.

SOPs (Shi et al., CVPR 2024, Sec. 4 "energy"; the authors' ``SOPMonitor``): a layer driven by
spikes does one addition per spike per synapse it reaches, so its SOPs are the layer applied to
its actual input with all-ones weights, summed:

    conv / linear       SOPs = sum( layer_with_ones_weights(x) )
    left @ right        SOPs = rows(left) * sum(right)     spikes on the right
                             = sum(left) * cols(right)     spikes on the left
                             = sum(left @ right)           spikes on both (coincidences)

which marker (:class:`srlib.layers.SpikingMatmul`, attribute ``spike_operand``) says. Padding
adds nothing (padded taps see zeros). Dense MACs are what the layer shape costs whatever the
input: ``outputs * (C_in / groups) * prod(kernel)`` for a conv (padded taps included, as thop
and the authors' counter do), ``outputs * in_features`` for a linear layer,
``outputs * cols(left)`` for a product.

Which layers count, and per-image averaging, are decided by :mod:`srlib.analysis.profile`;
this module only counts. :class:`OpCounter` hooks every conv, linear and matmul module, sums
over every forward while attached, and counts the images the model saw, so that a per-image
figure is ``total / images`` exactly (the authors divide by the nominal batch size, which a
smaller last batch biases).
"""

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from srlib.layers import SpikingMatmul
from srlib.perf import as_defined

CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def exact_sum(x: torch.Tensor, dims=None) -> torch.Tensor:
    """Sum of ``x`` in float64 (over ``dims`` or all), cheaply: each slice along the first dim
    is summed in the input's precision (exact for spike counts below 2^24 per slice, i.e. per
    image and step), only the partial sums are promoted."""
    low = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None
    if dims is None:
        rows = x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)
        return rows.sum(1, dtype=low).double().sum()
    return x.sum(dims, dtype=low).double()


def _dense_matmul_type():
    """``srlib.attention.Matmul`` (a real-valued product, MACs only) when it exists."""
    from srlib import attention  # lazy: attention imports layers, not analysis
    return getattr(attention, "Matmul", None)


def _fold_time(x: torch.Tensor, weight_dim: int) -> torch.Tensor:
    """``[T, B, C, ...]`` -> ``[T*B, C, ...]`` for a multi-step conv; a plain conv's input as is."""
    return x.flatten(0, 1) if x.dim() == weight_dim + 1 else x


def conv_sops(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor:
    """SOPs of a (non-transposed) conv on input ``x``: the conv with all-ones weights, summed.

    With all-ones weights every output channel of a group sees the same sum, so one channel per
    group is convolved and the result multiplied by the group's output channels.
    """
    if module.transposed:
        raise ValueError(f"transposed convolutions are not supported, got {module}")
    spatial_dims = module.weight.dim() - 2
    x = _fold_time(x, module.weight.dim()).float()  # [N, C_in, *spatial]
    padding = module.padding
    if module.padding_mode != "zeros":  # reflect/replicate/circular pad explicitly, as torch does
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    groups = module.groups
    ones = x.new_ones(groups, module.in_channels // groups, *module.kernel_size)
    per_group = CONV_FUNCTIONS[spatial_dims](x, ones, None, module.stride, padding,
                                             module.dilation, groups)  # [N, groups, *out]
    return exact_sum(per_group) * (module.out_channels // groups)


def conv_macs(module: nn.modules.conv._ConvNd, output: torch.Tensor) -> int:
    """Dense MACs of a conv that produced ``output`` (bias additions not counted)."""
    kernel = math.prod(module.kernel_size)
    return output.numel() * (module.in_channels // module.groups) * kernel


def linear_sops(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """SOPs of a linear layer: every input unit reaches ``out_features`` synapses."""
    return exact_sum(x) * module.out_features


def linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def matmul_sops(left: torch.Tensor, right: torch.Tensor, spike_operand: str) -> torch.Tensor:
    """SOPs of ``left @ right`` (batched, broadcasting) with spikes on ``spike_operand``."""
    if left.dim() < 2 or right.dim() < 2:
        raise ValueError(f"matmul SOPs need operands with >= 2 dims, got {tuple(left.shape)} "
                         f"and {tuple(right.shape)}")
    batch = torch.broadcast_shapes(left.shape[:-2], right.shape[:-2])
    if spike_operand == "right":  # each spike in right meets every row of left
        right_sum = exact_sum(right, (-2, -1)).expand(batch)
        return right_sum.sum() * left.shape[-2]
    if spike_operand == "left":  # each spike in left meets every column of right
        left_sum = exact_sum(left, (-2, -1)).expand(batch)
        return left_sum.sum() * right.shape[-1]
    if spike_operand == "both":  # one addition per coincident pair of spikes
        return torch.matmul(left.double(), right.double()).sum()
    raise ValueError(f"spike_operand must be 'left', 'right' or 'both', got {spike_operand!r}")


def matmul_macs(left: torch.Tensor, output: torch.Tensor) -> int:
    return output.numel() * left.shape[-1]


def _spike_like(x: torch.Tensor) -> torch.Tensor:
    """True (a 0-dim tensor, no host sync) when ``x`` holds spikes or spike counts (n >= 0)."""
    return ((x >= 0) & (x == torch.round(x))).all()


@dataclass
class LayerCount:
    """Running counts of one layer over every forward while attached."""

    name: str
    type: str  # class name
    role: str  # "conv", "linear", "spiking_matmul" or "dense_matmul" (MACs only)
    order: int  # position of its first call in the forward pass
    calls: int = 0
    sops: torch.Tensor | float = 0.0  # float64 tensor once called
    macs: int = 0
    input_sum: torch.Tensor | float = 0.0  # of the spike operand(s)
    input_numel: int = 0
    spike_input: torch.Tensor | bool = True  # first call's input: non-negative integers


class OpCounter:
    """Counts SOPs, MACs and the input firing rate of every conv, linear and matmul module.

    Hooks every ``nn.Conv1d/2d/3d``, ``nn.Linear``, :class:`srlib.layers.SpikingMatmul` and
    (MACs only) ``srlib.attention.Matmul`` inside ``model``, plus the model's own forward, to
    count the images seen (``B`` of a ``[B, ...]`` or ``[T, B, ...]`` input) and the time steps
    (``T`` of the ``[T, B, K]`` output). Totals are over everything seen while attached.

    Args:
        model: the network.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        dense_matmul = _dense_matmul_type()
        self._modules = []
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
                self._modules.append((name, module, "conv"))
            elif isinstance(module, nn.Linear):
                self._modules.append((name, module, "linear"))
            elif isinstance(module, SpikingMatmul):
                self._modules.append((name, module, "spiking_matmul"))
            elif dense_matmul is not None and isinstance(module, dense_matmul):
                self._modules.append((name, module, "dense_matmul"))
        self.hooks = []
        self.reset()
        self.attach()

    def reset(self) -> None:
        self.counts: dict[str, LayerCount] = {}
        self.images = 0
        self.image_steps = 0  # sum over forwards of B * T
        self._pending_images = 0

    def attach(self) -> "OpCounter":
        if not self.hooks:
            # count the model as defined, every step, whatever speed options run it
            self._defined = contextlib.ExitStack()
            self._defined.enter_context(as_defined(self.model))
            for name, module, role in self._modules:
                self.hooks.append(module.register_forward_hook(self._hook(name, role)))
            self.hooks.append(self.model.register_forward_pre_hook(self._count_images))
            self.hooks.append(self.model.register_forward_hook(self._count_steps))
        return self

    def detach(self) -> "OpCounter":
        for hook in self.hooks:
            hook.remove()
        if self.hooks:
            self._defined.close()
        self.hooks.clear()
        return self

    def __enter__(self) -> "OpCounter":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _count_images(self, model, args):
        x = args[0] if args else None
        if not torch.is_tensor(x) or x.dim() < 2:
            raise ValueError("OpCounter needs the model called with a tensor [B, ...] or "
                             f"[T, B, ...] as first argument, got {type(x).__name__}")
        self._pending_images = x.shape[1] if x.dim() == 5 else x.shape[0]

    def _count_steps(self, model, args, output):
        T = output.shape[0] if torch.is_tensor(output) and output.dim() == 3 else 1
        self.images += self._pending_images
        self.image_steps += self._pending_images * T

    def _hook(self, name: str, role: str):
        def hook(module, inputs, output):
            with torch.no_grad():
                if role == "conv":
                    x = inputs[0].detach()
                    sops, macs, operands = conv_sops(module, x), conv_macs(module, output), [x]
                elif role == "linear":
                    x = inputs[0].detach()
                    sops, macs = linear_sops(module, x), linear_macs(module, output)
                    operands = [x]
                else:
                    left, right = (t.detach() for t in inputs[:2])
                    macs = matmul_macs(left, output)
                    if role == "dense_matmul":
                        sops, operands = torch.zeros((), dtype=torch.float64), []
                    else:
                        side = module.spike_operand
                        sops = matmul_sops(left, right, side)
                        operands = {"left": [left], "right": [right], "both": [left, right]}[side]
                self._add(name, type(module).__name__, role, sops, macs, operands)
        return hook

    def _add(self, name, type_name, role, sops, macs, operands):
        count = self.counts.get(name)
        if count is None:
            count = self.counts[name] = LayerCount(name, type_name, role, order=len(self.counts),
                                                   spike_input=role != "dense_matmul")
        count.calls += 1
        count.sops = count.sops + sops
        count.macs += macs
        for operand in operands:
            count.input_sum = count.input_sum + exact_sum(operand)
            count.input_numel += operand.numel()
            if count.calls == 1:  # checked on the first call only (it is not free)
                count.spike_input = count.spike_input & _spike_like(operand)
