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


def conv1x1(in_channels: int, out_channels: int) -> nn.Module:
    """1x1 convolution without bias, multi-step."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=1, bias=False, step_mode="m")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """3x3 convolution with padding 1 and no bias, multi-step."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                        groups=groups, bias=False, step_mode="m")


def patch_conv(in_channels: int, out_channels: int, patch_size: int) -> nn.Module:
    """p x p convolution with stride p and no padding (DSSA's token embedding), multi-step."""
    return layer.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size,
                        bias=False, step_mode="m")


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a ``[T, B, C, H, W]`` (or ``[N, C, H, W]``) tensor is laid out channels-last
    (NHWC steps) and not also plain contiguous (as when C, H and W are 1)."""
    if x.dim() == 5:
        x = x.flatten(0, 1)
    return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


class ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient channels-last.

    Batch norm's CPU backward is ~10x slower when its input is channels-last and the incoming
    gradient is not (as when DSSA splits its token embedding into heads); one layout copy of
    the gradient is far cheaper.
    """

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


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
        return self._steps(self.bn(x.flatten(0, 1)), x.shape[:2])

    @staticmethod
    def _steps(y: torch.Tensor, steps) -> torch.Tensor:
        """``[T*B, C, H, W]`` normalised -> ``[T, B, C, H, W]``; a channels-last ``y`` passes
        its gradient on channels-last (:class:`ChannelsLastGrad`)."""
        if y.requires_grad and is_channels_last(y):
            y = ChannelsLastGrad.apply(y)
        return y.unflatten(0, steps)

    def forward_repeated(self, x: torch.Tensor, repeats: int) -> torch.Tensor:
        """What ``forward`` gives for ``x`` repeated ``repeats`` times along T, computed once.

        Batch statistics of identical copies equal those of one copy, so normalising ``x``
        alone is the same map; only the running variance's unbiased correction
        ``n / (n - 1)`` depends on the count ``n``, and it is applied here for the repeated
        count, as batch norm would. For a static image's analog stem (``srlib.perf``).
        """
        bn = self.bn
        if x.dim() != 5:
            raise ValueError(f"BN expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        if not (bn.training and bn.track_running_stats) or repeats == 1:
            return self(x)  # batch statistics of one copy, or running ones: the same map
        if type(bn) is not nn.BatchNorm2d:  # SyncBatchNorm & co.: let them see every copy
            return self(x.expand(repeats * x.shape[0], *x.shape[1:]))[:x.shape[0]]
        x4 = x.flatten(0, 1)  # [T*B, C, H, W]
        y = nn.functional.batch_norm(x4, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = (1.0 / bn.num_batches_tracked.item() if bn.momentum is None
                        else bn.momentum)
            var, mean = torch.var_mean(x4, dim=(0, 2, 3), correction=0)
            count = repeats * x4.numel() // x4.shape[1]
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
            bn.running_var.lerp_((var * count / (count - 1)).to(bn.running_var.dtype), momentum)
        return self._steps(y, x.shape[:2])


def repeat_steps(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[1, B, C, H, W]`` -> ``[T, B, C, H, W]`` (copies, in the layout of ``x``)."""
    if is_channels_last(x):
        nhwc = x[0].permute(0, 2, 3, 1).repeat(T, 1, 1, 1)  # [T*B, H, W, C]
        return nhwc.permute(0, 3, 1, 2).unflatten(0, (T, x.shape[1]))
    return x.expand(T, *x.shape[1:]).contiguous()


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
        if right.dim() >= 2 and right.stride(-2) == 1 and right.stride(-1) != 1:
            # a column-major right operand (a channels-last stream seen as [.., C, HW]): the
            # transposed product reads it row by row and returns a result laid out the same way
            return (right.mT @ left.mT).mT
        return left @ right

    def extra_repr(self) -> str:
        return f"spike_operand={self.spike_operand!r}"
