"""Speed and memory options: one entry point, :func:`apply_perf_options`, and named presets.

The plain model (what :func:`srlib.create_model` builds and what a student reads) runs by
default. Options swap in faster modules that compute the same numbers (spikes bitwise, gradients
and running statistics to float rounding; ``tests/test_perf_options.py`` checks every one
against the plain model) and keep the state dict, so checkpoints move freely between a fast
and a plain model::

    model = srlib.create_model("spikingresformer_ti")
    model = apply_perf_options(model, PerfOptions.best_for("cpu"))

Options (fields of :class:`PerfOptions`):

- ``neuron_kernel``: the LIF implementation. ``"spikingjelly"`` (the plain model's
  ``LIFNode``: fused kernels on CUDA, step-by-step autograd ops on the CPU); ``"fused"``
  (:class:`srlib.fused.FusedLIFNode`, one autograd node per layer on the CPU);
  ``"fused-compiled"`` (the same compiled by ``torch.compile``; needs a C++ compiler, falls
  back to ``"fused"`` with a warning); ``"reference"`` (:class:`srlib.neurons.ReferenceLIF`,
  the slow plain-torch teaching neuron).
- ``channels_last``: NHWC convolution weights and the NHWC-keeping variants of
  :mod:`srlib.swaps`.
- ``stem_once``: SpikingResformer's analog stem runs once per static image
  (:class:`srlib.swaps.StemOnce`).
- ``recompute``: every block recomputes its forward during backward (:mod:`srlib.memory`): less
  memory, one more forward per step.
- ``compile``: ``"blocks"`` compiles each block (stem, attention, GWFFN, downsampling) with
  ``torch.compile`` (regional compilation: blocks of the same type and shapes share one
  compiled graph, and compiled graphs are cached on disk by inductor, so later runs start in
  seconds); ``"model"`` compiles the whole model as one graph.

Process-wide settings are never changed by these options; :func:`tune_cpu_allocator` is a
separate call. Measured effects are in ``benchmarks/README.md``.
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import shutil
import sys
import warnings

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from srlib.fused import FusedLIFNode
from srlib.neurons import ReferenceLIF
from srlib.swaps import CHANNELS_LAST_VARIANTS, StemOnce, channels_last_weight, swap_class

NEURON_KERNELS = ("spikingjelly", "fused", "fused-compiled", "reference")
COMPILE_MODES = ("none", "blocks", "model")
PRESETS = ("plain", "best")  # names accepted wherever options are given (configs, the CLI)

# glibc mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_TUNED_TRIM_THRESHOLD = 2**31 - 1  # keep freed memory in the process (bytes)


@dataclasses.dataclass(frozen=True)
class PerfOptions:
    """Speed and memory options; the defaults are the plain model (nothing swapped)."""

    neuron_kernel: str = "spikingjelly"  # see NEURON_KERNELS
    channels_last: bool = False  # NHWC convolutions, the stream kept NHWC (srlib.swaps)
    stem_once: bool = False  # the analog stem once per static image (SpikingResformer only)
    recompute: bool = False  # recompute each block in backward (srlib.memory): less memory
    compile: str = "none"  # see COMPILE_MODES

    def __post_init__(self):
        if self.neuron_kernel not in NEURON_KERNELS:
            raise ValueError(f"neuron_kernel must be one of {NEURON_KERNELS}, "
                             f"got {self.neuron_kernel!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        for name in ("channels_last", "stem_once", "recompute"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def best_for(cls, device: str | torch.device, model: nn.Module | None = None) -> "PerfOptions":
        """The fastest options that compute the same numbers on ``device`` (for ``model``).

        CPU (measured on this repository's 2-core machines, ``benchmarks/results/``): the
        compiled fused LIF, channels-last and the stem once. CUDA (not yet measured here):
        SpikingJelly's own CUDA neurons and the stem once, which only removes repeated work.
        The stem runs once only where there is an analog stem (SpikingResformer; Spikformer's
        stem holds neurons): pass ``model`` to leave it out for other models.
        """
        stem_once = model is None or _has_static_stem(model)
        if torch.device(device).type == "cpu":
            kernel = "fused-compiled" if cpp_compiler() is not None else "fused"
            return cls(neuron_kernel=kernel, channels_last=True, stem_once=stem_once)
        return cls(stem_once=stem_once)

    @classmethod
    def from_spec(cls, spec, device: str | torch.device = "cpu",
                  model: nn.Module | None = None) -> "PerfOptions":
        """Options from a preset name (``"plain"``, ``"best"``), a mapping of fields, or
        :class:`PerfOptions` itself; ``"best"`` means :meth:`best_for` ``device`` and
        ``model``."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            if spec not in PRESETS:
                raise ValueError(f"perf options must be a preset {PRESETS} or a mapping of "
                                 f"{[f.name for f in dataclasses.fields(cls)]}, got {spec!r}")
            return cls.best_for(device, model) if spec == "best" else cls()
        if isinstance(spec, dict):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(spec) - fields)
            if unknown:
                raise ValueError(f"unknown perf option(s) {unknown}; expected some of "
                                 f"{sorted(fields)}")
            return cls(**spec)
        raise ValueError(f"perf options must be a preset {PRESETS}, a mapping or PerfOptions, "
                         f"got {type(spec).__name__}")


