"""How fast a training step could be on this machine: its convolutions and matmuls, timed alone.

A training step's dense math (convolutions forward and backward, DSSA's batched matmuls, the
classifier) cannot run faster than the machine's convolution and GEMM kernels run it. This
script measures that floor for one mode of benchmarks/bench.py:

1. one training step runs under a ``TorchDispatchMode`` (below autograd) that records every
   ``convolution``, ``convolution_backward``, ``bmm``, ``mm`` and ``addmm`` call: shapes,
   strides (channels-last or not), groups, strides and paddings, which gradients are asked for;
2. each distinct call is replayed alone, with fresh random tensors of the same shapes and
   strides, ``--reps`` times (median), and multiplied by how often the step makes it;
3. the machine's best GEMM rate (large single-precision ``torch.mm``) and copy bandwidth are
   measured, and the step itself is timed (median of ``--reps`` steps).

It prints and writes (``--name``): the step's time, the sum of its dense calls timed alone
(what the step would take if everything else were free), the FLOP floor at the machine's best
GEMM rate, and a table of the calls with their GFLOP/s. FLOPs are counted here from the shapes
(``2 * outputs * reduction length`` per gradient asked for; torch 2.14's ``FlopCounterMode``
overcounts a grouped convolution's backward).

    python benchmarks/floor.py --model spikingresformer_ti --img-size 224 --batch 4 --T 4 \\
        --mode best+alloc --target-s-per-image 0.5 \\
        --name cpu_ti224_b4_floor
"""

import argparse
import math
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench import (add_model_arguments, build, describe_machine, load_average, make_step,
                   markdown_table, parse_mode, synchronize, write_result_files)
from srlib.perf import tune_cpu_allocator

aten = torch.ops.aten
DENSE_OPS = {aten.convolution.default: "conv", aten.convolution_backward.default: "conv_bwd",
             aten.bmm.default: "bmm", aten.mm.default: "mm", aten.addmm.default: "addmm"}


class TensorSpec(tuple):
    """(shape, stride, dtype) of a recorded tensor argument."""

    @classmethod
    def of(cls, tensor: torch.Tensor) -> "TensorSpec":
        return cls((tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype))

    def make(self, device) -> torch.Tensor:
        shape, stride, dtype = self
        return torch.empty_strided(shape, stride, dtype=dtype, device=device).normal_()


def _spec(value):
    if isinstance(value, torch.Tensor):
        return TensorSpec.of(value)
    if isinstance(value, (list, tuple)):
        return tuple(_spec(v) for v in value)
    return value


def _make(value, device):
    if isinstance(value, TensorSpec):
        return value.make(device)
    if isinstance(value, tuple):
        return [_make(v, device) for v in value]
    return value


