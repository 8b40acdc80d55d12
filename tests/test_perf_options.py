"""Speed and memory options (srlib.fused, srlib.swaps, srlib.perf, srlib.memory) compute what the
plain model computes: spikes bitwise, gradients and buffers to rounding, state dicts unchanged."""

import copy
import subprocess
import sys

import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

import srlib
from oracles import lif_loop
from srlib.fused import FusedLIFFunction, FusedLIFNode
from srlib.layers import BN, SpikingMatmul
from srlib.memory import (is_recomputed, recompute_blocks, saved_activation_bytes,
                          unwrap_recomputed_blocks)
from srlib.neurons import ReferenceLIF, is_spiking_neuron, reset_states
from srlib.perf import (NEURON_KERNELS, PerfOptions, apply_perf_options, as_defined,
                        run_stem_once, set_neuron_kernel, tune_cpu_allocator, use_channels_last)
from srlib.swaps import (ChannelsLastBN, ChannelsLastGrad, ChannelsLastSpikingMatmul, StemOnce,
                         channels_last_weight, is_channels_last)

TINY = dict(widths=(16, 32, 64), depths=(1, 1, 1), num_heads=(1, 2, 4), group_size=16, T=2,
            img_size=16)


def sj_lif(tau=2.0, decay_input=True):
    return neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=0.0,
                          surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True,
                          step_mode="m")


def fused_lif(tau=2.0, decay_input=True, kernel="eager"):
    return FusedLIFNode(tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=0.0,
                        surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True,
                        step_mode="m", kernel=kernel)


def lif_input(dtype, shape=(5, 3, 4, 6)):
    """Inputs spread around the threshold, some of them exactly on it after charging."""
    x = torch.randn(shape, dtype=dtype) * 2 + 1
    x.view(-1)[::7] = 2.0  # H = x / 2 = 1.0 = V_th at t = 0
    return x


def run_neuron(node, x, grad):
    x = x.clone().requires_grad_()
    spikes = node(x)
    (spikes * grad).sum().backward()
    return spikes.detach(), x.grad, node.v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau,decay_input", [(2.0, True), (1.7, True), (3.0, False)])
def test_fused_lif_matches_spikingjelly(dtype, tau, decay_input):
    x = lif_input(dtype)
    grad = torch.randn_like(x)
    want = run_neuron(sj_lif(tau, decay_input), x, grad)
    got = run_neuron(fused_lif(tau, decay_input), x, grad)
    assert torch.equal(got[0], want[0])  # spikes bitwise
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=0)
    assert torch.equal(got[2], want[2])  # membrane after the last step


def test_fused_lif_matches_closed_form_oracle():
    x = lif_input(torch.float64)
    grad = torch.randn_like(x)
    x_oracle = x.clone().requires_grad_()
    (lif_loop(x_oracle) * grad).sum().backward()
    spikes, grad_x, _ = run_neuron(fused_lif(), x, grad)
    assert torch.equal(spikes, lif_loop(x))
    torch.testing.assert_close(grad_x, x_oracle.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
def test_fused_lif_keeps_a_channels_last_layout(kernel):
    """[T, B, C, H, W] with NHWC steps: same values as SpikingJelly, same strides as the input."""
    x = lif_input(torch.float32, (3, 2, 5, 4, 6))
    x_nhwc = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 2))
    grad = torch.randn_like(x)
    want = run_neuron(sj_lif(), x, grad)
    got = run_neuron(fused_lif(kernel=kernel), x_nhwc, grad)
    assert torch.equal(got[0], want[0]) and got[0].stride() == x_nhwc.stride()
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-7)
    assert torch.equal(got[2], want[2])


def test_fused_lif_without_graph_keeps_nothing():
    x = lif_input(torch.float32)
    with torch.no_grad():
        want = sj_lif()(x)
        node = fused_lif()
        got = node(x)
    assert torch.equal(got, want) and got.grad_fn is None and node.v.grad_fn is None


def test_fused_lif_carries_state_between_calls():
    x1, x2 = lif_input(torch.float32), lif_input(torch.float32)
    plain, fused = sj_lif(), fused_lif()
    for x in (x1, x2):  # no reset in between: the second call starts from the first's V
        assert torch.equal(fused(x), plain(x))
        assert torch.equal(fused.v, plain.v)
    fused.reset()
    assert fused.v == 0.0 and fused.v_seq is None


