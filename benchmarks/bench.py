"""Time SpikingResformer training steps and inference passes under several speed modes.

A mode is a ``+``-joined list of options applied to a freshly built model (same seed); the
speed options go through ``srlib.perf.apply_perf_options``, as in training:

    plain | best               a preset: srlib.perf.PerfOptions() / PerfOptions.best_for(device)
    spikingjelly | fused | fused-compiled | reference   LIF kernel (srlib.perf.NEURON_KERNELS)
    channels_last  NHWC convolutions                    stem_once  the stem once per image
    recompute      recompute blocks in backward         compile    torch.compile the model
    compile_blocks torch.compile each block (regional)
    bf16           bf16 autocast                        alloc      srlib.perf.tune_cpu_allocator()
    threads1       one intra-op thread

e.g. ``reference`` (the plain implementation), ``spikingjelly`` (srlib's eager default, the
same as ``plain``), ``best``, ``fused-compiled+channels_last+alloc``, ``compile+bf16`` (CUDA).

Each mode runs in its own worker process (its own allocator state, compile cache and peak
memory): one warm-up call per task (it also counts model FLOPs and, for training, the bytes
autograd saves for backward), then ``--reps`` timed calls. ``--rounds 2`` runs the modes again
in reverse order, so a change in machine load hits every mode alike; the median over all timed
calls is reported. Peak memory: CUDA ``max_memory_allocated`` of a training step; on the CPU
the worker's peak resident set minus its resident set after building (model, batch, imports),
i.e. activations + gradients + optimizer state + allocator slack.

    python benchmarks/bench.py --model spikingresformer_ti --img-size 224 --batch 4 \\
        --modes reference,spikingjelly,fused+alloc --tasks train --reps 3 --name cpu_ti224
"""

import argparse
import contextlib
import csv
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import srlib
from srlib.memory import saved_activation_bytes
from srlib.perf import (NEURON_KERNELS, PRESETS, PerfOptions, apply_perf_options,
                        tune_cpu_allocator)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PERF_FLAGS = ("channels_last", "stem_once", "recompute", "compile", "compile_blocks")
RUN_FLAGS = ("bf16", "alloc", "threads1")  # how the benchmark runs, not the model
FLAGS = PERF_FLAGS + RUN_FLAGS
# Dense peak throughput (FLOP/s) for model-FLOPs utilisation, from the vendors' spec sheets.
PEAK_FLOPS = {
    ("H200", "bf16"): 989.4e12,  # H200 SXM, bf16 tensor cores, dense (1979 is with sparsity)
    ("H100", "bf16"): 989.4e12,  # H100 SXM, same
    ("H200", "fp32"): 66.9e12,  # FP32 without tensor cores (TF32 would be 494.7e12)
    ("H100", "fp32"): 66.9e12,
    ("A100", "bf16"): 312e12,
    ("A100", "fp32"): 19.5e12,
}


def parse_mode(mode: str, device: str | torch.device = "cpu") -> dict:
    """``"fused-compiled+alloc"`` -> {"perf": PerfOptions(neuron_kernel="fused-compiled"),
    "alloc": True, "bf16": False, "threads1": False}; a preset (``best``, ``plain``) starts
    from its options and the other parts add to it."""
    parts = [part for part in mode.split("+") if part]
    kernels = [part for part in parts if part in NEURON_KERNELS]
    presets = [part for part in parts if part in PRESETS]
    unknown = [part for part in parts
               if part not in NEURON_KERNELS and part not in FLAGS and part not in PRESETS]
    if unknown or len(kernels) > 1 or len(presets) > 1:
        raise ValueError(f"bad mode {mode!r}: use at most one preset {PRESETS}, at most one "
                         f"of {NEURON_KERNELS} and any of {FLAGS}, joined by '+'")
    fields = dataclasses.asdict(PerfOptions.from_spec(presets[0] if presets else "plain",
                                                      device))
    if kernels:
        fields["neuron_kernel"] = kernels[0]
    for flag in ("channels_last", "stem_once", "recompute"):
        fields[flag] = fields[flag] or flag in parts
    if "compile" in parts and "compile_blocks" in parts:
        raise ValueError(f"bad mode {mode!r}: compile (the whole model) or compile_blocks, not both")
    if "compile" in parts:
        fields["compile"] = "model"
    if "compile_blocks" in parts:
        fields["compile"] = "blocks"
    return {"perf": PerfOptions(**fields), **{flag: flag in parts for flag in RUN_FLAGS}}


def describe_machine(device: torch.device) -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu,
                cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, spikingjelly=importlib.metadata.version("spikingjelly"),
                python=platform.python_version(),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset"))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


# ---------------------------------------------------------------------------------- worker


def build(args, options: dict, device: torch.device):
    torch.manual_seed(0)
    model = srlib.create_model(args.model, img_size=args.img_size, T=args.T)
    model.to(device=device, dtype=getattr(torch, args.dtype))
    apply_perf_options(model, options["perf"])  # in place: state-dict keys unchanged
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    config = model.config
    images = torch.randn(args.batch, config.in_channels, args.img_size, args.img_size,
                         generator=generator).to(device=device, dtype=getattr(torch, args.dtype))
    labels = torch.randint(0, config.num_classes, (args.batch,), generator=generator).to(device)
    return model, optimizer, images, labels


