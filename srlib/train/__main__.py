"""Command line: ``python -m srlib.train [--config configs/X.yaml] [--key value ...]``.

Every field of :class:`srlib.train.TrainConfig` is an option (``--batch-size 64``,
``--amp bf16``, ``--compile`` / ``--no-compile``); options override the recipe, which overrides
the defaults. With no arguments it trains ``configs/default.yaml`` (Fashion-MNIST). Under
``torchrun --nproc-per-node N -m srlib.train ...`` it runs data-parallel.
"""

import argparse
import dataclasses
import inspect
import os
import sys
import types
import typing

import yaml

from srlib.train.config import DEFAULT_RECIPE, TrainConfig, load_config


def _option_type(hint):
    """(argparse type, nargs, is_bool) of a TrainConfig field."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)][0]
        kind, nargs, _ = _option_type(inner)
        return (lambda text: None if text.lower() in ("none", "null") else kind(text)), nargs, False
    if origin is tuple:
        args = typing.get_args(hint)
        return args[0], "+" if args[-1] is Ellipsis else len(args), False
    return hint, None, hint is bool


def _field_help() -> dict[str, str]:
    """The comment after each TrainConfig field in config.py, as its --help text."""
    helps = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        name, colon, rest = line.strip().partition(":")
        if colon and name.isidentifier() and "#" in rest:
            helps[name] = rest.split("#", 1)[1].strip().replace("%", "%%")
    return helps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m srlib.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", default=str(DEFAULT_RECIPE),
                        help="YAML recipe (default: %(default)s)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (recipe + options) as YAML and exit")
    hints, helps = typing.get_type_hints(TrainConfig), _field_help()
    for field in dataclasses.fields(TrainConfig):
        kind, nargs, is_bool = _option_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        text = helps.get(field.name)  # values come from the recipe: see --print-config
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
                     f"--print-config, {valid}")
    overrides = {key: value for key, value in vars(args).items()
                 if key not in ("config", "print_config")}
    try:
        return load_config(args.config, **overrides), args
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))


def _restart_with_passive_openmp(config) -> None:
    """On a busy machine, restart this command once with ``OMP_WAIT_POLICY=PASSIVE``.

    OpenMP reads the variable only when torch loads, before any of our code runs. Its default
    lets idle threads spin a little before sleeping. On a quiet machine that is the fastest
    setting (2 cores: the default recipe trains ~1.2x faster than with passive waiting, and
    the main job took 3 min 39 s instead of 4 min 20 s), but when other work already keeps
    every core busy (one-minute load average >= number of cores), spinning threads steal
    time from it and from each other: on a shared 2-core machine two spinning threads were
    3-5x slower than one thread, passive ones about 1.5x faster. Multi-threaded CPU runs
    restart with passive waiting only then. Set the variable yourself (to ``PASSIVE`` or
    ``ACTIVE``) to decide.
    """
    import torch

    on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if ("OMP_WAIT_POLICY" in os.environ or not on_cpu or config.threads == 1
            or "LOCAL_RANK" in os.environ):  # torchrun sets one thread per process anyway
        return
    if os.getloadavg()[0] < (os.cpu_count() or 1):  # quiet enough: spinning pays
        return
    sys.stdout.flush()
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    os.execve(sys.executable, [sys.executable, "-m", "srlib.train", *sys.argv[1:]], environment)


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (2: bad setup or data, 1: non-finite loss).

    Args:
        argv: the options; ``None`` reads the command line (and may restart the process
            once, see :func:`_restart_with_passive_openmp`).
    """
    config, args = parse_config(argv)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if argv is None:
        _restart_with_passive_openmp(config)
    from srlib.train import distributed  # torch-heavy imports only after parsing
    from srlib.train.engine import NonFiniteLossError, Trainer

    try:
        try:  # setup errors (data, devices, checkpoints) get a message, not a traceback
            trainer = Trainer(config)
        except (FileNotFoundError, ValueError) as error:
            print(f"[srlib.train] {error}", file=sys.stderr)
            return 2
        try:
            trainer.fit()
        except NonFiniteLossError as error:
            print(f"[srlib.train] {error}", file=sys.stderr)
            return 1
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
