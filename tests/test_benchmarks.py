"""The benchmark harnesses' own arithmetic: benchmarks/floor.py counts FLOPs from recorded shapes
and replays recorded calls; both are checked against torch's FlopCounterMode and the live calls.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import floor  # noqa: E402

import srlib  # noqa: E402


def recorded(fn):
    recorder = floor.DenseCallRecorder()
    with recorder:
        fn()
    return recorder.calls


def counted(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("groups,stride,padding,kernel", [(1, 1, 1, 3), (4, 1, 1, 3),
                                                          (1, 2, 0, 2), (2, 2, 3, 7)])
def test_convolution_flops_match_flop_counter(groups, stride, padding, kernel):
    x = torch.randn(3, 8, 13, 11)
    w = torch.randn(12, 8 // groups, kernel, kernel)
    run = lambda: F.conv2d(x, w, stride=stride, padding=padding, groups=groups)  # noqa: E731
    ((func, specs), count), = recorded(run).items()
    assert func is torch.ops.aten.convolution.default and count == 1
    assert floor.call_flops(func, specs) == counted(run)


def test_convolution_backward_counts_each_gradient_asked_for():
    # ungrouped, where FlopCounterMode's backward count is right: input + weight = 2x forward
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    w = torch.randn(5, 6, 3, 3, requires_grad=True)
    forward = counted(lambda: F.conv2d(x, w, padding=1))
    calls = recorded(lambda: F.conv2d(x, w, padding=1).sum().backward())
    backward = [(f, s) for f, s in calls if f is torch.ops.aten.convolution_backward.default]
    assert len(backward) == 1
    assert floor.call_flops(*backward[0]) == 2 * forward
    x.requires_grad_(False)  # only the weight gradient: 1x forward
    calls = recorded(lambda: F.conv2d(x, w, padding=1).sum().backward())
    (f, s), = [(f, s) for f, s in calls if f is torch.ops.aten.convolution_backward.default]
    assert floor.call_flops(f, s) == forward


def test_matmul_flops_match_flop_counter():
    a, b = torch.randn(4, 5, 6), torch.randn(4, 6, 7)
    linear = torch.nn.Linear(6, 3)
    for run in (lambda: a @ b, lambda: a[0] @ b[0], lambda: linear(a[0])):
        calls = recorded(run)
        assert sum(floor.call_flops(f, s) * n for (f, s), n in calls.items()) == counted(run)


def test_replayed_calls_compute_with_the_recorded_shapes_and_strides():
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 2, 3, 3)
    calls = recorded(lambda: F.conv2d(x, w, padding=1, groups=4))
    (func, specs), = calls
    args = floor._make(specs, torch.device("cpu"))
    assert args[0].shape == x.shape and args[0].stride() == x.stride()
    assert func(*args).shape == (2, 4, 6, 6)
    assert "g4" in floor.describe_call(func, specs) and "NHWC" in floor.describe_call(func, specs)


def test_a_training_step_records_three_times_its_forward_flops():
    # Forward FLOPs x3 (bench.py's count) against the recorded calls of the same step; the stem
    # conv takes the image, whose gradient nobody asks for: that is the whole difference
    model = srlib.create_model("spikingresformer_fmnist")
    images, labels = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    step = lambda: F.cross_entropy(model(images).mean(0), labels).backward()  # noqa: E731
    forward = counted(lambda: model(images))
    calls = recorded(step)
    total = sum(floor.call_flops(f, s) * n for (f, s), n in calls.items())
    stem_conv = model.prologue[0]
    stem_forward = counted(lambda: stem_conv(torch.randn(model.config.T, 2, 1, 32, 32)))
    assert total == 3 * forward - stem_forward


def test_modes_map_onto_perf_options(monkeypatch):
    from srlib import perf
    from srlib.perf import PerfOptions

    monkeypatch.setattr(perf, "cpp_compiler", lambda: "/usr/bin/g++")
    mode = bench.parse_mode("fused+channels_last+alloc")
    assert mode == {"perf": PerfOptions(neuron_kernel="fused", channels_last=True),
                    "bf16": False, "alloc": True, "threads1": False}
    assert bench.parse_mode("best")["perf"] == PerfOptions.best_for("cpu")
    assert bench.parse_mode("best+recompute")["perf"] == PerfOptions(
        neuron_kernel="fused-compiled", channels_last=True, stem_once=True, recompute=True)
    assert bench.parse_mode("spikingjelly")["perf"] == PerfOptions()  # the plain model


def test_bad_modes_are_clear_errors():
    for bad in ("fused+warp_speed", "fused+reference", "best+plain"):
        with pytest.raises(ValueError, match="mode"):
            bench.parse_mode(bad)
    with pytest.raises(ValueError, match="compiled"):
        floor.measure(type("Args", (), dict(device="cpu", mode="spikingjelly+compile"))())
