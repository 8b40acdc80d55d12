"""Count a model's SOPs, MACs, firing rates and energy on real (or random) data.

    python -m srlib.analysis --model spikingresformer_ti --checkpoint ti.pth \
        --data /data/imagenet --batches 10 --batch-size 32 --csv ti.csv --json ti.json

Prints one row per conv / linear / matmul layer and the totals per image (parameters, dense
MACs, SOPs, energy under both conventions, firing rates). ``--data`` is ``random`` (seeded
uniform noise: a smoke test, not a measurement), a dataset name known to ``srlib.data``, or an
image folder (``root/val/<class>/*.jpg`` or ``root/<class>/*.jpg``) read with the authors' eval
transform (bicubic resize to size / 0.95, center crop, ImageNet normalisation).
"""

import argparse
import itertools
import os
import sys

import torch

from srlib.analysis.calibrate import calibrate
from srlib.analysis.energy import CONVENTIONS
from srlib.analysis.profile import format_profile, profile_batches
from srlib.checkpoint import atomic_write_json, atomic_write_text, load_checkpoint
from srlib.data import DATASETS, build_dataset
from srlib.data.transforms import imagenet_eval_transform
from srlib.models import create_model, list_models

UNTRAINED_WARNING = ("WARNING: no --checkpoint: the network is untrained, and an untrained "
                     "network barely fires (in eval mode, with fresh BN statistics, not at all; "
                     "--calibrate sets them from the first batch), so these SOPs and energies "
                     "say nothing about the paper's.")


def random_batches(num_batches: int, batch_size: int, shape: tuple, seed: int):
    """Seeded uniform [0, 1) images ``[B, *shape]``: a smoke test, not data."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num_batches):
        yield torch.rand(batch_size, *shape, generator=generator)


def image_folder(root: str, img_size: int):
    """An ImageFolder at ``root/val`` (or ``root``) with the authors' eval transform."""
    from torchvision import datasets

    if os.path.isdir(os.path.join(root, "val")):
        root = os.path.join(root, "val")
    return datasets.ImageFolder(root, transform=imagenet_eval_transform(img_size))


def build_batches(args, config):
    """The batches to profile and a one-line description of where they come from."""
    img_size = args.img_size or config.img_size
    if args.data == "random":
        shape = (config.in_channels, img_size, img_size)
        return (random_batches(args.batches, args.batch_size, shape, args.seed),
                f"RANDOM INPUT: seeded uniform noise {shape} (seed {args.seed}), not data")
    if args.data in DATASETS:
        dataset = build_dataset(args.data, root=args.data_root, train=False, img_size=img_size)
        description = f"{args.data} (eval split) at {img_size} px"
    elif os.path.isdir(args.data):
        dataset = image_folder(args.data, img_size)
        description = f"image folder {dataset.root}, {len(dataset)} images at {img_size} px"
    else:
        raise SystemExit(f"--data must be 'random', a dataset name known to srlib.data or an "
                         f"image folder; got {args.data!r}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers)
    return itertools.islice(loader, args.batches), description


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m srlib.analysis",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="spikingresformer_ti", help="a name from the zoo")
    parser.add_argument("--checkpoint", help="srlib or authors' checkpoint to load")
    parser.add_argument("--data", default="random",
                        help="'random', a dataset name (srlib.data) or an image folder")
    parser.add_argument("--data-root", help="dataset root for a named dataset")
    parser.add_argument("--batches", type=int, default=1, help="batches to average over")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, help="input size (default: the model's)")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default: model's)")
    parser.add_argument("--T", type=int, help="time steps (default: the model's)")
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                        help="untrained networks only: set BN statistics and DSSA rates from "
                             "the first batch so that the network fires")
    parser.add_argument("--convention", default="paper", choices=sorted(CONVENTIONS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of --data random")
    parser.add_argument("--csv", help="write the per-layer table here")
    parser.add_argument("--json", help="write the totals and the per-layer table here")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1:
        parser.error("--batches and --batch-size must be >= 1")
    if args.model not in list_models():
        parser.error(f"unknown model {args.model!r}; expected one of {', '.join(list_models())}")
    if args.calibrate and args.checkpoint:
        parser.error("--calibrate would overwrite the checkpoint's BN statistics and rates")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = create_model(args.model, num_classes=args.num_classes, img_size=args.img_size,
                         T=args.T)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    else:
        print(UNTRAINED_WARNING, file=sys.stderr)
    model.to(args.device)
    batches, description = build_batches(args, model.config)
    print(f"{args.model}: {description}")
    if args.calibrate:
        first = next(iter(batches))
        calibrate(model, (first[0] if isinstance(first, (tuple, list)) else first).to(args.device))
        batches = itertools.chain([first], batches)
        print("untrained network, BN statistics and DSSA rates calibrated on the first batch")
    result = profile_batches(model, batches, convention=args.convention)
    print(format_profile(result))
    if args.csv:
        atomic_write_text(args.csv, result.layers.to_csv(index=False))
    if args.json:
        report = dict(model=args.model, checkpoint=args.checkpoint, data=description,
                      totals=result.totals, layers=result.layers.to_dict(orient="records"),
                      rates=result.rates.to_dict(orient="records"))
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
