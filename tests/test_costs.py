"""The dense MAC cost model against counts taken on the real modules."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from srlib.attention import Matmul, create_attention
from srlib.costs import attention_mac_table, attention_macs, total_attention_macs
from srlib.layers import SpikingMatmul
from srlib.neurons import reset_states

T, B = 2, 3
# (H, W, patch size): three token counts, every patch tiling the grid
SIZES = [(4, 4, 2), (8, 4, 4), (8, 12, 2)]


def hook_macs(module, x):
    """MACs per step and image from the actual shapes seen by forward hooks."""
    counts = {}

    def conv_hook(name):
        def hook(conv, inputs, output):
            kh, kw = conv.kernel_size
            macs = output.numel() * conv.in_channels // conv.groups * kh * kw
            counts[name] = macs // (T * B)
        return hook

    def matmul_hook(name):
        def hook(matmul, inputs, output):
            counts[name] = output.numel() * inputs[0].shape[-1] // (T * B)
        return hook

    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook(name))
        elif isinstance(m, (SpikingMatmul, Matmul)):
            m.register_forward_hook(matmul_hook(name))
    reset_states(module)
    module(x)
    return counts


def flop_counter_macs(module, x):
    """MACs per step and image of each submodule, from torch's FlopCounterMode (flops = 2 MACs)."""
    reset_states(module)
    with FlopCounterMode(display=False) as counter:
        module(x)
    prefix = type(module).__name__
    per_module = {name[len(prefix) + 1:]: sum(ops.values()) // (2 * T * B)
                  for name, ops in counter.get_flop_counts().items()
                  if name.startswith(prefix + ".") and name.count(".") == 1}
    return per_module, counter.get_total_flops() // (2 * T * B)


@pytest.mark.parametrize("kind", ["dssa", "ssa", "vanilla"])
@pytest.mark.parametrize("H, W, patch_size", SIZES)
def test_cost_model_matches_counts_on_real_modules(kind, H, W, patch_size):
    dim, num_heads = 16, 2
    module = create_attention(kind, dim, num_heads, patch_size=patch_size)
    x = torch.randn(T, B, dim, H, W)
    model = attention_macs(kind, H * W, dim, num_heads, patch_size)
    per_module, total = flop_counter_macs(module, x)
    assert per_module == model
    assert total == sum(model.values())  # nothing else in the block does a matmul or conv
    assert hook_macs(module, x) == model
    assert total_attention_macs(kind, H * W, dim, num_heads, patch_size) == total


def test_growth_with_tokens():
    C, h, N = 64, 2, 196
    for scale in (4, 16, 64):
        # DSSA with the patch growing with the image (N / p^2 fixed): exactly linear
        patch = round(scale**0.5)
        assert (total_attention_macs("dssa", scale * N, C, h, patch)
                == scale * total_attention_macs("dssa", N, C, h, 1))
        for kind in ("ssa", "vanilla"):  # 4 C^2 N + 2 C N^2
            assert total_attention_macs(kind, scale * N, C, h) == \
                4 * C * C * scale * N + 2 * C * (scale * N) ** 2
    # with a fixed patch DSSA is quadratic too: 3 C^2 N + 2 C N^2 / p^2
    assert total_attention_macs("dssa", 4 * N, C, h, 2) == 3 * C * C * 4 * N + 2 * C * 4 * N * N


def test_mac_table_and_errors():
    rows = attention_mac_table([196, 784, 3136], 64, 1, kinds=("dssa", "ssa"),
                               fixed_kv_tokens=196)
    dssa = [row for row in rows if row["kind"] == "dssa"]
    assert [row["patch_size"] for row in dssa] == [1, 2, 4]
    assert dssa[2]["macs"] == 16 * dssa[0]["macs"]
    ssa = [row["macs"] for row in rows if row["kind"] == "ssa"]
    assert ssa[2] / ssa[0] > 16 * 2  # superlinear
    with pytest.raises(ValueError, match="expected one of"):
        attention_macs("softmax", 16, 8, 2)
    with pytest.raises(ValueError, match="patch_size"):
        attention_macs("dssa", 18, 8, 2, patch_size=2)
    with pytest.raises(ValueError, match="divisible"):
        attention_macs("ssa", 16, 9, 2)
