"""Evaluate a trained model in one pass: top-1 / top-5, per-layer firing rates, SOPs and energy.

    python -m srlib.evaluate --model spikingresformer_ti --checkpoint ti.pth \
        --data-root data/imagenet
    torchrun --standalone --nproc-per-node 8 -m srlib.evaluate --model spikingresformer_ti \
        --checkpoint ti.pth --data-root data/imagenet --out results/ti

What the authors' ``main.py --test-only`` does (github.com/xyshi2000/SpikingResformer), in one
pass over the evaluation split with the recipe's evaluation transform, in float32 unless
``--amp``: accuracy, then per image the synaptic operations (SOPs) and the energy in both
conventions of :mod:`srlib.analysis.energy` (the paper's 0.9 pJ x SOPs, and with the analog
stem's MACs charged), and every neuron layer's firing rate. :func:`srlib.analysis.profile_batches`
runs the model and counts (the model as defined, per image exactly, whatever the batch sizes);
a forward hook scores each batch with the trainer's own function
(:func:`srlib.train.metrics.classification_totals`), so the accuracy is the trainer's.

The model comes from ``--config`` (a recipe), ``--model`` (the recipe that trains it, e.g.
``imagenet_ti``), or the run state given as ``--checkpoint`` (``best.pth`` of a run carries its
config). ``--checkpoint`` takes srlib's run states and weights and the authors' released files
(:func:`srlib.load_checkpoint`); one that does not fit the model is refused with the keys
named, exit status 2, before anything is written. Under ``torchrun`` each process evaluates its
shard (every item exactly once) and the totals are combined once. The printed summary puts the
paper's numbers next to the measured ones where srlib records them (:data:`PUBLISHED`);
``--out DIR`` writes ``evaluation.json``, ``layers.csv`` and ``firing_rates.csv`` (each file
written to a temporary name, then renamed).
"""

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch

from srlib.analysis.profile import profile_batches
from srlib.checkpoint import (atomic_write_json, atomic_write_text, load_checkpoint,
                              read_checkpoint)
from srlib.data import DATASETS, build_loader, dataset_info
from srlib.models import list_models
from srlib.train import distributed
from srlib.train.config import list_recipes, load_config, make_config, read_recipe
from srlib.train.metrics import classification_totals, totals_to_metrics
from srlib.train.setup import build_eval_dataset, build_model

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# per-image figures of srlib.analysis.profile: the processes' shards combine as image-weighted
# means (each is a sum over images divided by the images, so the weighted mean is exact)
PER_IMAGE_TOTALS = ("sops", "macs", "macs_per_step", "stem_macs_per_step", "energy_mj",
                    "energy_mj_paper", "energy_mj_with_stem", "ann_energy_mj",
                    "mean_firing_rate", "overall_firing_rate")
PER_IMAGE_LAYER = ("input_rate", "sops", "macs_per_step", "macs", "energy_mj",
                   "energy_mj_paper", "energy_mj_with_stem")
PER_IMAGE_RATES = ("rate", "spikes_per_image")


@dataclass(frozen=True)
class Published:
    """A model's published ImageNet figures (None: not given)."""

    top1: float
    sops_g: float | None
    energy_mj: float | None
    img_size: int
    source: str


PUBLISHED = {
    # Shi, Hao, Yu, CVPR 2024, Table 2 (ImageNet, T = 4)
    "spikingresformer_ti": Published(74.34, 2.73, 2.46, 224, "Shi et al. 2024, Table 2"),
    "spikingresformer_m": Published(77.24, 6.07, 5.46, 224, "Shi et al. 2024, Table 2"),
    "spikingresformer_l": Published(79.40, None, None, 288,
                                    "Shi et al. 2024, abstract and Table 2, at 288 px"),
    # Zhou et al., ICLR 2023, as SpikingResformer's Table 2 quotes them (their own energy
    # accounting, not the 0.9 pJ x SOPs above)
    "spikformer_8_384": Published(70.24, None, 7.73, 224, "Zhou et al. 2023"),
    "spikformer_8_512": Published(73.38, None, 11.58, 224, "Zhou et al. 2023"),
    "spikformer_8_768": Published(74.81, None, 21.48, 224, "Zhou et al. 2023"),
}


def recipe_for(model: str, dataset: str | None = None) -> str | None:
    """The shipped recipe that trains ``model`` (on ``dataset`` if given), direct training
    before transfer; None if there is none."""
    recipes = {name: read_recipe(name) for name in list_recipes()}  # each YAML read once
    names = [name for name, recipe in recipes.items() if recipe.get("model") == model and
             (dataset is None or recipe.get("dataset") == dataset)]
    names.sort(key=lambda name: (name.startswith("transfer_"), name))
    return names[0] if names else None


