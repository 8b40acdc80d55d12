"""SpikingResformer (Shi, Hao, Yu, CVPR 2024): a ResNet-style multi-stage spiking transformer.

The residual stream is real-valued; every sub-block starts with its own spiking neuron:

    stem -> [stage 0: (DSSA, GWFFN) x d0] -> down -> [stage 1: ...] -> down -> [stage 2: ...]
         -> global average pool -> Linear (no bias) -> per-step logits [T, B, K]

GWFFN, the Group-Wise spiking Feed-Forward Network (paper Sec. 3.3, "GWSFFN"):
    u = BN(Conv1x1(SN(x)))                (C -> ratio*C)
    v = BN(GroupConv3x3(SN(u))) + u       (groups of ``group_size`` channels)
    result = BN(Conv1x1(SN(v))) + x       (ratio*C -> C)

Module and parameter names follow the authors' code, so their released checkpoints load as is.
"""

import math
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import layer
from torch import nn

from srlib.attention import create_attention
from srlib.layers import BN, conv1x1, conv3x3
from srlib.models._common import to_time_major
from srlib.neurons import create_neuron, reset_states

STEMS = ("imagenet", "small")  # 7x7/2 conv + BN + 3x3/2 max-pool, or 3x3/1 conv + BN
INIT_STD = 0.02  # truncated-normal std of conv/linear weights (authors' code)


