"""Command line: ``python -m srlib.train [--config RECIPE] [--key value ...]``.

Every field of :class:`srlib.train.TrainConfig` is an option (``--batch-size 64``,
``--amp bf16``, ``--augment`` / ``--no-augment``); options override the recipe, which overrides
the defaults. ``--config`` takes a YAML file or the name of a shipped recipe (``imagenet_ti``;
``--list-recipes`` shows them); with no arguments it trains the main job (``default``,
Fashion-MNIST). Speed options: ``--perf best`` (default), ``--perf plain``, or fields of
``srlib.perf.PerfOptions``: ``--perf neuron_kernel=fused channels_last=true``. Under
``torchrun --nproc-per-node N -m srlib.train ...`` it runs data-parallel; ``--accum-steps K``
makes each optimizer step of K micro-batches (global batch = batch size x K x processes).
``--local-processes N`` launches N data-parallel processes on this machine itself and splits
the recipe's batch and the cores between them, keeping the global batch (``auto``: 2 on a
machine without CUDA and with at least 2 cores, else 1; see :func:`local_processes`).
Exit status: 0 done, 2 bad setup, data or checkpoint, 1 a NaN or infinity stopped the run.
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import types
import typing
from pathlib import Path

import yaml

from srlib.perf import PRESETS, PerfOptions
from srlib.train.config import DEFAULT_RECIPE, TrainConfig, list_recipes, load_config


def _option_type(hint):
    """(argparse type, nargs, is_bool) of a TrainConfig field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if PerfOptions in args:
            return _perf_spec, "+", False
        inner = [arg for arg in args if arg is not type(None)][0]
        kind, nargs, _ = _option_type(inner)
        if nargs is not None:  # an optional tuple: "none" alone, or values (count checked later)
            nargs = "+"
        return (lambda text: None if text.lower() in ("none", "null") else kind(text)), nargs, False
    if origin is tuple:
        args = typing.get_args(hint)
        return args[0], "+" if args[-1] is Ellipsis else len(args), False
    return hint, None, hint is bool


def _perf_spec(text: str):
    """One ``--perf`` word: a preset name, or ``field=value`` (YAML value)."""
    if "=" not in text:
        return text
    key, _, value = text.partition("=")
    return {key.strip().replace("-", "_"): yaml.safe_load(value)}


def _merge_perf(words: list) -> str | dict:
    """``--perf best`` -> "best"; ``--perf a=1 b=2`` -> {"a": 1, "b": 2}."""
    if all(isinstance(word, str) for word in words) and len(words) == 1:
        return words[0]
    if any(isinstance(word, str) for word in words):
        raise ValueError(f"--perf takes one preset {PRESETS} or field=value pairs, got "
                         f"{' '.join(map(str, words))}")
    merged = {}
    for word in words:
        merged.update(word)
    return merged


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m srlib.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", default=DEFAULT_RECIPE,
                        help="YAML recipe: a file, or a shipped name (default: %(default)s)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (recipe + options) as YAML and exit")
    parser.add_argument("--list-recipes", action="store_true",
                        help="list the shipped recipes and exit")
    parser.add_argument("--local-processes", default="1", metavar="N",
                        help="data-parallel processes to launch on this machine, each with the "
                             "batch and the cores divided by N (the global batch stays the "
                             "recipe's); 'auto': 2 on a CPU-only machine with 2 or more cores, "
                             "else 1 (default: %(default)s)")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind, nargs, is_bool = _option_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        text = field.metadata.get("help", "").replace("%", "%%")  # values: see --print-config
        if is_bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, nargs=nargs,
                                default=argparse.SUPPRESS, metavar=field.name.upper(),
                                help=text)
    return parser


def parse_config(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        valid = ", ".join("--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig))
        parser.error(f"unknown option(s) {' '.join(unknown)}; valid options: --config, "
                     f"--print-config, --list-recipes, {valid}")
    if args.list_recipes:
        return None, args
    overrides = {key: None if value == [None] else value  # "--normalize-std none"
                 for key, value in vars(args).items()
                 if key not in ("config", "print_config", "list_recipes", "local_processes")}
    try:
        if "perf" in overrides:
            overrides["perf"] = _merge_perf(overrides["perf"])
        return load_config(args.config, **overrides), args
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))