def test_fused_lif_gradient_through_carried_state():
    """dL/dV[0] flows into the previous call's input when the state is not detached."""
    x1, x2 = lif_input(torch.float64), lif_input(torch.float64)
    grads = []
    for node in (sj_lif(), fused_lif()):
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        (node(a).sum() + 3 * node(b).sum()).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_lif_defers_to_spikingjelly_in_half_precision(dtype):
    x = lif_input(torch.float32).to(dtype)
    assert torch.equal(fused_lif()(x), sj_lif()(x))


def test_fused_lif_store_v_seq_uses_spikingjelly_path():
    node = fused_lif()
    node.store_v_seq = True
    x = lif_input(torch.float32)
    plain = sj_lif()
    plain.store_v_seq = True
    assert torch.equal(node(x), plain(x))
    assert torch.equal(node.v_seq, plain.v_seq)


def test_fused_lif_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="kernel must be one of"):
        fused_lif(kernel="cuda")


def test_fused_function_saves_one_tensor():
    """Only H is kept for backward: T x N values, against ~5 T x N for SpikingJelly's CPU path."""
    x = lif_input(torch.float32).requires_grad_()
    spikes, _ = FusedLIFFunction.apply(x, 0.0, 2.0, 1.0, 0.0, 2.0, True, "eager")
    saved = spikes.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].shape == (x.shape[0], x[0].numel())  # H as [T, N]


@pytest.mark.slow
def test_compiled_kernel_matches_eager():
    x = lif_input(torch.float32, (4, 2, 8, 5, 5))
    grad = torch.randn_like(x)
    want = run_neuron(fused_lif(kernel="eager"), x, grad)
    got = run_neuron(fused_lif(kernel="compiled"), x, grad)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-7)
    with torch.no_grad():  # inference reuses the same compiled forward
        assert torch.equal(fused_lif(kernel="compiled")(x), want[0])


def tiny_model(dtype=torch.float64, **overrides):
    torch.manual_seed(0)
    return srlib.create_model("spikingresformer_cifar", **{**TINY, **overrides}).to(dtype)


def train_twice(model, x):
    """Two SGD-free training passes; returns outputs, gradients (by parameter name), buffers."""
    results = []
    for _ in range(2):
        model.zero_grad()
        out = model(x)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads = {name.replace("_checkpoint_wrapped_module.", ""): p.grad.clone()
                 for name, p in model.named_parameters()}
        results.append((out.detach(), grads, copy.deepcopy(model.state_dict())))
    return results


def assert_same_training(got, want, rtol=1e-10, atol=1e-12):
    for (out_g, grad_g, state_g), (out_w, grad_w, state_w) in zip(got, want):
        torch.testing.assert_close(out_g, out_w, rtol=rtol, atol=atol)
        assert grad_g.keys() == grad_w.keys()
        for name in grad_w:
            torch.testing.assert_close(grad_g[name], grad_w[name], rtol=rtol, atol=atol,
                                       msg=f"gradient of {name}")
        assert list(state_g) == list(state_w)
        for key in state_w:
            torch.testing.assert_close(state_g[key], state_w[key], rtol=rtol, atol=atol,
                                       msg=f"buffer {key}")


@pytest.mark.parametrize("kernel", ["fused", "reference"])
def test_set_neuron_kernel_keeps_results_and_state_dict(kernel):
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    plain = tiny_model()
    swapped = copy.deepcopy(plain)
    lif_count = sum(isinstance(m, neuron.LIFNode) for m in plain.modules())
    assert set_neuron_kernel(swapped, kernel) == lif_count > 0
    expected_type = FusedLIFNode if kernel == "fused" else ReferenceLIF
    assert all(isinstance(m, expected_type) for m in swapped.modules() if is_spiking_neuron(m))
    assert {k: v.shape for k, v in swapped.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}
    assert_same_training(train_twice(swapped, x), train_twice(plain, x))
    set_neuron_kernel(swapped, "spikingjelly")  # and back
    assert all(type(m) is neuron.LIFNode for m in swapped.modules() if is_spiking_neuron(m))


def test_set_neuron_kernel_leaves_plif_alone():
    model = srlib.create_model("spikingresformer_dvsg", **{**TINY, "group_size": 32})
    assert set_neuron_kernel(model, "fused") == 0
    with pytest.raises(ValueError, match="neuron kernel must be one of"):
        set_neuron_kernel(model, "triton")


