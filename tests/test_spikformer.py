"""Spikformer baselines: published parameter counts, naive-loop forward, contract, gradients,
and Spikformer's own neuron (SpikingJelly's MultiStepLIFNode: LIF with the Sigmoid surrogate)."""

import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

import attention_oracles
import srlib
from attention_oracles import spikformer_naive
from oracles import lif_loop
from srlib.layers import SpikingMatmul
from srlib.models import count_parameters, get_model_config
from srlib.neurons import create_neuron, set_surrogate
from srlib.perf import set_neuron_kernel

SIGMOID_ALPHA = 4.0  # SpikingJelly's surrogate.Sigmoid default, MultiStepLIFNode's surrogate

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


def lively_tiny_spikformer(stem: str):
    """(a two-block Spikformer in float64 with livelier neurons than at init, so every stage
    really fires; its input size: 2 x 2 or 4 x 4 tokens)."""
    img_size = 32 if stem == "imagenet" else 16
    model = srlib.create_model("spikformer_cifar_4_384", stem=stem, embed_dim=16, depth=2,
                               num_heads=2, img_size=img_size, T=2).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(1.5, 3.0)
                m.bias.uniform_(0.0, 1.0)
    return model, img_size


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_forward_matches_naive_loops(stem):
    torch.manual_seed(3)
    model, img_size = lively_tiny_spikformer(stem)
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


def sigmoid_derivative(u):
    """d/du sigmoid(alpha u) = alpha sigmoid(alpha u) (1 - sigmoid(alpha u)), alpha = 4."""
    sigma = 1 / (1 + torch.exp(-SIGMOID_ALPHA * u))
    return SIGMOID_ALPHA * sigma * (1 - sigma)


def sigmoid_lif_loop(x, v_threshold=1.0, tau=2.0):
    """MultiStepLIFNode(tau=2, detach_reset=True) from its equations, one step at a time:
    H = V + (X - V)/tau; S = Heaviside(H - v_threshold); V = H (1 - S), reset detached."""
    return lif_loop(x, tau=tau, v_threshold=v_threshold, derivative=sigmoid_derivative)


def sj_neurons(model):
    return [m for m in model.modules() if isinstance(m, neuron.BaseNode)]


def test_every_neuron_is_the_public_codes_multistep_lif():
    """MultiStepLIFNode(tau=2.0, detach_reset=True): hard reset to 0, input decays, Sigmoid(4);
    threshold 1, except 0.5 after Q K^T V. SpikingResformer keeps ATan(2)."""
    model = srlib.create_model("spikformer_cifar_4_384", embed_dim=16, depth=2, num_heads=2,
                               img_size=16)
    nodes = sj_neurons(model)
    assert len(nodes) == 5 + 2 * (5 + 2)  # SPS 4 + RPE; per block Q, K, V, attn, proj, 2 MLP
    for node in nodes:
        assert type(node) is neuron.LIFNode and node.tau == 2.0 and node.decay_input
        assert node.v_reset == 0.0 and node.detach_reset
        sg = node.surrogate_function
        assert type(sg) is surrogate.Sigmoid and sg.alpha == SIGMOID_ALPHA and sg.spiking
    thresholds = sorted(node.v_threshold for node in nodes)
    assert thresholds == [0.5] * 2 + [1.0] * (len(nodes) - 2)
    resformer = srlib.create_model("spikingresformer_cifar", attention="ssa")
    for node in sj_neurons(resformer):
        assert type(node.surrogate_function) is surrogate.ATan
        assert node.surrogate_function.alpha == 2.0
    atan = srlib.create_model("spikformer_cifar_4_384", embed_dim=16, depth=1, num_heads=2,
                              img_size=16, surrogate="atan")
    assert {type(n.surrogate_function) for n in sj_neurons(atan)} == {surrogate.ATan}
    with pytest.raises(ValueError, match="surrogate must be one of"):
        srlib.create_model("spikformer_8_384", surrogate="relu")


