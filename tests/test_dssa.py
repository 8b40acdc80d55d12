"""DSSA against a naive per-step, per-head loop reference in float64 (train and eval)."""

import pytest
import torch

from oracles import dssa_naive
from srlib.attention import DSSA
from srlib.neurons import reset_states


def make_pair(dim=6, num_heads=2, patch_size=2):
    module = DSSA(dim, num_heads, patch_size=patch_size).double()
    for bn in (module.norm.bn, module.norm_proj.bn):  # non-trivial affine parameters
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    oracle = DSSA(dim, num_heads, patch_size=patch_size).double()
    oracle.load_state_dict(module.state_dict())
    return module, oracle


def assert_same_state(module, oracle):
    for (name, a), (_, b) in zip(module.state_dict().items(), oracle.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)


def test_train_mode_matches_naive_over_two_batches():
    module, oracle = make_pair()
    module.train(), oracle.train()
    for step in range(3):
        x = (torch.randn(3, 2, 6, 4, 4, dtype=torch.float64) * 2 + 0.5).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        reset_states(module)  # a block keeps its membranes; the model resets them per call
        out, attn = module(x, return_attention=True)
        out_ref, attn_ref = dssa_naive(oracle, x_ref, training=True)
        torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-10)
        assert torch.equal(attn, attn_ref)
        assert 0 < attn.mean() < 1, "attention spikes should be neither silent nor saturated"
        weights = torch.randn_like(out)
        (out * weights).sum().backward()
        (out_ref * weights).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
        for (name, p), p_ref in zip(module.named_parameters(), oracle.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-8, atol=1e-10, msg=name)
        # BN running statistics and firing-rate running averages
        assert_same_state(module, oracle)
        module.zero_grad(), oracle.zero_grad()
    assert module.firing_rate_x.abs().sum() > 0 and module.firing_rate_attn.abs().sum() > 0


def test_first_batch_initialises_rates_then_running_average():
    module, _ = make_pair()
    x = torch.randn(2, 2, 6, 4, 4, dtype=torch.float64) * 2
    module(x)
    module.activation_in.reset()  # recompute the input spikes from rest
    s = module.activation_in(x).reshape(2, 2, 2, 3, 16)  # [T, B, h, d, HW]
    rate = s.mean((0, 1, 3, 4)).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(module.firing_rate_x, rate)
    x2 = torch.randn(2, 2, 6, 4, 4, dtype=torch.float64) * 3
    reset_states(module)
    module(x2)
    module.activation_in.reset()
    rate2 = module.activation_in(x2).reshape(2, 2, 2, 3, 16).mean((0, 1, 3, 4)).view_as(rate)
    torch.testing.assert_close(module.firing_rate_x, rate * 0.999 + rate2 * 0.001)


def test_eval_mode_matches_naive_and_freezes_rates():
    module, oracle = make_pair(dim=8, num_heads=2, patch_size=1)
    warm = torch.randn(2, 3, 8, 4, 4, dtype=torch.float64) * 2
    module.train()(warm), oracle.train()(warm)
    module.eval(), oracle.eval()
    reset_states(module)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.randn(2, 2, 8, 4, 4, dtype=torch.float64) * 2
    out = module(x)
    out_ref, _ = dssa_naive(oracle, x, training=False)
    torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-10)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed in eval mode"


def test_token_count_comes_from_the_input():
    module = DSSA(8, 2, patch_size=2).double()
    for size in (4, 8):  # N_kv = (size/2)^2: 4 then 16 tokens
        x = torch.randn(2, 1, 8, size, size, dtype=torch.float64) * 2
        reset_states(module)
        out, attn = module(x, return_attention=True)
        assert out.shape == x.shape
        assert attn.shape == (2, 1, 2, (size // 2) ** 2, size * size)


def test_larger_inputs_match_naive_with_fresh_rates():
    for size in (4, 8):
        module, oracle = make_pair(dim=4, num_heads=2, patch_size=2)
        x = torch.randn(2, 1, 4, size, size, dtype=torch.float64) * 2
        torch.testing.assert_close(module(x), dssa_naive(oracle, x, True)[0],
                                   rtol=1e-9, atol=1e-10)


def test_untrained_eval_and_silent_heads_stay_finite():
    module = DSSA(4, 2, patch_size=1).eval()
    out = module(torch.randn(2, 2, 4, 4, 4) * 3)
    assert torch.isfinite(out).all()
    assert module.firing_rate_x.abs().sum() == 0, "eval must not write the running averages"
    module.train()
    reset_states(module)
    x = torch.zeros(2, 2, 4, 4, 4, requires_grad=True)  # no input spike in any head
    silent = module(x)
    assert torch.isfinite(silent).all()
    silent.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        DSSA(6, 4)
