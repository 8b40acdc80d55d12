"""Firing-rate monitor: spike rates of every spiking neuron layer, over one batch or a loader.

The firing rate of a layer is the fraction of its neurons that spike, averaged over time steps,
images and neurons:

    rate = sum of spikes / (T * images * neurons per step)

Built on SpikingJelly's :class:`~spikingjelly.activation_based.monitor.BaseMonitor` (hook
handles, ``enable``/``disable``, ``remove_hooks``), but where SpikingJelly's ``OutputMonitor``
appends every output to a list, this monitor folds each output into running sums at once
(per step ``[T]``, per channel ``[C]`` and, optionally, the map ``[C, H, W]``), so memory stays
flat over a loader of any length and nothing is kept on the autograd graph.
"""

import math

import pandas as pd
import torch
from spikingjelly.activation_based.monitor import BaseMonitor
from torch import nn

from srlib.analysis.naming import describe
from srlib.analysis.ops import exact_sum
from srlib.neurons import is_spiking_neuron


class _RunningRate:
    """Running spike sums of one neuron layer (sums in float64, on the output's device)."""

    def __init__(self, keep_map: bool):
        self.keep_map = keep_map
        self.images = 0
        self.T = None
        self.feature_shape = None  # one step of one image, e.g. (C, H, W)
        self.step_sum = self.channel_sum = self.map_sum = None

    def update(self, name: str, spikes: torch.Tensor) -> None:
        if spikes.dim() < 3:
            raise ValueError(f"{name}: expected neuron output [T, B, C, ...], "
                             f"got shape {tuple(spikes.shape)}")
        T, B, C = spikes.shape[:3]
        if self.T is None:
            self.T, self.feature_shape = T, tuple(spikes.shape[2:])
            self.step_sum = spikes.new_zeros(T, dtype=torch.float64)
            self.channel_sum = spikes.new_zeros(C, dtype=torch.float64)
            if self.keep_map:
                self.map_sum = spikes.new_zeros(self.feature_shape, dtype=torch.float64)
        elif (T, tuple(spikes.shape[2:])) != (self.T, self.feature_shape):
            raise ValueError(f"{name}: output changed from T={self.T}, {self.feature_shape} to "
                             f"T={T}, {tuple(spikes.shape[2:])}; call reset() between inputs "
                             f"of different size or length")
        # partial sums in the spikes' precision (exact below 2^24), totals in float64
        grid = exact_sum(spikes.detach().reshape(T, B, C, -1), 3)  # [T, B, C]
        self.step_sum += grid.sum((1, 2))  # [T]
        self.channel_sum += grid.sum((0, 1))  # [C]
        if self.keep_map:
            self.map_sum += exact_sum(spikes.detach(), (0, 1))  # [C, ...]
        self.images += B

    @property
    def neurons(self) -> int:
        return math.prod(self.feature_shape)


