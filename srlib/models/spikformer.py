"""Spikformer (Zhou et al., ICLR 2023): the spiking transformer baseline SpikingResformer beats.

Built as the authors' public ImageNet and CIFAR code builds it:

    image -> SPS stem -> [block: x = x + SSA(x); x = x + MLP(x)] x depth
          -> mean over tokens -> Linear (with bias) -> per-step logits [T, B, K]

SPS, Spiking Patch Splitting: four [3x3 conv (no bias) -> BN -> SN (-> 3x3/2 max-pool)] stages
widening D/8 -> D/4 -> D/2 -> D, then a relative-position branch ``x + SN(BN(Conv3x3(x)))``.
The ImageNet stem pools after all four (16x fewer pixels per side), the CIFAR stem only after
the last two (4x). Every branch ends in a spiking neuron and adds onto the stream (SEW-style
residual), so the stream holds sums of spikes: non-negative integers, not binary spikes.
SSA is :class:`srlib.attention.SSA` without an input neuron and with Spikformer's output neuron
and projection bias. MLP: ``SN(BN(Conv1x1 + bias))`` to ``mlp_ratio * D``, then back to D.

The public code returns ``Linear(mean over T and tokens)``; we return the per-step logits
``Linear(mean over tokens)``, whose mean over T is exactly that (the head is affine).
The public code also builds two LayerNorms per block that it never calls; the published
parameter counts include them, so we build them too (``unused_norms``), frozen.

Neurons: the public code builds every neuron as SpikingJelly's
``MultiStepLIFNode(tau=2.0, detach_reset=True)`` (the one after ``Q K^T V`` with threshold 0.5):
the LIF of :mod:`srlib.neurons` with that class's default surrogate gradient, Sigmoid with
alpha = 4 (``surrogate="sigmoid"``), not SpikingResformer's ATan. Spikes are the same either
way; the gradients, and so training, differ.

Released weights (timm's checkpoint files, keys such as ``block.0.attn.q_conv.weight``) load with
:func:`srlib.load_checkpoint`; the key mapping is in :mod:`srlib.models.spikformer_keys`.
"""

from dataclasses import dataclass

import torch
from spikingjelly.activation_based import layer
from torch import nn

from srlib.attention import SSA
from srlib.layers import BN, conv1x1, conv3x3
from srlib.models._common import to_time_major
from srlib.neurons import SURROGATES, create_neuron, reset_states

STEM_POOLS = {  # after which of the four SPS convs a 3x3/2 max-pool follows
    "imagenet": (True, True, True, True),  # 16x downsampling: 224 px -> 14 x 14 tokens
    "cifar": (False, False, True, True),  # 4x: 32 px -> 8 x 8 tokens
}
INIT_STD = 0.02  # truncated-normal std of the public code's nn.Linear layers
LAYER_NORM_EPS = 1e-6  # the public ImageNet code's norm_layer (never called)