def make_step(task: str, model, optimizer, images, labels, options: dict, device):
    """A closure running one training step or one inference pass; ``step(counter)`` runs the
    forward pass under ``counter`` (a FlopCounterMode)."""

    def autocast():
        if options["bf16"]:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(counter=None):
        model.train()
        with autocast(), counter or contextlib.nullcontext():
            logits = model(images).mean(0)  # [B, K], mean over T
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def infer_step(counter=None):
        model.eval()
        with autocast(), counter or contextlib.nullcontext():
            model(images)

    return train_step if task == "train" else infer_step


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args) -> dict:
    """Build one mode, warm up, time ``reps`` calls per task; return the measurements."""
    device = torch.device(args.device)
    options = parse_mode(args.worker, device)
    if options["alloc"] and device.type == "cpu":
        tune_cpu_allocator(True)
    if options["threads1"]:
        torch.set_num_threads(1)
    import psutil
    model, optimizer, images, labels = build(args, options, device)
    rss_built = psutil.Process().memory_info().rss
    result = dict(mode=args.worker, tasks={})
    for task in args.tasks.split(","):
        step = make_step(task, model, optimizer, images, labels, options, device)
        record = dict(wall=[], cpu=[])
        start = time.perf_counter()
        # compile first (under counting hooks and modes it would compile other code); a
        # compiled model compiles twice: neuron states are floats before the first call and
        # tensors afterwards, and SpikingJelly's reset() branches on that
        compiled = options["perf"].compile != "none"
        for _ in range(2 if compiled else int(options["perf"].neuron_kernel == "fused-compiled")):
            step()
        if not compiled:  # a warm-up call that also counts FLOPs and saved bytes
            counter = FlopCounterMode(display=False)
            if task == "train" and device.type == "cpu":
                record["saved_mb"] = saved_activation_bytes(model, lambda: step(counter)) / 2**20
            else:
                step(counter)
            # forward FLOPs; a training step counts 3x (forward, input and weight gradients):
            # FlopCounterMode's own backward count is wrong for grouped convolutions in torch
            # 2.14 (5x forward instead of 2x with 4 groups), and GWFFN's conv is grouped
            record["flops"] = counter.get_total_flops() * (3 if task == "train" else 1)
        synchronize(device)
        record["warmup_s"] = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.reps):
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            synchronize(device)
            record["wall"].append(time.perf_counter() - wall)
            record["cpu"].append(time.process_time() - cpu)
        if device.type == "cuda":
            record["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["tasks"][task] = record
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    result["rss_peak_mb"] = (peak - rss_built) / 2**20
    return result


# ---------------------------------------------------------------------------------- parent


def run_worker(args, mode: str) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--model", args.model,
               "--img-size", str(args.img_size), "--batch", str(args.batch), "--T", str(args.T),
               "--device", args.device, "--dtype", args.dtype, "--tasks", args.tasks,
               "--reps", str(args.reps)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    environment = dict(os.environ)
    if args.inductor_cache == "fresh":  # a cold start: compile everything again
        environment["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="srlib-bench-inductor-")
    elif args.inductor_cache:
        environment["TORCHINDUCTOR_CACHE_DIR"] = args.inductor_cache
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env=environment)
    finally:
        if args.inductor_cache == "fresh":
            shutil.rmtree(environment["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"mode {mode} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_flops(device_name: str, options: dict) -> float | None:
    precision = "bf16" if options["bf16"] else "fp32"
    for (gpu, prec), value in PEAK_FLOPS.items():
        if gpu in device_name and prec == precision:
            return value
    return None


def summarise(args, mode: str, results: list[dict], device_name: str,
              flops_by_task: dict) -> list[dict]:
    options = parse_mode(mode, args.device)
    rows = []
    for task in args.tasks.split(","):
        records = [r["tasks"][task] for r in results]
        walls = [w for r in records for w in r["wall"]]
        wall = statistics.median(walls)
        flops = flops_by_task.get(task)  # the same for every mode: the model's convs and matmuls
        peak = peak_flops(device_name, options) if args.device.startswith("cuda") else None

        def largest(key):
            values = [r[key] for r in records if key in r]
            return round(max(values), 1) if values else None

        rows.append(dict(
            model=args.model, img_size=args.img_size, batch=args.batch, T=args.T,
            device=args.device, dtype=args.dtype, mode=mode, task=task,
            ms_per_step=round(wall * 1e3, 1), images_per_s=round(args.batch / wall, 3),
            s_per_image=round(wall / args.batch, 4),
            cpu_s_per_step=round(statistics.median([c for r in records for c in r["cpu"]]), 2),
            min_ms=round(min(walls) * 1e3, 1), calls=len(walls),
            warmup_s=round(min(r["warmup_s"] for r in records), 1),
            gflop_per_step=round(flops / 1e9, 1) if flops else None,
            mfu_pct=round(100 * flops / wall / peak, 2) if flops and peak else None,
            saved_mb=largest("saved_mb"), cuda_peak_mb=largest("cuda_peak_mb"),
            rss_peak_mb=round(max(r["rss_peak_mb"] for r in results), 1)
            if not args.device.startswith("cuda") else None))
    return rows


def run(args) -> list[dict]:
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    for mode in modes:
        parse_mode(mode, args.device)  # fail early on a typo
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = {mode: [] for mode in modes}
    for round_index in range(args.rounds):
        order = modes if round_index % 2 == 0 else modes[::-1]
        for mode in order:
            start = time.perf_counter()
            result = run_worker(args, mode)
            results[mode].append(result)
            times = ", ".join(f"{task} " + " ".join(f"{w * 1e3:.0f}" for w in r["wall"]) + " ms"
                              for task, r in result["tasks"].items())
            print(f"[bench] round {round_index + 1} {mode:40s} {times}  "
                  f"({time.perf_counter() - start:.0f} s in all, load {load_average()})",
                  flush=True)
    flops_by_task = {task: record["flops"] for runs in results.values() for result in runs
                     for task, record in result["tasks"].items() if "flops" in record}
    return [row for mode in modes
            for row in summarise(args, mode, results[mode], device_name, flops_by_task)]


def markdown_table(rows: list[dict], columns: list[str]) -> list[str]:
    """Lines of a Markdown table of ``rows`` (missing or None cells left empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |"
              for row in rows]
    return lines


def write_result_files(name: str, rows: list[dict], markdown: list[str]) -> Path:
    """``results/<name>.csv`` (every key of ``rows``) and ``results/<name>.md``, each written
    to a temporary file and renamed, so a failed run never leaves half a table."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS_DIR / f"{name}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)
    md_path = RESULTS_DIR / f"{name}.md"
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(markdown))
    tmp.replace(md_path)
    return md_path


def write_results(rows: list[dict], machine: dict, name: str, notes: str) -> Path:
    columns = ["mode", "task", "ms_per_step", "images_per_s", "s_per_image", "cpu_s_per_step",
               "min_ms", "calls", "warmup_s", "gflop_per_step", "mfu_pct", "saved_mb",
               "rss_peak_mb", "cuda_peak_mb"]
    columns = [c for c in columns if any(row[c] is not None for row in rows)]
    first = rows[0]
    lines = [f"# {first['model']} {first['img_size']}x{first['img_size']}, batch {first['batch']}, "
             f"T={first['T']}, {first['device']} {first['dtype']}", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), ""]
    if notes:
        lines += [notes, ""]
    lines += markdown_table(rows, columns)
    lines += ["", "ms_per_step: median wall time of all timed calls (each mode in its own "
              "process, rounds in alternating order); cpu_s_per_step: process CPU time, all "
              "threads; warmup_s: first calls (compile included); saved_mb: bytes autograd keeps "
              "for backward (srlib.memory.saved_activation_bytes); rss_peak_mb: peak resident "
              "set minus that after building; gflop_per_step: forward convolutions and matmuls "
              "(FlopCounterMode), x3 for a training step; mfu_pct: those FLOPs per second over "
              "the device's dense peak (PEAK_FLOPS in bench.py).", ""]
    return write_result_files(name, rows, lines)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming the model and its input (shared with floor.py)."""
    parser.add_argument("--model", default="spikingresformer_ti")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--modes", default="reference,spikingjelly,fused+alloc")
    parser.add_argument("--tasks", default="train,infer")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per mode, task, round")
    parser.add_argument("--inductor-cache", default=None,
                        help="TORCHINDUCTOR_CACHE_DIR of the workers: a folder (warm after its "
                             "first use), or 'fresh' for an empty one per worker (cold starts: "
                             "warmup_s then includes every compilation); default: torch's own")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run all modes this often, alternating the order")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--name", default=None, help="results file stem in benchmarks/results")
    parser.add_argument("--notes", default="", help="a line written above the table")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    machine = describe_machine(torch.device(args.device))
    machine["load_before"] = load_average()
    machine["inductor_cache"] = {None: "default", "fresh": "fresh (cold: compiled anew)"}.get(
        args.inductor_cache, "a folder (warm once filled)")
    rows = run(args)
    machine["load_after"] = load_average()
    for row in rows:
        print(f"{row['mode']:40s} {row['task']:5s} {row['ms_per_step']:10.1f} ms/step "
              f"{row['images_per_s']:9.2f} img/s {row['s_per_image']:8.4f} s/img  "
              f"saved {row['saved_mb']} MB  rss {row['rss_peak_mb']} MB  "
              f"cuda {row['cuda_peak_mb']} MB  mfu {row['mfu_pct']}%")
    if args.name:
        print(f"[bench] wrote {write_results(rows, machine, args.name, args.notes)}")


if __name__ == "__main__":
    main()
