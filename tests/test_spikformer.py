"""Spikformer baselines: published parameter counts, naive-loop forward, contract, gradients."""

import pytest
import torch

import srlib
from attention_oracles import spikformer_naive
from srlib.layers import SpikingMatmul
from srlib.models import count_parameters, get_model_config

# Zhou et al., ICLR 2023 (ImageNet Table; CIFAR-10 4-384: 9.32 M), in millions
PUBLISHED_PARAMS_M = {"spikformer_8_384": 16.81, "spikformer_6_512": 23.37,
                      "spikformer_8_512": 29.68, "spikformer_10_512": 36.01,
                      "spikformer_8_768": 66.34, "spikformer_cifar_4_384": 9.32}


def analytic_params(config) -> int:
    """Parameter count from the architecture description, written out layer by layer."""
    D, hidden, C = config.embed_dim, config.embed_dim * config.mlp_ratio, config.in_channels
    stem = 0
    for width in (D // 8, D // 4, D // 2, D):
        stem += 9 * C * width + 2 * width  # 3x3 conv without bias, BN affine
        C = width
    stem += 9 * D * D + 2 * D  # relative position conv + BN
    ssa = 3 * (D * D + 2 * D + (D if config.qkv_bias else 0)) + D * D + D + 2 * D
    mlp = D * hidden + hidden + 2 * hidden + hidden * D + D + 2 * D
    norms = 2 * 2 * D if config.unused_norms else 0
    return stem + config.depth * (ssa + mlp + norms) + D * config.num_classes + config.num_classes


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_counts_match_published(name):
    config = get_model_config(name)
    with torch.device("meta"):
        model = srlib.create_model(name)
        without_norms = srlib.create_model(name, unused_norms=False)
    count = count_parameters(model)
    assert count == analytic_params(config)
    assert abs(count / 1e6 / PUBLISHED_PARAMS_M[name] - 1) < 0.005, count
    assert abs(count_parameters(without_norms) / 1e6 / PUBLISHED_PARAMS_M[name] - 1) < 0.005


def test_zoo_registration():
    assert srlib.list_models("spikformer") == sorted(PUBLISHED_PARAMS_M)
    cifar = get_model_config("spikformer_cifar_4_384")
    assert (cifar.img_size, cifar.num_classes, cifar.num_heads, cifar.size_divisor) == \
        (32, 10, 12, 4)
    assert get_model_config("spikformer_8_512").size_divisor == 16


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_forward_matches_naive_loops(stem):
    torch.manual_seed(3)
    img_size = 32 if stem == "imagenet" else 16  # 2 x 2 or 4 x 4 tokens
    model = srlib.create_model("spikformer_cifar_4_384", stem=stem, embed_dim=16, depth=2,
                               num_heads=2, img_size=img_size, T=2).double()
    with torch.no_grad():  # livelier neurons than at init, so every stage really fires
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(1.5, 3.0)
                m.bias.uniform_(0.0, 1.0)
    x = torch.rand(2, 2, 3, img_size, img_size, dtype=torch.float64)
    logits = model(x)
    torch.testing.assert_close(logits, spikformer_naive(model, x), rtol=0, atol=1e-9)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 2, 16, img_size // model.config.size_divisor,
                            img_size // model.config.size_divisor)


def test_stream_is_spike_counts_and_spike_operands_are_binary():
    model = srlib.create_model("spikformer_cifar_4_384", embed_dim=32, depth=2, num_heads=2,
                               img_size=16, T=2)
    seen = {"operands": 0, "blocks": []}

    def check_operands(matmul, inputs):
        for side, operand in zip(("left", "right"), inputs):
            if matmul.spike_operand in (side, "both"):
                assert torch.all((operand == 0) | (operand == 1)), side
                seen["operands"] += 1

    for m in model.modules():
        if isinstance(m, SpikingMatmul):
            m.register_forward_pre_hook(check_operands)
    model.patch_embed.register_forward_hook(lambda m, i, out: seen.update(stem=out))
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, out: seen["blocks"].append(out))
    model(torch.rand(2, 3, 16, 16))
    assert seen["operands"] == 2 * 3  # Q, K^T and V in each block
    assert set(seen["stem"].unique().tolist()) <= {0.0, 1.0, 2.0}
    for out in seen["blocks"]:  # sums of spikes: non-negative integers
        assert torch.all(out >= 0) and torch.equal(out, out.round())


def test_forward_contract():
    model = srlib.create_model("spikformer_cifar_4_384", embed_dim=16, depth=1, num_heads=2,
                               img_size=16)
    x = torch.rand(2, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (4, 2, 10)  # [T, B, K] with the config's T = 4
    assert torch.equal(model(x), logits)  # neurons reset at every call
    assert model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1)).shape == (3, 2, 10)
    for bad in (torch.rand(3, 16, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 3, 18, 16),
                torch.rand(1, 1, 1, 2, 3, 16, 16)):
        with pytest.raises(ValueError, match="expected input"):
            model(bad)
    with pytest.raises(ValueError, match="multiple of 16"):
        srlib.create_model("spikformer_8_384", img_size=40)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_every_trainable_parameter_gets_a_gradient(name):
    img_size = 4 * get_model_config(name).size_divisor  # 4 x 4 tokens (16 px or 64 px)
    model = srlib.create_model(name, img_size=img_size, T=1)
    logits = model(torch.rand(1, 3, img_size, img_size))
    assert logits.shape == (1, 1, get_model_config(name).num_classes)
    logits.logsumexp(-1).mean().backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(model.unused_parameter_names()) == {
        f"blocks.{i}.norm{j}.{w}" for i in range(model.config.depth) for j in (1, 2)
        for w in ("weight", "bias")}
    assert all(model.get_parameter(n).grad is None for n in frozen)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_init_follows_the_public_code():
    """CIFAR code: per-token nn.Linear layers, trunc-normal(0.02) and zero bias. ImageNet code:
    Conv1d/Conv2d with PyTorch's default init (uniform, bound 1/sqrt(fan_in)); both heads are
    trunc-normal(0.02)."""
    options = dict(embed_dim=256, depth=1, num_heads=2)
    cifar = srlib.create_model("spikformer_cifar_4_384", **options)
    imagenet = srlib.create_model("spikformer_8_384", **options)
    for model in (cifar, imagenet):
        assert abs(model.head.weight.std().item() / 0.02 - 1) < 0.05
        assert not model.head.bias.any()
    for name in ("q_conv", "proj_conv"):
        conv = cifar.blocks[0].attn.get_submodule(name)
        assert abs(conv.weight.std().item() / 0.02 - 1) < 0.05 and not conv.bias.any()
        conv = imagenet.blocks[0].attn.get_submodule(name)
        bound = 1 / 256**0.5
        assert conv.weight.abs().max() <= bound
        assert abs(conv.weight.std().item() / (bound / 3**0.5) - 1) < 0.05
    assert cifar.blocks[0].attn.q_conv.bias is not None  # qkv_bias in the CIFAR code
    assert imagenet.blocks[0].attn.q_conv.bias is None