def test_sigmoid_neuron_matches_its_equations():
    """Spikes and input gradients of the Sigmoid LIF (SpikingJelly 2.0 LIFNode) against the
    equation loop (float64), and the one-step closed form
    dS/dX = (1/tau) alpha sigma (1 - sigma), sigma = sigmoid(alpha u)."""
    x = (torch.randn(12, 4, 7, dtype=torch.float64) * 1.5 + 0.6).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    weights = torch.randn_like(x)
    for threshold in (1.0, 0.5):
        node = create_neuron("lif", surrogate="sigmoid")
        node.v_threshold = threshold
        spikes, spikes_ref = node(x), sigmoid_lif_loop(x_ref, threshold)
        assert torch.equal(spikes, spikes_ref) and 0.1 < spikes.mean() < 0.7
        (spikes * weights).sum().backward()
        (spikes_ref * weights).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
        atan = x.detach().clone().requires_grad_()
        (create_neuron("lif")(atan) * weights).sum().backward()
        assert (atan.grad - x_ref.grad).abs().max() > 0.05  # the surrogate really matters
        x.grad = x_ref.grad = None
    one_step = torch.linspace(-1, 4, 11, dtype=torch.float64).requires_grad_()
    create_neuron("lif", surrogate="sigmoid")(one_step[None]).sum().backward()
    sigma = torch.sigmoid(SIGMOID_ALPHA * (one_step.detach() / 2 - 1))
    torch.testing.assert_close(one_step.grad, 0.5 * SIGMOID_ALPHA * sigma * (1 - sigma),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_gradients_match_equations_with_sigmoid_surrogate(stem, monkeypatch):
    """Input and weight gradients of a tiny Spikformer against the naive model of
    attention_oracles with its forward-only LIF replaced by the Sigmoid-surrogate loop."""
    torch.manual_seed(5)
    model, img_size = lively_tiny_spikformer(stem)
    reference, _ = lively_tiny_spikformer(stem)
    reference.load_state_dict(model.state_dict())
    monkeypatch.setattr(attention_oracles, "lif_loop", sigmoid_lif_loop)
    x = torch.rand(2, 2, 3, img_size, img_size, dtype=torch.float64).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    logits, logits_ref = model(x), spikformer_naive(reference, x_ref)
    torch.testing.assert_close(logits, logits_ref, rtol=0, atol=1e-9)
    weights = torch.randn_like(logits)
    (logits * weights).sum().backward()
    (logits_ref * weights).sum().backward()
    scale = x_ref.grad.abs().max()
    assert scale > 0
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-9 * scale)
    for (name, p), p_ref in zip(model.named_parameters(), reference.parameters()):
        if p.requires_grad:
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-9, msg=name)
    set_surrogate(model, "atan")  # SpikingResformer's surrogate: a different gradient
    x_atan = x.detach().clone().requires_grad_()
    (model(x_atan) * weights).sum().backward()
    assert (x_atan.grad - x_ref.grad).abs().max() > 0.01 * scale


def test_speed_kernels_leave_sigmoid_neurons_alone():
    """srlib.perf's kernels implement the ATan LIF only: a Spikformer keeps its neurons."""
    options = dict(embed_dim=16, depth=1, num_heads=2, img_size=16, T=2)
    model = srlib.create_model("spikformer_cifar_4_384", **options)
    x = torch.rand(2, 3, 16, 16) * 3
    before = model(x)
    for kernel in ("fused", "reference"):
        assert set_neuron_kernel(model, kernel) == 0
    assert {type(n.surrogate_function) for n in sj_neurons(model)} == {surrogate.Sigmoid}
    assert len(sj_neurons(model)) == 12 and torch.equal(model(x), before)
    atan = srlib.create_model("spikformer_cifar_4_384", surrogate="atan", **options)
    assert set_neuron_kernel(atan, "reference") == 12  # an ATan Spikformer would be swapped


def test_set_surrogate_changes_nothing_on_bad_input():
    model = torch.nn.Sequential(create_neuron("lif"), srlib.neurons.ReferenceLIF())
    with pytest.raises(TypeError, match="nothing was changed"):
        set_surrogate(model, "sigmoid")
    assert type(model[0].surrogate_function) is surrogate.ATan
    with pytest.raises(ValueError, match="unknown surrogate"):
        set_surrogate(model[:1], "relu")