def test_recompute_blocks_keeps_results_buffers_and_keys():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    plain = tiny_model()
    wrapped = copy.deepcopy(plain)
    set_neuron_kernel(wrapped, "fused")  # the wrapper recomputes fused neurons correctly too
    blocks = sum(1 + 2 * depth for depth in plain.config.depths) - 1  # DSSA, GWFFN, downsample
    assert recompute_blocks(wrapped) == blocks
    assert recompute_blocks(wrapped) == 0  # idempotent
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    assert_same_training(train_twice(wrapped, x), train_twice(plain, x))
    wrapped.eval(), plain.eval()
    torch.testing.assert_close(wrapped(x), plain(x), rtol=1e-10, atol=1e-12)
    wrapped.load_state_dict(plain.state_dict())  # plain checkpoints load into it
    assert unwrap_recomputed_blocks(wrapped) == blocks
    assert not any(is_recomputed(m) for m in wrapped.modules())


def test_recompute_blocks_saves_memory():
    """Autograd keeps far fewer bytes for backward with per-block recomputation."""
    x = torch.randn(2, 3, 16, 16)
    plain = tiny_model(torch.float32)
    wrapped = copy.deepcopy(plain)
    recompute_blocks(wrapped)
    plain_bytes = saved_activation_bytes(plain, lambda: plain(x).sum().backward())
    wrapped_bytes = saved_activation_bytes(wrapped, lambda: wrapped(x).sum().backward())
    assert wrapped_bytes < 0.5 * plain_bytes


def test_saved_activation_bytes_counts_a_conv_input():
    """Oracle: a bias-free conv saves its input and weight; only the input is counted."""
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert saved_activation_bytes(conv, lambda: conv(x).sum().backward()) == x.numel() * 4


def test_channels_last_keeps_results():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    plain = tiny_model()
    nhwc = use_channels_last(copy.deepcopy(plain))
    conv = nhwc.layers[0][1].up[1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert type(nhwc.layers[0][1].up[2]) is ChannelsLastBN
    assert list(nhwc.state_dict()) == list(plain.state_dict())
    assert_same_training(train_twice(nhwc, x), train_twice(plain, x))


@pytest.mark.parametrize("in_channels", [3, 1])
def test_channels_last_stream_stays_channels_last_with_the_same_results(in_channels):
    """A channels-last model fed a plain image keeps every activation after the stem's conv
    NHWC (no layout copies between layers); outputs, attention maps, gradients and buffers
    equal NCHW's. (32 x 32: no feature map is 1 x 1, where both layouts coincide.) A 1-channel
    image is contiguous in both layouts: the stem's weight alone must make the stream NHWC."""
    x = torch.randn(2, in_channels, 32, 32, dtype=torch.float64) * 3
    plain = tiny_model(in_channels=in_channels)
    nhwc = use_channels_last(copy.deepcopy(plain))
    layouts = []
    for module in nhwc.modules():  # all but the stem's conv, which sees the repeated image
        if isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) \
                and module is not nhwc.prologue[0]:
            module.register_forward_pre_hook(
                lambda m, args: layouts.append(is_channels_last(args[0])))
    assert_same_training(train_twice(nhwc, x), train_twice(plain, x))
    assert len(layouts) > 20 and all(layouts)
    plain.eval(), nhwc.eval()
    reset_states(plain), reset_states(nhwc)  # (neuron states keep the layout they were made in)
    attention = nhwc.layers[1][1]
    s = torch.randn(2, 2, 32, 8, 8, dtype=torch.float64) * 3
    s_nhwc = s.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 2))
    out, attn = attention(s_nhwc, return_attention=True)
    out_ref, attn_ref = plain.layers[1][1](s, return_attention=True)
    assert is_channels_last(out) and torch.equal(attn, attn_ref)
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)


def test_spiking_matmul_with_a_column_major_operand():
    """The transposed product for a column-major right operand: same numbers, layout kept."""
    left, spikes = torch.randn(3, 5, 4), (torch.rand(3, 7, 4) < 0.3).float()
    right = spikes.mT  # [3, 4, 7], column-major
    variant = ChannelsLastSpikingMatmul("right")
    result = variant(left, right)  # [3, 5, 7]
    torch.testing.assert_close(result, SpikingMatmul("right")(left, right), rtol=1e-6, atol=1e-6)
    assert result.stride(-2) == 1  # the result is column-major too
    torch.testing.assert_close(variant(left, right.contiguous()), result, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (8, 1, 7, 7), (8, 4, 1, 1), (8, 1, 1, 1)])
