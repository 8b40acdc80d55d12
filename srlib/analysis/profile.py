"""One call to measure a network: per-layer SOPs, MACs, input firing rates and energy.

    result = profile(model, images)            # static [B, C, H, W] or sequence [T, B, C, H, W]
    result.layers                              # one row per conv / linear / matmul
    result.totals                              # per image: sops, macs, energy_mj, params, ...
    result.rates                               # one row per spiking neuron layer

The paper's accounting (Shi et al., CVPR 2024, energy estimation in the experiments; the
authors' ``SOPMonitor``): every conv,
linear and spike matmul is counted (:mod:`srlib.analysis.ops`) except the stem conv (analog
input) and the classifier (pooled real values). Counts are per image, summed over the T steps,
divided by the number of images actually seen. Energy follows :mod:`srlib.analysis.energy`.

Cross-check: SpikingJelly 2.0's ``SynOpCounter`` gives the same SOPs on these models. It decides
per operation from the values (an operand made only of 0s and 1s is a spike operand; a conv or
product without one costs no SOPs), where the paper decides by layer: they part when the stem's
input happens to be binary (a binarised DVS frame: SpikingJelly counts the stem, the paper never
does) or when a counted layer gets non-binary spike counts (Spikformer's summed stream: the
paper counts each count as that many spikes, SpikingJelly counts nothing). Both count a product
with spikes on both sides as its number of coincidences.
"""

import time
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from srlib.analysis.energy import ann_energy_mj, check_convention, energy_mj
from srlib.analysis.monitor import FiringRateMonitor
from srlib.analysis.naming import describe
from srlib.analysis.ops import OpCounter
from srlib.neurons import reset_states

LAYER_COLUMNS = ["name", "type", "stage", "block", "kind", "counted", "stem", "spike_input",
                 "input_rate", "sops", "macs_per_step", "macs", "energy_mj",
                 "energy_mj_paper", "energy_mj_with_stem"]


@dataclass
class Profile:
    """What :func:`profile` measured. Every count is per image; ``sops`` and ``macs`` are
    summed over the T steps, ``macs_per_step`` is one step."""

    layers: pd.DataFrame
    totals: dict
    rates: pd.DataFrame
    convention: str
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self) -> str:
        t = self.totals
        return (f"Profile({t['num_images']} images, T={t['T']}: {t['sops'] / 1e9:.4f} G SOPs, "
                f"{t['macs_per_step'] / 1e9:.4f} G MACs/step, {t['energy_mj']:.4f} mJ "
                f"({self.convention}), mean firing rate {t['mean_firing_rate']:.4f})")


def default_skip(counter: OpCounter) -> tuple[str, ...]:
    """The paper's left-out layers, found by execution order: the first conv/linear to run
    (the stem, fed the analog image) and the last layer to run when it is a linear layer (the
    classifier, fed pooled real values). For SpikingResformer: ``prologue.0``, ``classifier``.
    """
    ordered = sorted(counter.counts.values(), key=lambda count: count.order)
    layers = [count for count in ordered if count.role in ("conv", "linear")]
    skip = []
    if layers:
        skip.append(layers[0].name)
        if ordered[-1].role == "linear":
            skip.append(ordered[-1].name)
    return tuple(dict.fromkeys(skip))


def _layer_rows(model, counter, skip, stem, convention):
    rows = []
    for count in sorted(counter.counts.values(), key=lambda c: c.order):
        info = describe(model, count.name)
        # dense (real-valued) products cost MACs only
        counted = count.name not in skip and count.role != "dense_matmul"
        sops = float(count.sops) / counter.images if counted else 0.0
        macs = count.macs / counter.images
        is_stem = count.name == stem
        numel = count.input_numel
        rows.append(dict(
            name=count.name, type=count.type, stage=info.stage, block=info.block,
            kind=info.kind, counted=counted, stem=is_stem, spike_input=bool(count.spike_input),
            input_rate=float(count.input_sum) / numel if numel else float("nan"),
            sops=sops, macs_per_step=count.macs / counter.image_steps, macs=macs,
            energy_mj_paper=energy_mj(sops, convention="paper"),
            energy_mj_with_stem=energy_mj(sops, macs if is_stem else 0.0, "with_stem")))
        rows[-1]["energy_mj"] = rows[-1][f"energy_mj_{convention}"]
    frame = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    for column in ("stage", "block"):
        frame[column] = frame[column].astype("Int64")
    return frame