def resolve_config(args, checkpoint: dict):
    """The evaluation's TrainConfig: --config, else the recipe of --model, else the config a
    run state carries; command-line values override it."""
    overrides = {key: value for key, value in dict(
        dataset=args.dataset, data_root=args.data_root, num_classes=args.num_classes,
        img_size=args.img_size, crop_pct=args.crop_pct, T=args.T,
        eval_batch_size=args.batch_size, workers=args.workers,
        max_eval_samples=args.max_samples).items() if value is not None}
    overrides.update(device=args.device, pretrained=None, download=False)
    if args.config:
        return load_config(args.config, **overrides, **({"model": args.model} if args.model
                                                         else {}))
    if args.model:
        recipe = recipe_for(args.model, args.dataset)
        if recipe is None and args.dataset is None:
            raise ValueError(f"no shipped recipe trains {args.model}; give --dataset (one of "
                             f"{sorted(DATASETS)}) or --config")
        return load_config(recipe, model=args.model, **overrides)
    if isinstance(checkpoint.get("config"), dict):  # an srlib run state knows its recipe
        return make_config({**checkpoint["config"], **overrides, "resume": None})
    raise ValueError(f"{args.checkpoint} carries no config (it is not an srlib run state): "
                     "give --model or --config")


class _Scorer:
    """Feeds a loader's images to profile_batches and scores each forward's logits (a forward
    hook on the model) against the labels of the batch being run."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device
        self.totals = torch.zeros(4, dtype=torch.float64, device=device)
        self.labels = None

    def batches(self):
        for images, labels in self.loader:
            self.labels = labels.to(self.device)
            yield images

    def __call__(self, module, inputs, logits) -> None:
        self.totals += classification_totals(logits, self.labels)  # [T, B, K] -> sums


def evaluate_shard(model, loader, device: torch.device, amp: str = "none") -> dict:
    """This process's part: summed scores and, if it saw images, its profile (as records)."""
    scorer = _Scorer(loader, device)
    handle = model.register_forward_hook(scorer)
    autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if AMP_DTYPES[amp]
                else contextlib.nullcontext())
    try:
        with autocast:
            result = profile_batches(model, scorer.batches()) if len(loader) else None
    finally:
        handle.remove()
    part = {"scores": scorer.totals.tolist(), "profile": None}
    if result is not None:
        part["profile"] = {"totals": result.totals,
                           "layers": result.layers.to_dict(orient="records"),
                           "rates": result.rates.to_dict(orient="records")}
    return part


def merge_profiles(profiles: list[dict | None]) -> dict:
    """The processes' profiles as one: per-image figures weighted by each shard's images."""
    profiles = [profile for profile in profiles if profile is not None]
    if not profiles:
        raise ValueError("the evaluation split is empty: nothing to evaluate")
    if len(profiles) == 1:
        return profiles[0]
    weights = [profile["totals"]["num_images"] for profile in profiles]

    def mean(values) -> float:
        return sum(w * v for w, v in zip(weights, values)) / sum(weights)

    totals = dict(profiles[0]["totals"], num_images=sum(weights))
    totals.update({key: mean([p["totals"][key] for p in profiles]) for key in PER_IMAGE_TOTALS})
    merged = {"totals": totals}
    for table, columns in (("layers", PER_IMAGE_LAYER), ("rates", PER_IMAGE_RATES)):
        rows = []
        for parts in zip(*(profile[table] for profile in profiles)):
            assert len({part["name"] for part in parts}) == 1, "processes ran different layers"
            row = dict(parts[0], **{key: mean([part[key] for part in parts]) for key in columns})
            if table == "layers":
                row["spike_input"] = all(part["spike_input"] for part in parts)
            else:
                row["images"] = sum(part["images"] for part in parts)
            rows.append(row)
        merged[table] = rows
    return merged


