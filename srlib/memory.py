"""Recomputing blocks in backward (activation checkpointing): less training memory.

Training memory of a spiking network grows with T x batch x activations: every layer keeps its
input (and each neuron its membrane potentials) for backward. :func:`recompute_blocks` wraps
each block of a SpikingResformer (DSSA, GWFFN, downsampling) in SpikingJelly 2.0's
``memopt.checkpoint_module``: the block keeps only its input, and backward runs the block's
forward again. SpikingJelly's wrapper recomputes with explicit neuron states and commits
neuron states, batch-norm running statistics and DSSA firing-rate averages exactly once, so
outputs, gradients and buffers are those of the plain model (``tests/test_perf_options.py``),
and the state-dict keys do not change. The price is one more forward pass per step.

Optionally the saved block inputs that are spikes can be packed to bits
(``compress_spikes=True``): SpikingResformer's block inputs are real-valued, so this only helps
other models and is off by default.
"""

import contextlib

import torch
from spikingjelly.activation_based import memopt
from torch import nn

from srlib.attention import ATTENTIONS
from srlib.models.spikingresformer import GWFFN, DownsampleLayer

_BLOCKS = (GWFFN, DownsampleLayer, *ATTENTIONS.values())


def is_recomputed(module: nn.Module) -> bool:
    """True for a block wrapped by :func:`recompute_blocks`."""
    return hasattr(module, "_checkpoint_wrapped_module")


def recompute_blocks(model: nn.Module, compress_spikes: bool = False) -> int:
    """Wrap every DSSA, GWFFN and downsampling block of ``model`` in place.

    Args:
        model: a SpikingResformer (or any model built from these blocks).
        compress_spikes: bit-pack block inputs for backward (valid only if they are spikes).

    Returns:
        The number of blocks wrapped (already wrapped blocks are left alone).
    """
    compressor = memopt.BitSpikeCompressor() if compress_spikes else None
    count = 0
    for parent in list(model.modules()):
        if is_recomputed(parent):
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, _BLOCKS):
                setattr(parent, name, memopt.checkpoint_module(child, compressor=compressor))
                count += 1
    return count


def unwrap_recomputed_blocks(model: nn.Module) -> int:
    """Undo :func:`recompute_blocks` in place; returns the number of blocks unwrapped."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_recomputed(child):
                setattr(parent, name, child._checkpoint_wrapped_module)
                count += 1
    return count


def _storage_key(tensor: torch.Tensor):
    storage = tensor.untyped_storage()
    return storage._cdata, storage.nbytes()


def saved_activation_bytes(model: nn.Module, run) -> int:
    """Bytes kept alive for backward while ``run()`` (a forward, usually with backward) runs.

    Counts every tensor autograd saves (each storage once) plus the inputs of recomputed
    blocks, which is what such a block keeps instead. Parameters are left out. This is the
    activation part of training memory; it scales with batch x T.

    Args:
        model: the model ``run`` calls (recomputed blocks are found in it).
        run: a callable running the forward (and backward) pass.
    """
    parameters = {_storage_key(p)[0] for p in model.parameters()}
    storages = {}

    def pack(tensor):
        with contextlib.suppress(RuntimeError, NotImplementedError):  # tensors without storage
            key, nbytes = _storage_key(tensor)
            if key not in parameters:
                storages[key] = nbytes
        return tensor

    def keep_inputs(module, args):
        for arg in args:
            if isinstance(arg, torch.Tensor):
                pack(arg)

    handles = [m.register_forward_pre_hook(keep_inputs) for m in model.modules()
               if is_recomputed(m)]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run()
    finally:
        for handle in handles:
            handle.remove()
    return sum(storages.values())