def test_channels_last_weight_has_the_canonical_nhwc_strides(shape):
    """Also where a size-1 dimension makes the plain layout "channels-last contiguous" too."""
    weight = torch.randn(shape)
    nhwc = channels_last_weight(weight)
    _, i, kh, kw = shape
    assert nhwc.stride() == (kh * kw * i, 1, kw * i, i)
    assert torch.equal(nhwc, weight)


def test_channels_last_grad_hands_on_nhwc_gradients():
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = ChannelsLastGrad.apply(x)
    grad = torch.randn(2, 3, 4, 5)  # plain layout
    y.backward(grad)
    assert torch.equal(x.grad, grad)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("variant", ["spikingresformer_ti", "spikingresformer_cifar"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_stem_once_keeps_results_and_running_statistics(variant, channels_last):
    """Both stems (conv-BN-maxpool and conv-BN) run once for a static image: outputs,
    gradients, BN running statistics (unbiased over the T copies) and DSSA rates as before."""
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64) * 3
    torch.manual_seed(0)
    plain = srlib.create_model(variant, **{**TINY, "num_classes": 10}).double()
    once = run_stem_once(copy.deepcopy(plain))
    if channels_last:
        use_channels_last(once)
    seen = []
    once.prologue[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    assert_same_training(train_twice(once, x), train_twice(plain, x))
    assert seen == [1, 1]  # the stem conv saw one step, twice
    plain.eval(), once.eval()
    torch.testing.assert_close(once(x), plain(x), rtol=1e-10, atol=1e-12)
    sequence = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)  # [T, B, ...]: every step
    torch.testing.assert_close(once(sequence), plain(sequence), rtol=1e-10, atol=1e-12)
    assert seen[-1] == 2


def test_stem_once_lets_other_batch_norms_see_every_copy():
    """A batch-norm subclass (e.g. SyncBatchNorm) runs on all T copies; same results."""
    class OtherBN(torch.nn.BatchNorm2d):
        pass

    x = torch.randn(2, 3, 32, 32, dtype=torch.float64) * 3
    torch.manual_seed(0)
    plain = srlib.create_model("spikingresformer_ti", **{**TINY, "num_classes": 10}).double()
    once = run_stem_once(copy.deepcopy(plain))
    bn = once.prologue[1].bn
    once.prologue[1].bn = OtherBN(bn.num_features).double()
    once.prologue[1].bn.load_state_dict(bn.state_dict())
    assert_same_training(train_twice(once, x), train_twice(plain, x))


def test_stem_once_needs_a_spikingresformer():
    with pytest.raises(ValueError, match="no static analog stem"):
        run_stem_once(srlib.create_model("spikformer_8_384", img_size=32, T=1))


def test_apply_perf_options_swaps_modules_and_keeps_the_state_dict():
    """Every option at once (but compile): the same training and state dict as the plain
    model; plain weights load into it and its weights load into a plain model."""
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64) * 3
    plain = tiny_model()
    fast = apply_perf_options(copy.deepcopy(plain), PerfOptions(
        neuron_kernel="fused", channels_last=True, stem_once=True, recompute=True))
    kinds = {type(m) for m in fast.modules()}
    assert {FusedLIFNode, ChannelsLastBN, StemOnce} <= kinds and BN not in kinds
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert_same_training(train_twice(fast, x), train_twice(plain, x))
    tiny_model().load_state_dict(fast.state_dict())
    fast.load_state_dict(plain.state_dict())
    assert apply_perf_options(tiny_model(), "plain").state_dict().keys() == \
        plain.state_dict().keys()