@dataclass(frozen=True)
class SpikingResformerConfig:
    """Everything that defines a SpikingResformer; the zoo's variants are instances of it."""

    widths: tuple[int, ...] = (64, 192, 384)  # channels per stage; the stem outputs widths[0]
    depths: tuple[int, ...] = (1, 2, 3)  # (DSSA, GWFFN) pairs per stage
    num_heads: tuple[int, ...] = (1, 3, 6)  # 64 channels per head at every ImageNet stage
    patch_sizes: tuple[int, ...] = (4, 2, 1)  # DSSA patch p per stage: N_kv = HW / p^2
    stem: str = "imagenet"
    group_size: int = 64  # channels per group in GWFFN's 3x3 group conv (32 for DVS)
    ffn_ratio: int = 4  # GWFFN hidden width = ffn_ratio * C
    neuron: str = "lif"  # "lif" everywhere but the DVS128 Gesture model ("plif")
    attention: str = "dssa"  # which token mixer fills the attention slots
    in_channels: int = 3
    num_classes: int = 1000
    img_size: int = 224  # nominal input size: used for defaults and checks, not frozen in layers
    T: int = 4  # time steps for static (direct-encoded) input

    def __post_init__(self):
        stages = len(self.widths)
        if not len(self.depths) == len(self.num_heads) == len(self.patch_sizes) == stages:
            raise ValueError("widths, depths, num_heads and patch_sizes need one entry per stage, "
                             f"got {self.widths}, {self.depths}, {self.num_heads}, "
                             f"{self.patch_sizes}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        for width, heads in zip(self.widths, self.num_heads):
            if width % heads or (width * self.ffn_ratio) % self.group_size:
                raise ValueError(f"width {width} must be divisible by its {heads} heads and "
                                 f"{width}*{self.ffn_ratio} by group_size {self.group_size}")
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if self.img_size % self.size_divisor:
            raise ValueError(f"img_size {self.img_size} must be a multiple of "
                             f"{self.size_divisor} for this stem and these patch sizes")

    @property
    def stem_stride(self) -> int:
        return 4 if self.stem == "imagenet" else 1

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (every DSSA patch must tile)."""
        divisor = 1
        for stage, patch in enumerate(self.patch_sizes):
            divisor = math.lcm(divisor, self.stem_stride * 2**stage * patch)
        return divisor


class GWFFN(nn.Module):
    """Group-wise spiking feed-forward network with an inner and an outer residual."""

    def __init__(self, dim: int, ratio: int = 4, group_size: int = 64, neuron: str = "lif"):
        super().__init__()
        hidden = dim * ratio
        self.up = nn.Sequential(create_neuron(neuron), conv1x1(dim, hidden), BN(hidden))
        # a list of one block, as in the authors' code (checkpoint keys "conv.0.*")
        self.conv = nn.ModuleList([nn.Sequential(
            create_neuron(neuron), conv3x3(hidden, hidden, groups=hidden // group_size),
            BN(hidden))])
        self.down = nn.Sequential(create_neuron(neuron), conv1x1(hidden, dim), BN(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up(x)  # [T, B, ratio*C, H, W]
        v = u
        for block in self.conv:
            v = block(v)
        v = v + u
        return self.down(v) + x  # [T, B, C, H, W]


class DownsampleLayer(nn.Module):
    """SN -> 3x3 conv stride 2 -> BN, between stages (no residual)."""

    def __init__(self, in_channels: int, out_channels: int, neuron: str = "lif"):
        super().__init__()
        self.activation = create_neuron(neuron)
        self.conv = conv3x3(in_channels, out_channels, stride=2)
        self.norm = BN(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.activation(x)))  # [T, B, C', H/2, W/2]


def build_stem(config: SpikingResformerConfig) -> nn.Sequential:
    """The analog stem: no neuron, the image enters the first conv directly."""
    in_channels, width = config.in_channels, config.widths[0]
    if config.stem == "imagenet":
        return nn.Sequential(
            layer.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, step_mode="m"),
            BN(width),
            layer.MaxPool2d(kernel_size=3, stride=2, padding=1, step_mode="m"))
    return nn.Sequential(
        layer.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False, step_mode="m"),
        BN(width))


class SpikingResformer(nn.Module):
    """The SpikingResformer network.

    ``forward`` takes a static batch ``[B, C, H, W]`` (direct encoding: the same image at every
    one of ``config.T`` steps) or a time-major sequence ``[T, B, C, H, W]`` and returns per-step
    logits ``[T, B, num_classes]``; the loss is usually taken on their mean over T. Neuron
    states are reset at the start of every call.
    """

    def __init__(self, config: SpikingResformerConfig):
        super().__init__()
        self.config = config
        self.prologue = build_stem(config)
        self.layers = nn.Sequential()
        for stage, (width, depth) in enumerate(zip(config.widths, config.depths)):
            blocks = nn.Sequential()
            if stage > 0:
                blocks.append(DownsampleLayer(config.widths[stage - 1], width, config.neuron))
            for _ in range(depth):
                blocks.append(create_attention(config.attention, width, config.num_heads[stage],
                                               patch_size=config.patch_sizes[stage],
                                               neuron=config.neuron))
                blocks.append(GWFFN(width, config.ffn_ratio, config.group_size, config.neuron))
            self.layers.append(blocks)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.classifier = layer.Linear(config.widths[-1], config.num_classes, bias=False,
                                       step_mode="m")
        self.init_weights()

    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input and return it as ``[T, B, C, H, W]`` (repeating a static image)."""
        config = self.config
        return to_time_major(x, config.in_channels, config.size_divisor, config.T)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: ``[T, B, C_last, H/s, W/s]`` real-valued features."""
        reset_states(self)
        x = self.prologue(self.to_time_major(x))  # [T, B, C0, H/stem, W/stem]
        return self.layers(x)  # [T, B, C_last, H/s, W/s]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(x).flatten(2)  # [T, B, C_last]
        return self.classifier(x)  # [T, B, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# The zoo. Parameter counts (with BN affine) are checked against the authors' released
# checkpoints' layout in tests/data/official_checkpoint_layout.json (tests/test_models.py).
_IMAGENET = dict(depths=(1, 2, 3), patch_sizes=(4, 2, 1))
VARIANTS = {
    "spikingresformer_ti": SpikingResformerConfig(widths=(64, 192, 384), num_heads=(1, 3, 6),
                                                  **_IMAGENET),
    "spikingresformer_s": SpikingResformerConfig(widths=(64, 256, 512), num_heads=(1, 4, 8),
                                                 **_IMAGENET),
    "spikingresformer_m": SpikingResformerConfig(widths=(64, 384, 768), num_heads=(1, 6, 12),
                                                 **_IMAGENET),
    "spikingresformer_l": SpikingResformerConfig(widths=(128, 512, 1024), num_heads=(2, 8, 16),
                                                 **_IMAGENET),
    # Ti* of the paper's CIFAR table: Ti with a 3x3 stride-1 stem and no max-pool
    "spikingresformer_cifar": SpikingResformerConfig(
        widths=(64, 192, 384), num_heads=(1, 3, 6), stem="small", num_classes=10, img_size=32,
        **_IMAGENET),
    # DVS128 Gesture: PLIF neurons, narrow stages, 32 channels per group, 64x64 frames
    "spikingresformer_dvsg": SpikingResformerConfig(
        widths=(32, 96, 192), num_heads=(1, 3, 6), stem="small", group_size=32, neuron="plif",
        num_classes=11, img_size=64, T=16, **_IMAGENET),
    # the small model of the Fashion-MNIST main job (configs/default.yaml): 1 grey channel
    # padded to 32x32, the ImageNet stem (32 -> 8), one DSSA+GWFFN block per stage,
    # GWFFN ratio 2 with 16 channels per group; sized to train in minutes on 2 CPU cores
    "spikingresformer_fmnist": SpikingResformerConfig(
        widths=(32, 64, 128), depths=(1, 1, 1), num_heads=(1, 2, 4), patch_sizes=(2, 1, 1),
        group_size=16, ffn_ratio=2, in_channels=1, num_classes=10, img_size=32),
}
