"""SSA and vanilla attention against naive loops; one interface; swaps inside SpikingResformer."""

import pytest
import torch

import srlib
from attention_oracles import ssa_naive, vanilla_naive
from srlib.attention import ATTENTIONS, SSA, VanillaAttention, create_attention
from srlib.layers import SpikingMatmul
from srlib.neurons import is_spiking_neuron, reset_states

KINDS = sorted(ATTENTIONS)


def randomize_bn(module, weight=(1.5, 3.0), bias=(0.0, 1.0)):
    """BN affine drawn away from (1, 0) so that the neurons fire often enough to test them."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(*weight)
                m.bias.uniform_(*bias)


def run(module, x, **kwargs):
    reset_states(module)
    return module(x, **kwargs)


def test_registry_and_common_interface():
    assert KINDS == ["dssa", "ssa", "vanilla"]
    x = torch.randn(2, 3, 32, 4, 8)  # [T, B, C, H, W], H != W
    for kind in KINDS:
        module = create_attention(kind, 32, 4, patch_size=2, neuron="lif")
        out, attn = run(module, x, return_attention=True)
        assert out.shape == x.shape
        N_kv = 8 if kind == "dssa" else 32
        assert attn.shape == (2, 3, 4, N_kv, 32), kind
        # the token count comes from the input: the same module serves another size
        assert run(module, torch.randn(1, 2, 32, 8, 8)).shape == (1, 2, 32, 8, 8)
    with pytest.raises(ValueError, match="divisible"):
        create_attention("ssa", 30, 4)
    with pytest.raises(ValueError, match="expected one of"):
        create_attention("softmax", 32, 4)


@pytest.mark.parametrize("spikformer_style", [False, True])
def test_ssa_matches_naive_loops(spikformer_style):
    torch.manual_seed(1)
    options = dict(input_neuron=False, output_neuron=True, qkv_bias=True, proj_bias=True) \
        if spikformer_style else {}
    module = SSA(8, 2, **options).double()
    randomize_bn(module)
    if spikformer_style:  # Spikformer's stream: sums of spikes
        x = torch.randint(0, 3, (4, 2, 8, 3, 4)).double()
    else:  # SpikingResformer's stream: real values
        x = torch.randn(4, 2, 8, 3, 4, dtype=torch.float64) * 2 + 0.5
    out, attn = run(module, x, return_attention=True)
    ref_out, ref_attn = ssa_naive(module, x)
    assert torch.equal(attn, ref_attn)  # integer counts times 2^-3: exact
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    assert 0 < attn.count_nonzero() < attn.numel()  # the test exercises the product
    assert torch.all(attn * 8 == torch.round(attn * 8)) and attn.max() <= 4 * 0.125


def test_vanilla_matches_naive_loops():
    module = VanillaAttention(8, 2, patch_size=4).double()
    randomize_bn(module, weight=(0.5, 2.0), bias=(-0.5, 0.5))
    x = torch.randn(3, 2, 8, 4, 3, dtype=torch.float64)
    out, attn = module(x, return_attention=True)
    ref_out, ref_attn = vanilla_naive(module, x)
    torch.testing.assert_close(attn, ref_attn, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 2, 2, 12, dtype=torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_spike_operands_and_spiking_outputs_are_binary(kind):
    """Every operand a SpikingMatmul declares as spikes, and every neuron output, is in {0, 1}."""
    module = create_attention(kind, 16, 2, patch_size=2)
    randomize_bn(module)
    checked = []

    def check_operands(matmul, inputs):
        left, right = inputs
        for side, operand in (("left", left), ("right", right)):
            if matmul.spike_operand in (side, "both"):
                assert torch.all((operand == 0) | (operand == 1)), (kind, side)
                checked.append(operand.sum().item())

    def check_neuron(neuron, inputs, output):
        assert torch.all((output == 0) | (output == 1)), kind
        checked.append(output.sum().item())

    for m in module.modules():
        if isinstance(m, SpikingMatmul):
            m.register_forward_pre_hook(check_operands)
        elif is_spiking_neuron(m):
            m.register_forward_hook(check_neuron)
    run(module, torch.randn(3, 2, 16, 4, 4) * 2)
    expected = {"dssa": 2 + 3, "ssa": 2 + 1 + 5, "vanilla": 0}[kind]  # operands + neurons
    assert len(checked) == expected
    assert kind == "vanilla" or sum(checked) > 0  # some spikes, not an all-zero pass


@pytest.mark.parametrize("kind", KINDS)
def test_returned_map_is_the_one_used(kind):
    torch.manual_seed(2)
    module = create_attention(kind, 16, 2, patch_size=2)
    randomize_bn(module)
    seen = {}
    module.matmul2.register_forward_pre_hook(lambda m, inputs: seen.update(operands=inputs))
    x = torch.randn(2, 2, 16, 4, 4) * 2
    out, attn = run(module, x, return_attention=True)
    left, right = seen["operands"]
    used = {"dssa": right, "ssa": left, "vanilla": right.transpose(-1, -2)}[kind]
    assert torch.equal(attn, used)
    assert torch.equal(run(module, x), out)  # asking for the map changes nothing
    assert attn.abs().sum() > 0


@pytest.mark.parametrize("cls", [SSA, VanillaAttention])
def test_patch_size_is_ignored(cls):
    x = torch.randn(2, 2, 16, 4, 4) * 2
    one, four = cls(16, 2, patch_size=1), cls(16, 2, patch_size=4)
    four.load_state_dict(one.state_dict())
    assert torch.equal(run(one, x), run(four, x))


def test_ssa_order_equals_public_imagenet_order():
    """(Q K^T) V (ours) and Q (K^T V) (the public ImageNet code) agree exactly in float32."""
    module = SSA(64, 1, input_neuron=False)
    randomize_bn(module, weight=(2.0, 3.0), bias=(0.5, 1.0))
    seen = {}
    module.matmul2.register_forward_pre_hook(lambda m, inputs: seen.update(operands=inputs))
    module.matmul1.register_forward_pre_hook(lambda m, inputs: seen.update(qk=inputs))
    run(module, torch.randint(0, 3, (2, 2, 64, 14, 14)).float())  # N = 196, d_h = 64
    q, k_t = seen["qk"]
    v = seen["operands"][1]
    ours = (q @ k_t) * 0.125 @ v
    public = (q @ (k_t @ v)) * 0.125
    assert torch.equal(ours, public)
    assert ours.max() > 64  # large integer sums, not a trivially small case


def _attention_prefixes(model):
    return {name for name, m in model.named_modules() if type(m) in ATTENTIONS.values()}


def _outside(model, prefixes):
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: tuple(t.shape) for name, t in state.items()
            if not any(name.startswith(prefix + ".") for prefix in prefixes)}


@pytest.mark.parametrize("kind", ["ssa", "vanilla"])
def test_swapping_attention_keeps_everything_else(kind):
    with torch.device("meta"):
        base = srlib.create_model("spikingresformer_ti")
        swapped = srlib.create_model("spikingresformer_ti", attention=kind)
    prefixes = _attention_prefixes(base)
    assert prefixes == _attention_prefixes(swapped) and len(prefixes) == 6
    outside = _outside(base, prefixes)
    assert outside == _outside(swapped, prefixes)
    assert any(name.startswith("layers.0.1.") for name in outside)  # GWFFN after attention
    for prefix in prefixes:
        block = swapped.get_submodule(prefix)
        assert type(block) is ATTENTIONS[kind]
        if kind == "ssa":  # the real-valued stream needs an input neuron
            assert is_spiking_neuron(block.activation_in)


@pytest.mark.parametrize("kind", ["ssa", "vanilla"])
def test_spikingresformer_with_swapped_attention_trains(kind):
    model = srlib.create_model("spikingresformer_cifar", attention=kind, img_size=16, T=2,
                               widths=(16, 32, 64), num_heads=(1, 2, 2), group_size=16)
    logits = model(torch.rand(2, 3, 16, 16))
    assert logits.shape == (2, 2, 10) and torch.isfinite(logits).all()
    logits.mean().backward()
    for prefix in _attention_prefixes(model):
        grads = [p.grad for p in model.get_submodule(prefix).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), prefix