def test_perf_options_presets_and_validation(monkeypatch):
    from srlib import perf

    assert PerfOptions() == PerfOptions.from_spec("plain")  # the plain model: nothing swapped
    monkeypatch.setattr(perf, "cpp_compiler", lambda: "/usr/bin/g++")
    assert PerfOptions.best_for("cpu") == PerfOptions(
        neuron_kernel="fused-compiled", channels_last=True, stem_once=True)
    assert PerfOptions.from_spec("best", "cuda") == PerfOptions.best_for("cuda")
    assert PerfOptions.from_spec({"stem_once": True}) == PerfOptions(stem_once=True)
    spikformer = srlib.create_model("spikformer_cifar_4_384")  # its stem holds neurons
    assert not PerfOptions.best_for("cpu", spikformer).stem_once
    assert apply_perf_options(spikformer, "best") is spikformer  # best adapts, no error
    for bad, message in [("fastest", "preset"), ({"speed": 11}, "unknown perf option"),
                         ({"neuron_kernel": "fast"}, "neuron_kernel must be one of"),
                         ({"compile": "yes"}, "compile must be one of"),
                         ({"stem_once": "true"}, "stem_once must be true or false")]:
        with pytest.raises(ValueError, match=message):
            PerfOptions.from_spec(bad)
    assert set(NEURON_KERNELS) == {"spikingjelly", "fused", "fused-compiled", "reference"}


def test_as_defined_runs_every_step_and_restores():
    model = run_stem_once(tiny_model())
    seen = []
    model.prologue[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    with as_defined(model):
        assert type(model.prologue) is torch.nn.Sequential
        model(torch.randn(1, 3, 16, 16, dtype=torch.float64))
    assert type(model.prologue) is StemOnce and seen == [2]  # T = 2 steps, as defined


MALLINFO_SCRIPT = """
import ctypes, torch
from srlib.perf import tune_cpu_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def block():  # bytes of a live 64 MiB tensor served by mmap; heap bytes kept after freeing it
    before = libc.mallinfo2()
    tensor = torch.empty(16 * 2**20)
    mapped = libc.mallinfo2().hblkhd - before.hblkhd
    del tensor
    return mapped, libc.mallinfo2().arena - before.arena
print(*block(), tune_cpu_allocator(True), *block())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tune_cpu_allocator_keeps_large_blocks_in_the_heap():
    """Oracle: glibc's own counters (mallinfo2). By default a 64 MiB block is a fresh mmap,
    unmapped when freed (its pages fault in again next time); tuned, it comes from the heap and
    stays there for reuse. Run in a fresh process: the tuning is process-wide."""
    result = subprocess.run([sys.executable, "-c", MALLINFO_SCRIPT], capture_output=True,
                            text=True, check=True)
    mapped_default, kept_default, applied, mapped_tuned, kept_tuned = result.stdout.split()
    block = 64 * 2**20
    assert applied == "True"
    assert int(mapped_default) >= block and int(kept_default) < 0.1 * block
    assert int(mapped_tuned) == 0 and int(kept_tuned) > 0.9 * block  # top of heap reused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fused_and_recomputed_model_matches_cpu():
    """On CUDA the fused node defers to SpikingJelly's kernels; recomputation works there too."""
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    plain = tiny_model()
    want = train_twice(plain, x)
    model = tiny_model()
    set_neuron_kernel(model, "fused")
    recompute_blocks(model)
    model.to("cuda")
    got = [(out.cpu(), {k: v.cpu() for k, v in grads.items()},
            {k: v.cpu() for k, v in state.items()})
           for out, grads, state in train_twice(model, x.to("cuda"))]
    assert_same_training(got, want, rtol=1e-7, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fused_node_equals_spikingjelly():
    x = lif_input(torch.float32).cuda()
    grad = torch.randn_like(x)
    want = run_neuron(sj_lif().cuda(), x, grad)
    got = run_neuron(fused_lif().cuda(), x, grad)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.slow
def test_compiled_blocks_keep_results_and_state_dict():
    """Regional compilation (every block compiled on its own, inductor on the CPU): the same
    training as the plain model to rounding, the same state-dict keys, and blocks of one type
    and shape share one compiled graph (two DSSA + GWFFN pairs: three graphs with the stem)."""
    from torch._dynamo.utils import counters

    x = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 3
    plain = tiny_model(widths=(16,), depths=(2,), num_heads=(1,), patch_sizes=(2,))
    fast = apply_perf_options(copy.deepcopy(plain), PerfOptions(
        neuron_kernel="fused-compiled", stem_once=True, compile="blocks"))
    assert list(fast.state_dict()) == list(plain.state_dict())
    torch._dynamo.reset()
    counters.clear()
    got = train_twice(fast, x)
    assert_same_training(got, train_twice(plain, x), rtol=1e-9, atol=1e-11)
    assert counters["stats"]["unique_graphs"] == 3  # stem, DSSA, GWFFN: each compiled once