class FiringRateMonitor(BaseMonitor):
    """Records firing rates of every spiking neuron layer (``srlib.neurons.is_spiking_neuron``).

    Use as a context manager, or call :meth:`attach` / :meth:`detach` yourself; hooks are
    attached at construction. Every forward while attached adds to the running sums::

        with FiringRateMonitor(model) as monitor:
            for images, _ in loader:
                model(images)
        monitor.table()                  # one row per neuron layer
        monitor.table(by="step")         # one row per layer and time step (tidy, for seaborn)
        monitor.rate_maps()["layers.0.1.up.0"]   # [C, H, W]

    The monitor never changes the model's outputs or state; :meth:`detach` removes every hook
    it added and keeps what was recorded.

    Args:
        model: the network to watch.
        rate_maps: also keep the per-position sums (one float64 per neuron of each layer) for
            :meth:`rate_maps`; turn off to save memory when only rates are needed.
    """

    def __init__(self, model: nn.Module, *, rate_maps: bool = True):
        super().__init__()
        self.model = model
        self.keep_maps = rate_maps
        self._modules = [(name, module) for name, module in model.named_modules()
                         if is_spiking_neuron(module)]
        if not self._modules:
            raise ValueError(f"{type(model).__name__} has no spiking neuron layers to monitor")
        self.monitored_layers = [name for name, _ in self._modules]
        self._info = {name: describe(model, name) for name in self.monitored_layers}
        self.reset()
        self.attach()

    # --- hooks --------------------------------------------------------------------------------
    def attach(self) -> "FiringRateMonitor":
        """Register the forward hooks (no-op when attached) and enable recording."""
        if not self.hooks:
            for name, module in self._modules:
                self.hooks.append(module.register_forward_hook(self._hook(name)))
        self.enable()
        return self

    def detach(self) -> "FiringRateMonitor":
        """Remove every hook this monitor added; the recorded sums are kept."""
        self.remove_hooks()
        return self

    close = detach  # SpikingJelly's name; unlike its close(), attach() works again afterwards

    def __enter__(self) -> "FiringRateMonitor":
        return self.attach()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self.is_enable():
                self._record(name, output)
        return hook

    def _record(self, name: str, value: torch.Tensor) -> None:
        # SpikingJelly's BaseMonitor appends to self.records; we fold into running sums
        self._stats[name].update(name, value)

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self._stats = {name: _RunningRate(self.keep_maps) for name in self.monitored_layers}

    clear_recorded_data = reset

    # --- results ------------------------------------------------------------------------------
    def _recorded(self):
        recorded = [(name, stats) for name, stats in self._stats.items() if stats.images]
        if not recorded:
            raise RuntimeError("nothing recorded yet: run the model while the monitor is attached")
        return recorded

    def _row(self, name: str) -> dict:
        info = self._info[name]
        return dict(name=name, stage=info.stage, block=info.block, kind=info.kind)

    def rates(self) -> dict[str, float]:
        """``{layer name: firing rate}`` for every layer that ran."""
        return {name: float(stats.step_sum.sum() / (stats.images * stats.T * stats.neurons))
                for name, stats in self._recorded()}

    def head_rates(self, name: str) -> torch.Tensor | None:
        """Per-head rates ``[h]`` of a layer inside an attention block, else ``None``.

        Head i owns channels ``[i C/h, (i+1) C/h)`` of the neuron's output (DSSA's and SSA's
        layout); an output with exactly h channels (DSSA's attention spikes ``[T, B, h, ...]``)
        has one head per channel.
        """
        stats, heads = self._stats[name], self._info[name].num_heads
        C = stats.feature_shape[0]
        if heads is None or C % heads:
            return None
        spatial = stats.neurons // C
        per_head = stats.channel_sum.view(heads, C // heads).sum(1)  # [h]
        return (per_head / (stats.images * stats.T * spatial * (C // heads))).float().cpu()

    def table(self, by: str = "layer") -> pd.DataFrame:
        """Tidy firing-rate table.

        Args:
            by: ``"layer"`` (one row per neuron layer: name, stage, block, kind, neurons per
                step, rate, spikes per image summed over T, images, T), or one row per layer and
                ``"step"``, ``"head"`` (attention layers only) or ``"channel"``, each with the
                column of that name and ``rate``.
        """
        rows = []
        for name, stats in self._recorded():
            base = self._row(name)
            if by == "layer":
                total = float(stats.step_sum.sum())
                rows.append(dict(base, neurons=stats.neurons,
                                 rate=total / (stats.images * stats.T * stats.neurons),
                                 spikes_per_image=total / stats.images, images=stats.images,
                                 T=stats.T))
            elif by == "step":
                per_step = (stats.step_sum / (stats.images * stats.neurons)).tolist()
                rows += [dict(base, step=t, rate=rate) for t, rate in enumerate(per_step)]
            elif by == "head":
                per_head = self.head_rates(name)
                if per_head is not None:
                    rows += [dict(base, head=i, rate=r) for i, r in enumerate(per_head.tolist())]
            elif by == "channel":
                spatial = stats.neurons // stats.feature_shape[0]
                per_channel = (stats.channel_sum / (stats.images * stats.T * spatial)).tolist()
                rows += [dict(base, channel=c, rate=r) for c, r in enumerate(per_channel)]
            else:
                raise ValueError(f"by must be 'layer', 'step', 'head' or 'channel', got {by!r}")
        frame = pd.DataFrame(rows)
        for column in ("stage", "block"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")  # nullable: None outside stages
        return frame

    def rate_maps(self) -> dict[str, torch.Tensor]:
        """``{layer name: rate map}``, each the mean over T and images of the layer's output:
        ``[C, H, W]`` for conv-shaped layers, ``[h, N_kv, HW]`` for DSSA's attention spikes.
        """
        if not self.keep_maps:
            raise RuntimeError("this monitor was built with rate_maps=False")
        return {name: (stats.map_sum / (stats.images * stats.T)).float().cpu()
                for name, stats in self._recorded()}