def _has_static_stem(model: nn.Module) -> bool:
    """Whether ``model`` has an analog stem that :func:`run_stem_once` can run once."""
    from srlib.models import SpikingResformer

    return isinstance(model, SpikingResformer)


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use, or None if there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler  # torch's own lookup

        return shutil.which(get_cpp_compiler())
    except Exception:  # a private API: any failure means "not usable"
        return None


def _lif_settings(module: nn.Module) -> dict | None:
    """tau, threshold, reset, alpha, decay_input of a hard-reset ATan LIF; None otherwise."""
    if isinstance(module, ReferenceLIF):
        if module.v_reset is None or not module.detach_reset:
            return None
        return dict(tau=module.tau, v_threshold=module.v_threshold, v_reset=module.v_reset,
                    alpha=module.alpha, decay_input=True)
    if type(module) in (neuron.LIFNode, FusedLIFNode):
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

    PLIF, IF and neurons with another surrogate (Spikformer's) are left as they are. Neurons
    hold no parameters or buffers, so the state dict is unchanged. ``"fused-compiled"``
    without a C++ compiler warns and takes ``"fused"``.

    Args:
        model: a built model (modified in place).
        kernel: one of ``NEURON_KERNELS``.

    Returns:
        The number of neurons replaced.
    """
    if kernel not in NEURON_KERNELS:
        raise ValueError(f"neuron kernel must be one of {NEURON_KERNELS}, got {kernel!r}")
    if kernel == "fused-compiled" and cpp_compiler() is None:
        warnings.warn("neuron_kernel 'fused-compiled' needs a C++ compiler (g++), none found: "
                      "using 'fused'")
        kernel = "fused"
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            settings = _lif_settings(child)
            if settings is not None:
                setattr(parent, name, _build_neuron(kernel, settings))
                count += 1
    return count


def use_channels_last(model: nn.Module) -> nn.Module:
    """Store every 2-D convolution weight channels-last and swap in the NHWC-keeping variants
    of batch norm, the spiking matmul and DSSA (:mod:`srlib.swaps`), in place.

    A conv with a channels-last weight returns a channels-last output, and batch norm and the
    neurons keep that layout, so activations follow without converting the input.
    (``model.to(memory_format=...)`` cannot be used: DSSA's firing-rate buffers are 5-D.)
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = channels_last_weight(module.weight.data)
        variant = CHANNELS_LAST_VARIANTS.get(type(module))
        if variant is not None:
            swap_class(module, variant)
    return model


def run_stem_once(model: nn.Module) -> nn.Module:
    """Make a SpikingResformer's analog stem run once per static image (:class:`StemOnce`).

    Analysis hooks on the stem then see one step instead of T; :func:`as_defined` undoes it
    for as long as counting needs.
    """
    stem = getattr(model, "prologue", None)
    if not _has_static_stem(model) or type(stem) not in (nn.Sequential, StemOnce):
        raise ValueError(f"{type(model).__name__} has no static analog stem to run once "
                         "(only SpikingResformer has; Spikformer's stem holds neurons)")
    swap_class(stem, StemOnce)
    return model


@contextlib.contextmanager
def as_defined(model: nn.Module):
    """Inside the block, ``model`` computes every step its definition computes (a stem running
    once runs T times again), so operation counts do not depend on speed options."""
    stems = [module for module in model.modules() if type(module) is StemOnce]
    for stem in stems:
        swap_class(stem, nn.Sequential)
    try:
        yield model
    finally:
        for stem in stems:
            swap_class(stem, StemOnce)


def _block_types() -> tuple[type, ...]:
    from srlib.attention import ATTENTIONS
    from srlib.models.spikformer import SPS, SpikformerBlock
    from srlib.models.spikingresformer import GWFFN, DownsampleLayer

    return (*ATTENTIONS.values(), GWFFN, DownsampleLayer, SPS, SpikformerBlock)


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` every block of ``model`` in place (regional compilation).

    Each attention, GWFFN, downsampling and Spikformer block, and SpikingResformer's stem, is
    compiled on its own: dynamo traces a block type once per input shape and reuses the graph
    for every block of that type and shape, so compiling costs a few block graphs instead of
    one graph of the whole network, and inductor's on-disk caches (``TORCHINDUCTOR_CACHE_DIR``)
    make later runs start almost at once. State-dict keys are unchanged (``Module.compile``).

    Returns:
        The number of modules compiled.
    """
    from srlib.models import SpikingResformer

    blocks = [module for module in model.modules() if isinstance(module, _block_types())]
    if isinstance(model, SpikingResformer):
        blocks.append(model.prologue)
    for block in blocks:
        block.compile(dynamic=False)  # one graph per shape: no symbolic sizes
    return len(blocks)


def apply_perf_options(model: nn.Module, options: PerfOptions | str | dict = "plain",
                       device: str | torch.device | None = None) -> nn.Module:
    """Apply ``options`` to ``model`` in place and return it: the one way in.

    Call after moving the model to its device and before building the optimizer.

    Args:
        model: a built model.
        options: :class:`PerfOptions`, a preset name (``"plain"``, ``"best"``) or a mapping.
        device: the device ``"best"`` is chosen for (default: where the model's parameters
            are).
    """
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
    options = PerfOptions.from_spec(options, device, model)
    set_neuron_kernel(model, options.neuron_kernel)
    if options.channels_last:
        use_channels_last(model)
    if options.stem_once:
        run_stem_once(model)
    if options.recompute:
        from srlib.memory import recompute_blocks

        recompute_blocks(model)
    if options.compile == "blocks":
        compile_blocks(model)
    elif options.compile == "model":
        model.compile()
    return model


def tune_cpu_allocator(enable: bool = True) -> bool:
    """Keep freed memory inside the process instead of returning it to the OS (glibc only).

    A process-wide setting, so it is never part of :class:`PerfOptions`: call it yourself (the
    training config's ``tune_allocator`` does). glibc serves every allocation above 32 MiB
    with a fresh ``mmap``, so each large activation of a CPU training step is page-faulted in
    and zero-filled again (on this repository's 2-core machine that made a 51 MB elementwise
    product 2.5x slower). With ``mmap`` off and a high trim threshold, freed blocks are reused;
    the resident set then stays at its peak.

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


__all__ = ["COMPILE_MODES", "NEURON_KERNELS", "PRESETS", "PerfOptions", "apply_perf_options",
           "as_defined", "compile_blocks", "cpp_compiler", "run_stem_once", "set_neuron_kernel",
           "tune_cpu_allocator", "use_channels_last"]
