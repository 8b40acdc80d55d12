"""Training memory per image of SpikingResformer Ti/S/M/L at 224x224, T=4, estimated on the CPU.

Activation memory is exact, not sampled: one training step at batch 1 runs under
``srlib.memory.saved_activation_bytes``, which adds up every tensor autograd keeps for backward
(each storage once, plus the inputs recomputed blocks keep instead). It scales linearly with
batch (``--check-batch 2`` verifies this on the first model). The fixed part is parameters +
gradients + optimizer state (SGD momentum: 3 copies; AdamW: 4). Estimated peak training memory
for batch B is then about ``fixed + B * per_image`` plus transient workspace (on CUDA, cuDNN
workspaces and the allocator's caching; on the CPU, allocator slack: compare ``rss_peak_mb``
of benchmarks/bench.py).

Neuron kernels matter: SpikingJelly's CPU path saves ~5 tensors per LIF step; its CUDA kernels
and srlib's fused CPU kernel save only H, so the ``fused`` rows also estimate CUDA float32.

    python benchmarks/memory.py --models ti,s,m,l --name memory_224
"""

import argparse
import gc

import torch
import torch.nn.functional as F

import srlib
from srlib.memory import saved_activation_bytes
from srlib.perf import PerfOptions, apply_perf_options
from bench import markdown_table, parse_mode, write_result_files  # benchmarks/bench.py

MODES = ("spikingjelly", "fused", "fused+stem_once", "fused+recompute")  # the default set
MEMORY_FLAGS = ("stem_once", "recompute")  # the options that change what autograd keeps


def activation_mb(name: str, mode: str, batch: int, img_size: int, T: int) -> float:
    options = parse_mode(mode)
    perf = options["perf"]
    measured = PerfOptions(neuron_kernel=perf.neuron_kernel, stem_once=perf.stem_once,
                           recompute=perf.recompute)
    other = [flag for flag, on in options.items() if flag != "perf" and on]
    if other or perf != measured:
        raise ValueError(f"mode {mode!r}: memory.py measures a neuron kernel and "
                         f"{MEMORY_FLAGS}, not {other or perf}")
    torch.manual_seed(0)
    model = apply_perf_options(srlib.create_model(name, img_size=img_size, T=T), perf)
    images = torch.randn(batch, 3, img_size, img_size)
    labels = torch.zeros(batch, dtype=torch.long)

    def step():
        F.cross_entropy(model(images).mean(0), labels).backward()

    mb = saved_activation_bytes(model, step) / 2**20
    del model
    gc.collect()
    return mb


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ti,s,m,l")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--check-batch", type=int, default=0,
                        help="also measure the first model at this batch (linearity check)")
    parser.add_argument("--name", default=None, help="results file stem in benchmarks/results")
    args = parser.parse_args(argv)
    rows = []
    for short in args.models.split(","):
        name = f"spikingresformer_{short}"
        params = srlib.count_parameters(srlib.create_model(name))
        param_mb = params * 4 / 2**20
        for mode in args.modes.split(","):
            per_image = activation_mb(name, mode, 1, args.img_size, args.T)
            row = dict(model=name, mode=mode, img_size=args.img_size, T=args.T,
                       params_m=round(params / 1e6, 2),
                       fixed_sgd_mb=round(3 * param_mb, 1), fixed_adamw_mb=round(4 * param_mb, 1),
                       activations_mb_per_image=round(per_image, 1),
                       batch64_sgd_gb=round((3 * param_mb + 64 * per_image) / 1024, 1))
            if args.check_batch and not rows:
                at_batch = activation_mb(name, mode, args.check_batch, args.img_size, args.T)
                row[f"activations_mb_at_batch_{args.check_batch}"] = round(at_batch, 1)
            rows.append(row)
            print(row, flush=True)
    if args.name:
        lines = [f"# Training memory per image, {args.img_size}x{args.img_size}, T={args.T}, "
                 "float32 (CPU, exact count of saved tensors)", ""]
        lines += markdown_table(rows, list(dict.fromkeys(key for row in rows for key in row)))
        lines += ["", "activations_mb_per_image: bytes autograd keeps for backward in one "
                  "training step at batch 1 (scales with batch); fixed_*: parameters + gradients "
                  "+ optimizer state; batch64_sgd_gb: fixed_sgd + 64 x activations, before "
                  "transient workspace. See benchmarks/memory.py.", ""]
        write_result_files(args.name, rows, lines)

if __name__ == "__main__":
    main()