def profile_batches(model: nn.Module, batches: Iterable, *, convention: str = "paper",
                    skip: Iterable[str] | None = None, max_batches: int | None = None) -> Profile:
    """Run ``model`` over ``batches`` and count per image, exactly (any batch sizes).

    The model runs in eval mode under ``torch.no_grad`` and is left as it was: every module's
    train/eval flag is restored, and eval mode leaves BN statistics and DSSA's running firing
    rates untouched; neuron membranes are reset afterwards (the model resets them at every call
    anyway).

    Args:
        model: the network; inputs are moved to the device of its parameters.
        batches: tensors ``[B, C, H, W]`` / ``[T, B, C, H, W]``, or ``(inputs, targets)`` pairs
            as a DataLoader yields them.
        convention: energy convention of the ``energy_mj`` column and total (see
            :mod:`srlib.analysis.energy`); both conventions are always reported too.
        skip: names of conv/linear layers left out of the SOPs; ``None`` leaves out the stem
            and the classifier, as the paper does (see :func:`default_skip`).
        max_batches: stop after this many batches.
    """
    check_convention(convention)
    device = next(model.parameters()).device
    was_training = {module: module.training for module in model.modules()}
    start, seen = time.perf_counter(), 0
    model.eval()
    try:
        with torch.no_grad(), OpCounter(model) as counter, \
                FiringRateMonitor(model, rate_maps=False) as monitor:
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(inputs.to(device))
                seen += 1
    finally:
        for module, training in was_training.items():
            module.train(training)
        reset_states(model)
    if counter.images == 0:
        raise ValueError("no batches to profile")
    skip = default_skip(counter) if skip is None else tuple(skip)
    unknown = [name for name in skip if name not in counter.counts]
    if unknown:
        raise ValueError(f"skip names {unknown} are not conv/linear/matmul layers that ran; "
                         f"expected some of {list(counter.counts)}")
    first = min(counter.counts.values(), key=lambda c: c.order).name
    stem = first if first in skip else None
    layers = _layer_rows(model, counter, skip, stem, convention)
    rates = monitor.table()
    totals = _totals(model, counter, layers, rates, convention)
    warnings = [f"{name}: counted, but its input is not spikes (min < 0 or non-integer), so its "
                f"'SOPs' are a sum of real values; charge it as MACs instead"
                for name in layers.name[layers.counted & ~layers.spike_input]]
    return Profile(layers, totals, rates, convention, warnings, time.perf_counter() - start)


def _totals(model, counter, layers, rates, convention) -> dict:
    from srlib.models import count_parameters  # lazy: models may import analysis helpers later
    stem_macs = float(layers.macs[layers.stem].sum())
    neuron_steps = float((rates["neurons"] * rates["T"]).sum())  # per image
    sops = float(layers.sops.sum())
    macs_per_step = float(layers.macs_per_step.sum())
    totals = dict(
        num_images=counter.images, T=round(counter.image_steps / counter.images),
        params=count_parameters(model), params_no_bn=count_parameters(model, False),
        sops=sops, macs=float(layers.macs.sum()), macs_per_step=macs_per_step,
        stem_macs_per_step=float(layers.macs_per_step[layers.stem].sum()),
        energy_mj_paper=energy_mj(sops, convention="paper"),
        energy_mj_with_stem=energy_mj(sops, stem_macs, "with_stem"),
        ann_energy_mj=ann_energy_mj(macs_per_step),
        mean_firing_rate=float(rates.rate.mean()),
        overall_firing_rate=float(rates["spikes_per_image"].sum()) / neuron_steps,
        convention=convention,
        counted_layers=int(layers.counted.sum()),
        skipped=[name for name in layers.name[~layers.counted]])
    totals["energy_mj"] = totals[f"energy_mj_{convention}"]
    return totals


def profile(model: nn.Module, inputs: torch.Tensor, *, convention: str = "paper",
            skip: Iterable[str] | None = None) -> Profile:
    """Profile one batch: static ``[B, C, H, W]`` or time-major ``[T, B, C, H, W]``.

    See :func:`profile_batches` (this is it with one batch) and the module docstring.

    Args:
        model: the network (left as it was: train/eval flags, buffers, BN statistics).
        inputs: the batch.
        convention: ``"paper"`` (default) or ``"with_stem"``; see :mod:`srlib.analysis.energy`.
        skip: layers left out of the SOPs; ``None``: the stem and the classifier.
    """
    if not torch.is_tensor(inputs) or inputs.dim() not in (4, 5):
        raise ValueError("profile expects a tensor [B, C, H, W] or [T, B, C, H, W], got "
                         f"{getattr(inputs, 'shape', type(inputs).__name__)}")
    return profile_batches(model, [inputs], convention=convention, skip=skip)


def format_profile(result: Profile) -> str:
    """The per-layer table and the totals as plain text (what the CLI prints)."""
    table = result.layers.copy()
    table["sops_m"] = table.sops / 1e6
    table["macs_per_step_m"] = table.macs_per_step / 1e6
    columns = ["name", "kind", "counted", "input_rate", "sops_m", "macs_per_step_m", "energy_mj"]
    lines = [table[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"), ""]
    t = result.totals
    lines += [
        f"images {t['num_images']}, T = {t['T']}, {result.seconds:.1f} s",
        f"params            {t['params']:,} ({t['params_no_bn']:,} without BN affine)",
        f"dense MACs        {t['macs_per_step'] / 1e9:.4f} G per step per image "
        f"(stem {t['stem_macs_per_step'] / 1e9:.4f} G)",
        f"SOPs              {t['sops'] / 1e9:.4f} G per image over T steps",
        f"energy (paper)    {t['energy_mj_paper']:.4f} mJ = 0.9 pJ x SOPs",
        f"energy (w/ stem)  {t['energy_mj_with_stem']:.4f} mJ = paper + 4.6 pJ x stem MACs",
        f"ANN energy        {t['ann_energy_mj']:.4f} mJ = 4.6 pJ x dense MACs of one step",
        f"firing rate       {t['mean_firing_rate']:.4f} mean over {len(result.rates)} neuron "
        f"layers, {t['overall_firing_rate']:.4f} over all neurons",
        f"not counted       {', '.join(t['skipped'])}"]
    lines += [f"WARNING {warning}" for warning in result.warnings]
    return "\n".join(lines)