class DenseCallRecorder(TorchDispatchMode):
    """Counts every distinct dense-math call (op, argument specs) made under it."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in DENSE_OPS:
            if kwargs:
                raise NotImplementedError(f"{func} called with keyword arguments {kwargs}")
            self.calls[(func, _spec(args))] += 1
        return func(*args, **(kwargs or {}))


def call_flops(func, args) -> int:
    """FLOPs of one recorded call (multiply-adds x2), from its argument specs."""
    def numel(spec):
        return math.prod(spec[0])
    if func is aten.convolution.default:
        x, w = args[0], args[1]
        out = conv_output_numel(x, w, args)
        return 2 * out * numel(w) // w[0][0]  # each output: Cin/groups * kh * kw multiply-adds
    if func is aten.convolution_backward.default:
        grad_out, w, mask = args[0], args[2], args[10]
        per_gradient = 2 * numel(grad_out) * numel(w) // w[0][0]
        return per_gradient * (int(mask[0]) + int(mask[1]))  # input and weight gradients
    if func is aten.bmm.default:
        (b, m, k), n = args[0][0], args[1][0][2]
        return 2 * b * m * k * n
    if func is aten.mm.default:
        (m, k), n = args[0][0], args[1][0][1]
        return 2 * m * k * n
    if func is aten.addmm.default:
        (m, k), n = args[1][0], args[2][0][1]
        return 2 * m * k * n
    raise ValueError(f"no FLOP formula for {func}")


def conv_output_numel(x, w, args) -> int:
    stride, padding, dilation = args[3], args[4], args[5]
    n, _, *spatial = x[0]
    out = n * w[0][0]
    for size, kernel, s, p, d in zip(spatial, w[0][2:], stride, padding, dilation):
        out *= (size + 2 * p - d * (kernel - 1) - 1) // s + 1
    return out


def describe_call(func, args) -> str:
    def layout(spec):
        shape, stride, _ = spec
        if len(shape) == 4 and stride[1] == 1 and shape[1] > 1:
            return "NHWC"
        return ""
    if func in (aten.convolution.default, aten.convolution_backward.default):
        x, w = (args[0], args[1]) if func is aten.convolution.default else (args[1], args[2])
        groups = args[8] if func is aten.convolution.default else args[9]
        what = f"{x[0][1]}->{w[0][0]} k{w[0][2]}x{w[0][3]} s{args[3][0] if func is aten.convolution.default else args[4][0]}"
        what += f" g{groups}" if groups > 1 else ""
        what += f" in {list(x[0])} {layout(x)}".rstrip()
        if func is aten.convolution_backward.default:
            mask = args[10]
            what += " grads " + "+".join(n for n, m in zip(("input", "weight", "bias"), mask) if m)
        return what
    return " @ ".join(str(list(a[0])) for a in args if isinstance(a, TensorSpec))


def median_time(fn, reps: int, device) -> float:
    fn()  # warm-up (oneDNN primitive creation, caches)
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_peak(device, reps: int) -> tuple[float, str]:
    """Best single-precision ``torch.mm`` rate (FLOP/s) over a few large shapes."""
    best, best_shape = 0.0, ""
    for m, k, n in ((4096, 4096, 4096), (3136, 384, 1536), (12544, 768, 768), (2048, 2048, 2048)):
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        rate = 2 * m * k * n / median_time(lambda: a @ b, reps, device)
        if rate > best:
            best, best_shape = rate, f"{m}x{k} @ {k}x{n}"
    return best, best_shape


def copy_bandwidth(device, reps: int) -> float:
    """Bytes per second read + written by ``copy_`` of a 256 MiB tensor."""
    src = torch.randn(2**26, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / median_time(lambda: dst.copy_(src), reps, device)


def measure(args) -> dict:
    device = torch.device(args.device)
    options = parse_mode(args.mode, device)
    if options["perf"].compile != "none":
        raise ValueError("floor.py records eager calls; a compiled model hides them "
                         "(use bench.py for compiled modes)")
    if options["alloc"] and device.type == "cpu":
        tune_cpu_allocator(True)
    model, optimizer, images, labels = build(args, options, device)
    step = make_step("train", model, optimizer, images, labels, options, device)
    step_s = median_time(step, args.reps, device)  # also warms up (compiled neuron kernels)
    recorder = DenseCallRecorder()
    with recorder:
        step()
    rows = []
    for (func, specs), count in recorder.calls.items():
        tensors = _make(specs, device)
        seconds = median_time(lambda: func(*tensors), args.reps, device)
        flops = call_flops(func, specs)
        rows.append(dict(op=DENSE_OPS[func], call=describe_call(func, specs), count=count,
                         ms_each=round(seconds * 1e3, 2), ms_total=round(count * seconds * 1e3, 1),
                         gflop_total=round(count * flops / 1e9, 2),
                         gflop_per_s=round(flops / seconds / 1e9, 1)))
    rows.sort(key=lambda row: -row["ms_total"])
    peak, peak_shape = gemm_peak(device, args.reps)
    dense_s = sum(row["ms_total"] for row in rows) / 1e3
    gflop = sum(row["gflop_total"] for row in rows)
    summary = dict(
        model=args.model, img_size=args.img_size, batch=args.batch, T=args.T, mode=args.mode,
        step_s=round(step_s, 3), step_s_per_image=round(step_s / args.batch, 3),
        dense_calls=sum(row["count"] for row in rows), dense_gflop=round(gflop, 1),
        dense_alone_s=round(dense_s, 3), dense_alone_s_per_image=round(dense_s / args.batch, 3),
        dense_gflop_per_s=round(gflop / dense_s, 1),
        gemm_peak_gflop_per_s=round(peak / 1e9, 1), gemm_peak_shape=peak_shape,
        flop_floor_s=round(gflop * 1e9 / peak, 3),
        flop_floor_s_per_image=round(gflop * 1e9 / peak / args.batch, 3),
        rest_of_step_s=round(step_s - dense_s, 3),
        copy_gb_per_s=round(copy_bandwidth(device, args.reps) / 1e9, 1))
    if args.target_s_per_image:
        summary["target_s_per_image"] = args.target_s_per_image
    return dict(summary=summary, rows=rows)


def write(result: dict, machine: dict, name: str) -> Path:
    rows, summary = result["rows"], result["summary"]
    lines = [f"# Floor of a training step: {summary['model']} {summary['img_size']}x"
             f"{summary['img_size']}, batch {summary['batch']}, T={summary['T']}, "
             f"mode {summary['mode']}", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), ""]
    lines += markdown_table([dict(quantity=k, value=v) for k, v in summary.items()],
                            ["quantity", "value"])
    lines += ["", "Dense calls of one step, each replayed alone (median), slowest first:", ""]
    lines += markdown_table(rows, list(rows[0]))
    lines += ["", "step_s: median training step (forward, backward, SGD); dense_alone_s: sum of "
              "the step's convolutions and matmuls, each timed alone with its shapes and "
              "strides; flop_floor_s: their FLOPs at gemm_peak (the best large torch.mm rate "
              "measured); rest_of_step_s: step_s - dense_alone_s (batch norm, neurons, "
              "residual adds, copies, optimizer).", ""]
    return write_result_files(name, rows, lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--mode", default="best+alloc")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--target-s-per-image", type=float, default=None)
    parser.add_argument("--name", default=None, help="results file stem in benchmarks/results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = describe_machine(torch.device(args.device))
    machine["load_before"] = load_average()
    result = measure(args)
    machine["load_after"] = load_average()
    for row in result["rows"][:15]:
        print(f"{row['ms_total']:8.1f} ms {row['count']:3d}x {row['gflop_per_s']:6.1f} GFLOP/s  "
              f"{row['op']:8s} {row['call']}")
    for key, value in result["summary"].items():
        print(f"{key:26s} {value}")
    if args.name:
        print(f"[floor] wrote {write(result, machine, args.name)}")


if __name__ == "__main__":
    main()
