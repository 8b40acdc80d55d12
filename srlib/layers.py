"""Multi-step layers: convolutions, batch norm and the spiking matmul marker.

Every layer takes a time-major tensor ``[T, B, ...]``. Convolutions and batch norm fold time into
the batch (``[T * B, ...]``), so batch norm normalises over time and batch together, as in the
paper. Parameter names follow the authors' code so that their checkpoints load unchanged.
"""

import torch
from spikingjelly.activation_based import layer
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def conv1x1(in_channels: int, out_channels: int, bias: bool = False) -> nn.Module:
    """1x1 convolution (a per-token linear layer), multi-step; no bias unless asked."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias, step_mode="m")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """3x3 convolution with padding 1 and no bias, multi-step."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                        groups=groups, bias=False, step_mode="m")


def patch_conv(in_channels: int, out_channels: int, patch_size: int) -> nn.Module:
    """p x p convolution with stride p and no padding (DSSA's token embedding), multi-step."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size,
                        bias=False, step_mode="m")


class BN(nn.Module):
    """BatchNorm2d over ``[T, B, C, H, W]`` with time and batch flattened together.

    The inner module is called ``bn`` (checkpoint keys end in ``.bn.weight`` etc.).
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"BN expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        T, B = x.shape[:2]
        y = self.bn(x.flatten(0, 1))  # [T*B, C, H, W]: statistics over time and batch
        return y.unflatten(0, (T, B))  # [T, B, C, H, W]


class SpikingMatmul(nn.Module):
    """``left @ right`` where one operand is binary spikes: a marker for SOP accounting.

    Args:
        spike_operand: which operand carries the spikes, ``"left"``, ``"right"`` or ``"both"``.
            The synaptic-operation count of ``left @ right`` with spikes on the right is
            ``rows(left) * sum(right)``: each spike in ``right`` triggers one addition per row
            of ``left`` (paper Sec. 4, energy).
    """

    def __init__(self, spike_operand: str = "right"):
        super().__init__()
        if spike_operand not in ("left", "right", "both"):
            raise ValueError(f"spike_operand must be 'left', 'right' or 'both', "
                             f"got {spike_operand!r}")
        self.spike_operand = spike_operand

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right

    def extra_repr(self) -> str:
        return f"spike_operand={self.spike_operand!r}"
