"""Speed options for training and inference: neuron kernels, memory layout, compile, allocator.

None of these change what the model computes (spikes are bitwise equal, gradients agree to
rounding; ``tests/test_perf_options.py`` checks it) and none change the state dict, so
checkpoints move freely between an optimised and a plain model. Measured effects are in
``benchmarks/README.md``. The usual entry point is :func:`apply_perf_options`::

    model = srlib.create_model("spikingresformer_ti")
    model = apply_perf_options(model, PerfOptions(neuron_kernel="fused-compiled"))

Neuron kernels (``set_neuron_kernel``), for the LIF neurons of a built model:

- ``"spikingjelly"``: SpikingJelly's ``LIFNode`` (the default of :func:`srlib.neurons.lif`;
  fused kernels on CUDA, step-by-step torch autograd on the CPU).
- ``"fused"``: :class:`srlib.fused.FusedLIFNode`, one autograd node per layer on the CPU,
  in-place eager kernels; SpikingJelly's kernels on CUDA.
- ``"fused-compiled"``: the same with the passes compiled by ``torch.compile`` on the CPU.
- ``"reference"``: :class:`srlib.neurons.ReferenceLIF`, the plain-torch teaching neuron (slow;
  the "plain implementation" of the benchmarks).
"""

import ctypes
import ctypes.util
import dataclasses
import sys

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from srlib.fused import FusedLIFNode
from srlib.neurons import ReferenceLIF

NEURON_KERNELS = ("spikingjelly", "fused", "fused-compiled", "reference")

# glibc mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_TUNED_TRIM_THRESHOLD = 2**31 - 1  # keep freed memory in the process (bytes)


def _lif_settings(module: nn.Module) -> dict | None:
    """tau, threshold, reset, alpha, decay_input of a hard-reset ATan LIF; None otherwise."""
    if isinstance(module, ReferenceLIF):
        if module.v_reset is None or not module.detach_reset:
            return None
        return dict(tau=module.tau, v_threshold=module.v_threshold, v_reset=module.v_reset,
                    alpha=module.alpha, decay_input=True)
    if isinstance(module, neuron.LIFNode):
        sg = module.surrogate_function
        if (module.v_reset is None or not module.detach_reset or type(sg) is not surrogate.ATan
                or not isinstance(sg.alpha, (int, float))):
            return None
        return dict(tau=module.tau, v_threshold=module.v_threshold, v_reset=module.v_reset,
                    alpha=float(sg.alpha), decay_input=module.decay_input)
    return None


def _build_neuron(kernel: str, settings: dict) -> nn.Module:
    if kernel == "reference":
        if not settings["decay_input"]:
            raise ValueError("ReferenceLIF implements decay_input=True only")
        return ReferenceLIF(tau=settings["tau"], v_threshold=settings["v_threshold"],
                            v_reset=settings["v_reset"], alpha=settings["alpha"])
    common = dict(tau=settings["tau"], decay_input=settings["decay_input"],
                  v_threshold=settings["v_threshold"], v_reset=settings["v_reset"],
                  surrogate_function=surrogate.ATan(alpha=settings["alpha"]),
                  detach_reset=True, step_mode="m")
    if kernel == "spikingjelly":
        return neuron.LIFNode(**common)
    return FusedLIFNode(**common, kernel="compiled" if kernel == "fused-compiled" else "eager")


def set_neuron_kernel(model: nn.Module, kernel: str) -> int:
    """Replace every hard-reset ATan LIF neuron in ``model`` by the ``kernel`` implementation.

    PLIF and IF neurons are left as they are. Neurons hold no parameters or buffers, so the
    state dict is unchanged.

    Args:
        model: a built model (modified in place).
        kernel: one of ``NEURON_KERNELS``.

    Returns:
        The number of neurons replaced.
    """
    if kernel not in NEURON_KERNELS:
        raise ValueError(f"neuron kernel must be one of {NEURON_KERNELS}, got {kernel!r}")
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            settings = _lif_settings(child)
            if settings is not None:
                setattr(parent, name, _build_neuron(kernel, settings))
                count += 1
    return count