def local_processes(spec: str, config: TrainConfig) -> int:
    """How many local processes ``--local-processes`` asks for (``auto`` resolved).

    ``auto`` is 2 on a machine without CUDA (or with ``device: cpu``) and at least 2 cores, else
    1. The small models of the lessons and of the main job run many small operations that two
    threads share badly: on 2 cores, two processes of one thread each trained the main job's
    model 1.01-1.34x faster than one process of two threads (median 1.12x; README, Speed). With
    CUDA, one process per GPU is torchrun's business.
    """
    if spec != "auto":
        try:
            count = int(spec)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"--local-processes takes a count >= 1 or 'auto', got {spec!r}")
        return count
    cores = os.cpu_count() or 1
    if cores < 2 or config.device.startswith("cuda"):
        return 1
    if config.device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return 2


def launch_local(config: TrainConfig, count: int) -> int:
    """Run ``config`` in ``count`` data-parallel processes on this machine (torchrun,
    standalone); returns torchrun's exit status.

    Each process gets ``batch_size / count`` images per micro-batch (the recipe's global batch,
    so the same steps, schedule and learning rate) and, unless ``threads`` is set, an equal
    share of the cores. The resolved config travels as a YAML file, so every process reads
    exactly the recipe and options given here.
    """
    if config.batch_size % count:
        raise ValueError(f"batch size {config.batch_size} does not split over {count} local "
                         "processes; give a count that divides it or another --batch-size")
    threads = config.threads or max(1, (os.cpu_count() or 1) // count)
    local = dataclasses.replace(config, batch_size=config.batch_size // count, threads=threads)
    print(f"[srlib.train] {count} local processes of {threads} thread(s), "
          f"{local.batch_size} images each per micro-batch", flush=True)
    with tempfile.TemporaryDirectory(prefix="srlib-launch-") as folder:
        recipe = Path(folder) / "config.yaml"
        recipe.write_text(yaml.safe_dump(local.to_dict(), sort_keys=False))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={count}", "-m", "srlib.train", "--config", str(recipe)]
        environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
        return subprocess.call(command, env=environment)


def _restart_with_omp_wait_policy(config) -> None:
    """Restart this command once with ``OMP_WAIT_POLICY`` set, when the config asks for it.

    OpenMP reads the variable only when torch loads, before any of our code runs. Its default
    lets idle threads spin a little before sleeping: the fastest setting on a quiet machine
    (2 cores: the default recipe trained ~1.2x faster than with passive waiting), but when other
    work already keeps every core busy, spinning threads steal time from it and from each other
    (on a shared 2-core machine two spinning threads were 3-5x slower than one thread, passive
    ones about 1.5x faster). Ask for ``omp_wait_policy: passive`` on such a machine. A value
    already in the environment is kept.
    """
    policy = config.omp_wait_policy
    if policy is None or "OMP_WAIT_POLICY" in os.environ:
        return
    sys.stdout.flush()
    environment = dict(os.environ, OMP_WAIT_POLICY=policy.upper())
    os.execve(sys.executable, [sys.executable, "-m", "srlib.train", *sys.argv[1:]], environment)


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (2: bad setup, data or checkpoint, 1: non-finite
    values).

    Args:
        argv: the options; ``None`` reads the command line (and may restart the process
            once, see :func:`_restart_with_omp_wait_policy`).
    """
    config, args = parse_config(argv)
    if args.list_recipes:
        print("\n".join(list_recipes()))
        return 0
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if "WORLD_SIZE" not in os.environ:  # not already one of torchrun's processes
        try:
            count = local_processes(args.local_processes, config)
            if count > 1:
                return launch_local(config, count)
        except ValueError as error:
            print(f"[srlib.train] {error}", file=sys.stderr)
            return 2
    if argv is None:
        _restart_with_omp_wait_policy(config)
    from srlib.train import distributed  # torch-heavy imports only after parsing
    from srlib.train.engine import NonFiniteError, Trainer

    try:
        try:  # setup errors (data, devices, checkpoints) get a message, not a traceback
            trainer = Trainer(config)
        except (FileNotFoundError, ValueError) as error:
            print(f"[srlib.train] {error}", file=sys.stderr)
            return 2
        try:
            trainer.fit()
        except NonFiniteError as error:  # a NaN or infinity in a batch, loss, gradient, state
            print(f"[srlib.train] {error}", file=sys.stderr)
            return 1
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