def _cell(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary(report: dict) -> str:
    """The printed summary: per-layer firing rates, then measured next to published."""
    totals, metrics = report["profile"]["totals"], report["metrics"]
    rates = pd.DataFrame(report["profile"]["rates"])[["name", "kind", "rate"]]
    published = PUBLISHED.get(report["model"])
    paper = published or Published(None, None, None, report["img_size"], "")
    rows = [("top-1 (%)", metrics["test_acc"], paper.top1, 2),
            ("top-5 (%)", metrics["test_acc5"], None, 2),
            ("SOPs (G per image)", totals["sops"] / 1e9, paper.sops_g, 4),
            ("energy, paper (mJ)", totals["energy_mj_paper"], paper.energy_mj, 4),
            ("energy, with stem (mJ)", totals["energy_mj_with_stem"], None, 4),
            ("dense MACs per step (G)", totals["macs_per_step"] / 1e9, None, 4),
            ("mean firing rate", totals["mean_firing_rate"], None, 4)]
    lines = [f"per-layer firing rates ({len(rates)} neuron layers):",
             rates.to_string(index=False, float_format=lambda v: f"{v:.4f}"), "",
             f"{'':<26}{'measured':>12}{'paper':>10}"]
    lines += [f"{name:<26}{_cell(ours, digits):>12}{_cell(theirs, 2):>10}"
              for name, ours, theirs, digits in rows]
    if published is None:
        lines.append(f"paper: srlib records no published figures for {report['model']}")
    else:
        lines.append(f"paper: {published.source}" + (
            f" (measured here at {report['img_size']} px)"
            if published.img_size != report["img_size"] else ""))
    lines.append("energy, paper = 0.9 pJ x SOPs (stem and classifier not charged); with stem: "
                 "+ 4.6 pJ x the stem's MACs over the T steps")
    return "\n".join(lines)


def write_outputs(report: dict, args) -> list[str]:
    """The JSON report and the CSV tables the arguments ask for; returns the paths."""
    paths = {"json": args.json, "csv": args.csv, "rates": None}
    if args.out:
        paths = {"json": os.path.join(args.out, "evaluation.json"),
                 "csv": os.path.join(args.out, "layers.csv"),
                 "rates": os.path.join(args.out, "firing_rates.csv")}
    writers = {"json": lambda path: atomic_write_json(path, report),
               "csv": lambda path: atomic_write_text(
                   path, pd.DataFrame(report["profile"]["layers"]).to_csv(index=False)),
               "rates": lambda path: atomic_write_text(
                   path, pd.DataFrame(report["profile"]["rates"]).to_csv(index=False))}
    written = []
    for key, path in paths.items():
        if path:
            writers[key](path)
            written.append(path)
    return written


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m srlib.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True,
                        help="srlib run state or weights, or the authors' released file")
    parser.add_argument("--model", help="a zoo name; its recipe gives data and transform")
    parser.add_argument("--config", help="a recipe (shipped name or YAML file)")
    parser.add_argument("--data-root", help="where the dataset lies (default: srlib.paths)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="default: the recipe's")
    parser.add_argument("--num-classes", type=int, help="default: the recipe's / dataset's")
    parser.add_argument("--img-size", type=int, help="default: the recipe's")
    parser.add_argument("--crop-pct", type=float, help="eval center crop (default: recipe's)")
    parser.add_argument("--T", type=int, help="time steps (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="per process (default: the recipe's "
                                                       "evaluation batch)")
    parser.add_argument("--workers", type=int, help="loader processes per process")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda:1", ...')
    parser.add_argument("--amp", default="none", choices=sorted(AMP_DTYPES),
                        help="autocast precision (default: float32, as the authors evaluate)")
    parser.add_argument("--max-samples", type=int, help="only the first n evaluation items")
    parser.add_argument("--out", help="folder for evaluation.json, layers.csv, firing_rates.csv")
    parser.add_argument("--json", help="write the whole report here")
    parser.add_argument("--csv", help="write the per-layer SOP / MAC / energy table here")
    args = parser.parse_args(argv)
    if args.model and args.model not in list_models():
        parser.error(f"unknown model {args.model!r}; expected one of {', '.join(list_models())}")
    if args.out and (args.json or args.csv):
        parser.error("give --out, or --json / --csv, not both")
    return args


def run(args) -> tuple[dict, distributed.DistributedContext]:
    """Evaluate as the arguments say; returns the report (the same on every process) and
    this process's place."""
    checkpoint = read_checkpoint(args.checkpoint)
    config = resolve_config(args, checkpoint)
    context, device = distributed.setup(config.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs CUDA; on the CPU use bf16 or none")
    model = build_model(config, device)
    load_checkpoint(model, checkpoint)  # CheckpointError names every key that does not fit
    test_set = build_eval_dataset(config)
    loader = build_loader(test_set, config.eval_batch_size or 2 * config.batch_size,
                          train=False, num_workers=config.workers,
                          sequence=dataset_info(config.dataset).sequence,
                          pin_memory=device.type == "cuda")
    start = time.perf_counter()
    part = evaluate_shard(model, loader, device, args.amp)
    parts = distributed.gather_objects(part)
    scores = [sum(values) for values in zip(*(p["scores"] for p in parts))]
    img_size = config.img_size or dataset_info(config.dataset).img_size
    report = dict(
        model=config.model, checkpoint=str(args.checkpoint), dataset=config.dataset,
        data_root=config.data_root, images=int(scores[3]), img_size=img_size, T=config.T,
        crop_pct=config.crop_pct, precision="float32" if args.amp == "none" else args.amp,
        processes=context.world_size, seconds=time.perf_counter() - start,
        metrics=totals_to_metrics(scores),
        paper=dataclasses.asdict(PUBLISHED[config.model]) if config.model in PUBLISHED else None,
        profile=merge_profiles([part["profile"] for part in parts]))
    return report, context


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (2: bad arguments, data or checkpoint)."""
    args = parse_args(argv)
    try:
        try:
            report, context = run(args)
        except (FileNotFoundError, ValueError) as error:  # CheckpointError is a ValueError
            print(f"[srlib.evaluate] {error}", file=sys.stderr)
            return 2
        if context.is_main:
            print(f"[srlib.evaluate] {report['model']} on {report['dataset']} (evaluation "
                  f"split, {report['images']:,} images at {report['img_size']} px, crop "
                  f"{report['crop_pct']}), T = {report['T']}, {report['precision']}, "
                  f"{report['processes']} process(es), {report['seconds']:.0f} s")
            print(summary(report))
            for path in write_outputs(report, args):
                print(f"wrote {path}")
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