@dataclass(frozen=True)
class SpikformerConfig:
    """Everything that defines a Spikformer-L-D (L blocks of width D)."""

    embed_dim: int = 384  # D; the stem widens D/8 -> D/4 -> D/2 -> D
    depth: int = 8  # L, number of (SSA, MLP) blocks
    num_heads: int = 8  # the public ImageNet code uses 8 at every width, CIFAR 12
    mlp_ratio: int = 4
    stem: str = "imagenet"  # "imagenet" (16x downsampling) or "cifar" (4x)
    qkv_bias: bool = False  # the CIFAR code's Q, K, V are nn.Linear, with a bias
    linear_init: bool = False  # CIFAR: the token-wise layers start trunc-normal (they are Linear)
    unused_norms: bool = True  # build the public code's two never-called LayerNorms per block
    neuron: str = "lif"
    surrogate: str = "sigmoid"  # SpikingJelly MultiStepLIFNode's default, as the public code
    in_channels: int = 3
    num_classes: int = 1000
    img_size: int = 224  # nominal input size: used for defaults and checks, not frozen in layers
    T: int = 4  # time steps for static (direct-encoded) input

    def __post_init__(self):
        if self.stem not in STEM_POOLS:
            raise ValueError(f"stem must be one of {sorted(STEM_POOLS)}, got {self.stem!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, "
                             f"got {self.surrogate!r}")
        if self.embed_dim % 8 or self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by 8 (stem widths) "
                             f"and by num_heads {self.num_heads}")
        if min(self.depth, self.mlp_ratio, self.T) < 1:
            raise ValueError(f"depth, mlp_ratio and T must be >= 1, got {self.depth}, "
                             f"{self.mlp_ratio}, {self.T}")
        if self.img_size % self.size_divisor:
            raise ValueError(f"img_size {self.img_size} must be a multiple of "
                             f"{self.size_divisor} for the {self.stem!r} stem")

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (the stem's downsampling)."""
        return 2 ** sum(STEM_POOLS[self.stem])


class SPS(nn.Module):
    """Spiking Patch Splitting stem: ``[T, B, C_in, H, W]`` -> ``[T, B, D, H/s, W/s]``.

    The output is ``spikes + SN(BN(Conv3x3(spikes)))``, values in {0, 1, 2}.
    """

    def __init__(self, in_channels: int, embed_dim: int, stem: str = "imagenet",
                 neuron: str = "lif", surrogate: str = "sigmoid"):
        super().__init__()
        widths = (embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim)
        self.stages = nn.Sequential()
        for width, pool in zip(widths, STEM_POOLS[stem]):
            stage = nn.Sequential(conv3x3(in_channels, width), BN(width),
                                  create_neuron(neuron, surrogate))
            if pool:
                stage.append(layer.MaxPool2d(kernel_size=3, stride=2, padding=1, step_mode="m"))
            self.stages.append(stage)
            in_channels = width
        self.rpe = nn.Sequential(conv3x3(embed_dim, embed_dim), BN(embed_dim),
                                 create_neuron(neuron, surrogate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)  # [T, B, D, H/s, W/s] spikes
        return x + self.rpe(x)  # relative position embedding, values in {0, 1, 2}


class MLP(nn.Module):
    """``SN(BN(Conv1x1(SN(BN(Conv1x1(x))))))``, D -> ratio*D -> D, biases on; no residual."""

    def __init__(self, dim: int, ratio: int = 4, neuron: str = "lif", surrogate: str = "sigmoid"):
        super().__init__()
        hidden = dim * ratio
        self.fc1_conv, self.fc1_bn = conv1x1(dim, hidden, bias=True), BN(hidden)
        self.fc1_lif = create_neuron(neuron, surrogate)
        self.fc2_conv, self.fc2_bn = conv1x1(hidden, dim, bias=True), BN(dim)
        self.fc2_lif = create_neuron(neuron, surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1_lif(self.fc1_bn(self.fc1_conv(x)))  # [T, B, ratio*D, H, W] spikes
        return self.fc2_lif(self.fc2_bn(self.fc2_conv(x)))  # [T, B, D, H, W] spikes


class SpikformerBlock(nn.Module):
    """``x = SSA(x)`` (residual inside, as every srlib attention); ``x = x + MLP(x)``."""

    def __init__(self, config: SpikformerConfig):
        super().__init__()
        dim = config.embed_dim
        if config.unused_norms:
            # never called (as in the public code); frozen so that DDP and the optimizer see
            # no trainable parameter without a gradient, kept for the published counts
            self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS).requires_grad_(False)
        # the stream is already a sum of spikes: no input neuron (unlike inside SpikingResformer)
        self.attn = SSA(dim, config.num_heads, neuron=config.neuron, input_neuron=False,
                        output_neuron=True, qkv_bias=config.qkv_bias, proj_bias=True,
                        surrogate=config.surrogate)
        if config.unused_norms:
            self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS).requires_grad_(False)
        self.mlp = MLP(dim, config.mlp_ratio, config.neuron, config.surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)  # x + SSA(x)
        return x + self.mlp(x)  # [T, B, D, H, W]


class Spikformer(nn.Module):
    """The Spikformer network, with SpikingResformer's forward contract.

    ``forward`` takes a static batch ``[B, C, H, W]`` (direct encoding: the same image at every
    one of ``config.T`` steps) or a time-major sequence ``[T, B, C, H, W]`` and returns per-step
    logits ``[T, B, num_classes]``. Neuron states are reset at the start of every call.
    """

    def __init__(self, config: SpikformerConfig):
        super().__init__()
        self.config = config
        self.patch_embed = SPS(config.in_channels, config.embed_dim, config.stem, config.neuron,
                               config.surrogate)
        self.blocks = nn.Sequential(*(SpikformerBlock(config) for _ in range(config.depth)))
        self.head = layer.Linear(config.embed_dim, config.num_classes, bias=True, step_mode="m")
        self.init_weights()

    def init_weights(self) -> None:
        """As the public code: ``nn.Linear`` layers trunc-normal(0.02) with zero bias, convs and
        BN keep PyTorch's defaults. The CIFAR code's per-token layers are ``nn.Linear``
        (``linear_init``); the ImageNet code's are convs."""
        linears = [self.head]
        if self.config.linear_init:
            linears += [m for m in self.blocks.modules() if isinstance(m, nn.Conv2d)]
        for module in linears:
            nn.init.trunc_normal_(module.weight, std=INIT_STD)
            nn.init.zeros_(module.bias)

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input and return it as ``[T, B, C, H, W]`` (repeating a static image)."""
        config = self.config
        return to_time_major(x, config.in_channels, config.size_divisor, config.T)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and blocks: ``[T, B, D, H/s, W/s]``, sums of spikes."""
        reset_states(self)
        x = self.patch_embed(self.to_time_major(x))  # [T, B, D, H/s, W/s]
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(3).mean(3)  # [T, B, D], mean over tokens
        return self.head(x)  # [T, B, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def unused_parameter_names(self) -> list[str]:
        """Parameters that never take part in ``forward`` (the frozen, never-called LayerNorms),
        so they never get a gradient."""
        return [name for name, p in self.named_parameters() if not p.requires_grad]


# The zoo. Published parameter counts (Zhou et al. 2023): 16.81 M, 23.37 M, 29.68 M, 36.01 M,
# 66.34 M (ImageNet), 9.32 M (CIFAR-10 4-384); tests/test_spikformer.py checks them.
_CIFAR = dict(stem="cifar", qkv_bias=True, linear_init=True, num_classes=10, img_size=32)
SPIKFORMER_VARIANTS = {
    "spikformer_8_384": SpikformerConfig(embed_dim=384, depth=8),
    "spikformer_6_512": SpikformerConfig(embed_dim=512, depth=6),
    "spikformer_8_512": SpikformerConfig(embed_dim=512, depth=8),
    "spikformer_10_512": SpikformerConfig(embed_dim=512, depth=10),
    "spikformer_8_768": SpikformerConfig(embed_dim=768, depth=8),
    # the public CIFAR-10 recipe: 4 blocks of 384, 12 heads (d_h = 32), T = 4
    "spikformer_cifar_4_384": SpikformerConfig(embed_dim=384, depth=4, num_heads=12, **_CIFAR),
}
