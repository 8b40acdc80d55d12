"""Command line: ``python -m srlib.train [--config RECIPE] [--key value ...]``.

Every field of :class:`srlib.train.TrainConfig` is an option (``--batch-size 64``,
``--amp bf16``, ``--augment`` / ``--no-augment``); options override the recipe, which overrides
the defaults. ``--config`` takes a YAML file or the name of a shipped recipe (``imagenet_ti``;
``--list-recipes`` shows them); with no arguments it trains the main job (``default``,
Fashion-MNIST). Speed options: ``--perf best`` (default), ``--perf plain``, or fields of
``srlib.perf.PerfOptions``: ``--perf neuron_kernel=fused channels_last=true``. Under
``torchrun --nproc-per-node N -m srlib.train ...`` it runs data-parallel; ``--accum-steps K``
makes each optimizer step of K micro-batches (global batch = batch size x K x processes).
Exit status: 0 done, 2 bad setup, data or checkpoint, 1 a NaN or infinity stopped the run.
"""

import argparse
import dataclasses
import os
import sys
import types
import typing

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
                 if key not in ("config", "print_config", "list_recipes")}
    try:
        if "perf" in overrides:
            overrides["perf"] = _merge_perf(overrides["perf"])
        return load_config(args.config, **overrides), args
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))


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
