"""Spikformer's released checkpoints: their state-dict keys mapped onto srlib's Spikformer.

Spikformer's public code (Zhou et al., ICLR 2023; github.com/ZK-Zhou/spikformer,
``imagenet/model.py`` and ``cifar10/model.py``) trains with timm's script, whose checkpoint
files hold the model's weights under ``state_dict`` (next to ``optimizer``, ``epoch``, ``args``
...). Its names and srlib's (``tests/data/spikformer_*_layout.json`` lists the public ones):

    public code                         srlib
    patch_embed.proj_conv{,1,2,3}.*     patch_embed.stages.{0,1,2,3}.0.*
    patch_embed.proj_bn{,1,2,3}.*       patch_embed.stages.{0,1,2,3}.1.bn.*
    patch_embed.rpe_conv.* / rpe_bn.*   patch_embed.rpe.0.* / patch_embed.rpe.1.bn.*
    block.i.attn.q_conv.*               blocks.i.attn.q_conv.*   (k, v, proj alike)
    block.i.attn.q_bn.*                 blocks.i.attn.q_bn.bn.*
    block.i.mlp.fc1_conv.*              blocks.i.mlp.fc1_conv.*  (fc2 alike)
    block.i.norm1.*, norm2.*            blocks.i.norm1.*, norm2.*  (never called)
    head.*                              head.*

The ImageNet code's Q, K, V and projection are ``Conv1d`` (kernels ``[C, C, 1]``) and the CIFAR
code's per-token layers are ``nn.Linear`` named ``*_linear`` (weights ``[C_out, C_in]``); srlib
uses 1x1 ``Conv2d`` for both, so those kernels gain trailing singleton dimensions. BatchNorm1d
and BatchNorm2d hold the same keys. Both codes build two LayerNorms per block that ``forward``
never calls: they load into srlib's frozen copies, or are skipped (by name, nothing else) when
the model is built without them (``unused_norms=False``).
"""

import re
from collections.abc import Mapping

import torch

# top-level names only the public code uses (srlib's are patch_embed.stages/rpe and blocks)
_PREFIXES = ("block.", "patch_embed.proj_", "patch_embed.rpe_")
# the two LayerNorms per block that the public code builds and never calls
UNUSED_KEY = re.compile(r"block\.\d+\.norm[12]\.(weight|bias)")


def is_spikformer_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` uses the public Spikformer code's names."""
    return any(key.startswith(_PREFIXES) for key in state_dict)


def spikformer_key(key: str, linear: bool = False) -> str:
    """The public code's name for srlib's Spikformer key ``key``.

    Args:
        key: a key of srlib's Spikformer state dict, e.g. ``"blocks.0.attn.q_bn.bn.weight"``.
        linear: name the per-token layers ``*_linear`` (the CIFAR code) instead of ``*_conv``.
    """
    stem = re.fullmatch(r"patch_embed\.stages\.(\d)\.(0|1\.bn)\.(\w+)", key)
    if stem:
        index, part, name = stem.groups()
        layer = "proj_conv" if part == "0" else "proj_bn"
        return f"patch_embed.{layer}{'' if index == '0' else index}.{name}"
    rpe = re.fullmatch(r"patch_embed\.rpe\.(0|1\.bn)\.(\w+)", key)
    if rpe:
        part, name = rpe.groups()
        return f"patch_embed.{'rpe_conv' if part == '0' else 'rpe_bn'}.{name}"
    if not key.startswith("blocks."):
        return key  # head.*
    key = "block." + key.removeprefix("blocks.").replace("_bn.bn.", "_bn.")
    return re.sub(r"_conv\.(weight|bias)$", r"_linear.\1", key) if linear else key


def _fit_kernel(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A Conv1d ``[O, I, 1]`` or Linear ``[O, I]`` weight as the 1x1 conv ``[O, I, 1, 1]`` of
    ``shape``; any other tensor unchanged (so a wrong shape is reported as it is in the file)."""
    padded = tuple(tensor.shape) + (1,) * (len(shape) - tensor.dim())
    if tensor.dim() < len(shape) and padded == tuple(shape):
        return tensor.reshape(shape)
    return tensor


def from_spikformer_layout(state_dict: Mapping[str, torch.Tensor],
                           target_shapes: Mapping[str, torch.Size]
                           ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename (and reshape) a public-code state dict for an srlib Spikformer.

    Args:
        state_dict: the weights as the public code names them.
        target_shapes: key -> shape of the model that will receive them.

    Returns:
        ``(converted, names)``: the tensors under srlib's keys, plus every key the file does
        not fit, under its own name (so the caller reports it as unexpected); and, for each
        srlib key, the name it has in the public code (for error messages).
    """
    linear = any(key.endswith("_linear.weight") for key in state_dict)
    names = {key: spikformer_key(key, linear) for key in target_shapes}
    converted, used = {}, set()
    for key, name in names.items():
        if name in state_dict:
            converted[key] = _fit_kernel(state_dict[name], target_shapes[key])
            used.add(name)
    for name, tensor in state_dict.items():
        if name not in used and not UNUSED_KEY.fullmatch(name):
            converted[name] = tensor
    return converted, names