def tune_cpu_allocator(enable: bool = True) -> bool:
    """Keep freed memory inside the process instead of returning it to the OS (glibc only).

    glibc serves every allocation above 32 MiB with a fresh ``mmap``, so each large activation
    of a CPU training step is page-faulted in and zero-filled again (on this repository's
    2-core machine that made a 51 MB elementwise product 2.5x slower). With ``mmap`` turned off
    and a high trim threshold, freed blocks are reused. The resident set then stays at its peak.

    Args:
        enable: ``True`` tunes, ``False`` restores glibc's defaults.

    Returns:
        Whether the setting was applied (``False`` off Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim, mmap_max = ((_TUNED_TRIM_THRESHOLD, 0) if enable
                      else (_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX))
    return bool(mallopt(_M_TRIM_THRESHOLD, trim)) and bool(mallopt(_M_MMAP_MAX, mmap_max))


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 2-D convolution weight channels-last (NHWC), in place.

    ``model.to(memory_format=...)`` cannot be used: DSSA's firing-rate buffers are 5-D. A conv
    with a channels-last weight returns a channels-last output, and batch norm and the
    neurons keep that layout, so activations follow without a separate input conversion.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = channels_last_weight(module.weight.data)
    return model


def channels_last_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[O, I, kh, kw]`` in NHWC strides that convolutions recognise as such.

    With one input channel per group (a 1-channel image's stem, depthwise convolutions) the
    plain layout is already "channels-last contiguous", so ``.contiguous(channels_last)``
    returns it unchanged and the convolution keeps its output NCHW; the 1-channel stem of the
    Fashion-MNIST model then sent all of stage 0 down the slow mixed-layout path. The same
    memory read with the input-channel stride set to 1 is unambiguously NHWC.
    """
    _, in_channels, kh, kw = weight.shape
    if in_channels == 1:
        return weight.contiguous().as_strided(weight.shape, (kh * kw, 1, kw, 1))
    return weight.contiguous(memory_format=torch.channels_last)


def set_stem_once(model: nn.Module, enable: bool = True) -> nn.Module:
    """Run a SpikingResformer's analog stem once per static image instead of T times.

    With direct encoding the stem (conv, BN, max-pool: no neuron) sees the same image at every
    step, so its T outputs are equal: computing one and repeating it gives the same
    activations, gradients and BN running statistics (the unbiased running-variance
    correction uses the repeated count, as before). Sequence inputs ``[T, B, ...]`` (event
    data) still run every step. Analysis hooks on the stem then see one step, not T.
    """
    if not hasattr(model, "stem_once"):
        raise ValueError(f"{type(model).__name__} has no static analog stem to run once "
                         "(only SpikingResformer has; Spikformer's stem holds neurons)")
    model.stem_once = enable
    return model


@dataclasses.dataclass(frozen=True)
class PerfOptions:
    """Speed and memory options; defaults are the fastest ones that need no compiler."""

    neuron_kernel: str = "fused"  # see NEURON_KERNELS
    channels_last: bool = False  # NHWC convolutions (model weights; activations follow)
    compile: bool = False  # torch.compile the whole model (in place: state-dict keys unchanged)
    stem_once: bool = False  # run the stem once per static image, not T times (SpikingResformer)
    checkpoint: bool = False  # recompute each block in backward (srlib.memory), less memory
    tune_allocator: bool = True  # tune_cpu_allocator() when the model is on the CPU

    def __post_init__(self):
        if self.neuron_kernel not in NEURON_KERNELS:
            raise ValueError(f"neuron_kernel must be one of {NEURON_KERNELS}, "
                             f"got {self.neuron_kernel!r}")


def apply_perf_options(model: nn.Module, options: PerfOptions = PerfOptions()) -> nn.Module:
    """Apply ``options`` to ``model`` (in place) and return it.

    Call after moving the model to its device and before building the optimizer's state.
    """
    set_neuron_kernel(model, options.neuron_kernel)
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if options.tune_allocator and on_cpu:
        tune_cpu_allocator(True)
    if options.channels_last:
        to_channels_last(model)
    if options.stem_once:
        set_stem_once(model)
    if options.checkpoint:
        from srlib.memory import checkpoint_blocks
        checkpoint_blocks(model)
    if options.compile:
        model.compile()
    return model


__all__ = ["NEURON_KERNELS", "PerfOptions", "apply_perf_options", "set_neuron_kernel",
           "set_stem_once", "to_channels_last", "tune_cpu_allocator"]
