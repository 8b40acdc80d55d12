"""A fused multi-step LIF for the CPU: one autograd node per layer instead of ~20 per time step.

SpikingJelly 2.0 runs its LIF on the CPU as plain torch operations recorded by autograd, step by
step (``spikingjelly/_ops/lif/reference.py``; its fused kernels are CUDA/Triton only). Each step
allocates and saves several full-size temporaries and the spikes are stacked at the end, so on
a CPU the neurons cost more than the convolutions. :class:`FusedLIFFunction` computes the same
recurrence (the equations in :mod:`srlib.neurons`) and saves only the charged potential ``H``
for backward, where the surrogate gradient and the reset mask are recomputed:

    dL/dH[t] = dL/dS[t] * sg(H[t] - V_th) + dL/dV[t] * (1 - S[t])     (reset detached)
    dL/dX[t] = dL/dH[t] / tau                                          (decay_input)
    dL/dV[t-1] = dL/dH[t] - dL/dH[t] / tau

with the ATan surrogate sg(u) = alpha / 2 / (1 + (pi / 2 * alpha * u)^2). Both passes run in
one of two kernels:

- ``"eager"``: in-place torch operations into preallocated ``[T, ...]`` buffers (no compiler
  needed). Spikes and gradients are bitwise those of SpikingJelly (same operation order).
- ``"compiled"``: the same loops compiled once by ``torch.compile`` (inductor emits one
  vectorised C++ loop per pass; ~10x faster than eager here, needs a C++ compiler, first call
  ~10-60 s, cached on disk afterwards). Results agree with ``"eager"`` to rounding.

:class:`FusedLIFNode` is a SpikingJelly ``LIFNode`` (same constructor, state and ``reset``) that
takes this path for float32/float64 CPU input and defers to SpikingJelly everywhere else (CUDA,
where SpikingJelly has fused kernels; half precision; ``store_v_seq``; other surrogates).
"""

import math

import torch
from spikingjelly.activation_based import neuron, surrogate

FUSED_DTYPES = (torch.float32, torch.float64)
KERNELS = ("eager", "compiled")


def lif_forward_eager(x_seq, v, tau, v_threshold, v_reset, decay_input, keep_h=True):
    """Forward pass with in-place ops: returns ``(spikes [T, ...], h_seq [T, ...], v_last)``
    (``h_seq`` is ``None`` unless ``keep_h``)."""
    T = x_seq.shape[0]
    spikes = torch.empty_like(x_seq)  # [T, ...]
    h_seq = torch.empty_like(spikes) if keep_h else None  # [T, ...] charged potential
    scratch = None if keep_h else torch.empty_like(x_seq[0])  # [...] reused every step
    for t in range(T):
        h = h_seq[t] if keep_h else scratch
        if decay_input:  # the operation order of SpikingJelly: v + (x - (v - v_reset)) / tau
            torch.sub(x_seq[t], v - v_reset if v_reset != 0.0 else v, out=h)
            h.div_(tau).add_(v)
        else:  # v - (v - v_reset) / tau + x
            torch.sub(v, v_reset, out=h)
            h.div_(tau).neg_().add_(v).add_(x_seq[t])
        fired = h >= v_threshold
        spikes[t].copy_(fired)
        v = h.masked_fill(fired, v_reset)  # hard reset: S v_reset + (1 - S) H
    return spikes, h_seq, v


def lif_backward_eager(grad_spikes, grad_v_last, h_seq, tau, v_threshold, alpha, decay_input):
    """Backward pass with in-place ops: returns ``(grad_x [T, ...], grad_v_init)``."""
    T = h_seq.shape[0]
    grad_x = torch.empty_like(h_seq)  # [T, ...]
    carry = grad_v_last  # dL/dV[t], flowing back from step t + 1
    slope = math.pi / 2 * alpha
    for t in range(T - 1, -1, -1):
        h = h_seq[t]
        grad_h = torch.sub(h, v_threshold)
        grad_h.mul_(slope).square_().add_(1.0).reciprocal_().mul_(alpha / 2)  # sg(H - V_th)
        grad_h.mul_(grad_spikes[t])
        if carry is not None:
            grad_h.add_(carry.masked_fill(h >= v_threshold, 0.0))  # + (1 - S) dL/dV
        if decay_input:
            torch.div(grad_h, tau, out=grad_x[t])
            carry = grad_h.sub_(grad_x[t])
        else:
            grad_x[t].copy_(grad_h)
            carry = grad_h.sub_(grad_h / tau)
    return grad_x, carry


def lif_forward_functional(x_seq, v, tau, v_threshold, v_reset, decay_input, keep_h=True):
    """Forward pass without in-place ops (what ``torch.compile`` fuses); as the eager one."""
    spikes, charged = [], []
    for x in x_seq:
        if decay_input:
            h = v + (x - (v - v_reset)) / tau
        else:
            h = v - (v - v_reset) / tau + x
        fired = h >= v_threshold
        spikes.append(fired.to(x.dtype))
        charged.append(h)
        v = torch.where(fired, v_reset, h)
    h_seq = torch.stack(charged) if keep_h else None  # [T, ...]
    return torch.stack(spikes), h_seq, v  # [T, ...], [T, ...], [...]


def lif_backward_functional(grad_spikes, grad_v_last, h_seq, tau, v_threshold, alpha,
                            decay_input):
    """Backward pass without in-place ops; as the eager one."""
    carry = grad_v_last
    slope = math.pi / 2 * alpha
    grads = []
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h = h_seq[t]
        z = (h - v_threshold) * slope
        grad_h = grad_spikes[t] * ((alpha / 2) / (1 + z * z))
        if carry is not None:
            grad_h = grad_h + torch.where(h >= v_threshold, 0.0, carry)
        grad_x = grad_h / tau if decay_input else grad_h
        grads.append(grad_x)
        carry = grad_h - grad_h / tau
    return torch.stack(grads[::-1]), carry  # [T, ...], [...]


_compiled = {}


def _kernels(kernel: str):
    """(forward, backward) for ``kernel``; compiled ones are built on first use."""
    if kernel == "eager":
        return lif_forward_eager, lif_backward_eager
    if kernel != "compiled":
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if torch.compiler.is_compiling():  # inside an outer torch.compile: let it trace and fuse
        return lif_forward_functional, lif_backward_functional
    if not _compiled:
        _compiled["forward"] = torch.compile(lif_forward_functional, dynamic=True)
        _compiled["backward"] = torch.compile(lif_backward_functional, dynamic=True)
    return _compiled["forward"], _compiled["backward"]


def _time_major_order(x: torch.Tensor) -> tuple[int, ...]:
    """Dims of ``x`` [T, ...] from outermost to innermost in memory (time first), so that
    ``x.permute(order)`` is contiguous for any dense layout (channels-last included)."""
    return (0, *sorted(range(1, x.dim()), key=lambda dim: -x.stride(dim)))


def _flatten(x: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``[T, ...]`` in any layout -> ``[T, N]`` (a view when dense in ``order``, else a copy).

    Detached: a compiled kernel would otherwise guard on (and recompile for) the sizes and
    strides of the tensor it is a view of; gradients are the autograd Function's business.
    """
    return x.detach().permute(order).reshape(x.shape[0], -1).detach()


def _unflatten(flat: torch.Tensor, order: tuple[int, ...], shape) -> torch.Tensor:
    """Inverse of :func:`_flatten`: ``[T, N]`` (or ``[N]`` with ``order`` of the step) back to
    ``shape``, with the memory layout the input had."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return flat.view([shape[dim] for dim in order]).permute(inverse)


def lif_forward(x_seq, v_init, tau, v_threshold, v_reset, decay_input, kernel, keep_h=True):
    """Run the ``kernel`` forward on ``x_seq [T, ...]`` in any dense layout.

    Returns ``(spikes [T, ...], v_last [...], h_seq [T, N] or None, order)``; the kernels see
    ``[T, N]``, so every layout (channels-last too) is one contiguous view and a compiled
    kernel compiles one graph.
    """
    forward, _ = _kernels(kernel)
    order = _time_major_order(x_seq)
    v_flat = v_init if isinstance(v_init, float) else _flatten(v_init[None], order)[0]  # [N]
    spikes, h_seq, v_last = forward(_flatten(x_seq, order), v_flat, tau, v_threshold, v_reset,
                                    decay_input, keep_h=keep_h)  # [T, N], [T, N], [N]
    step_order = tuple(dim - 1 for dim in order[1:])
    return (_unflatten(spikes, order, x_seq.shape),
            _unflatten(v_last, step_order, x_seq.shape[1:]), h_seq, order)


class FusedLIFFunction(torch.autograd.Function):
    """Multi-step hard-reset LIF with ATan surrogate and detached reset, ``x_seq: [T, ...]``.

    ``apply(x_seq, v_init, tau, v_threshold, v_reset, alpha, decay_input, kernel)`` returns
    ``(spikes [T, ...], v_last [...])``; ``v_init`` is a tensor ``[...]`` or a float (a freshly
    reset state, which saves filling a tensor with it).
    """

    @staticmethod
    def forward(ctx, x_seq, v_init, tau, v_threshold, v_reset, alpha, decay_input, kernel):
        spikes, v_last, h_seq, order = lif_forward(x_seq, v_init, tau, v_threshold, v_reset,
                                                   decay_input, kernel)
        ctx.save_for_backward(h_seq)  # [T, N]
        ctx.constants = (tau, v_threshold, alpha, decay_input, kernel, order, x_seq.shape)
        return spikes, v_last

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_last):
        (h_seq,) = ctx.saved_tensors  # [T, N]
        tau, v_threshold, alpha, decay_input, kernel, order, shape = ctx.constants
        step_order = tuple(dim - 1 for dim in order[1:])
        grad_spikes = (torch.zeros_like(h_seq) if grad_spikes is None
                       else _flatten(grad_spikes, order))  # [T, N] (a copy if laid out apart)
        if grad_v_last is not None:
            grad_v_last = _flatten(grad_v_last[None], order)[0]  # [N]
        _, backward = _kernels(kernel)
        grad_x, grad_v_init = backward(grad_spikes, grad_v_last, h_seq, tau, v_threshold, alpha,
                                       decay_input)
        if ctx.needs_input_grad[1] and grad_v_init is not None:
            grad_v_init = _unflatten(grad_v_init, step_order, shape[1:])
        else:
            grad_v_init = None
        return _unflatten(grad_x, order, shape), grad_v_init, None, None, None, None, None, None


def fused_lif_supported(node: neuron.LIFNode, x_seq: torch.Tensor) -> bool:
    """Whether ``node`` on ``x_seq`` can take the fused path (else SpikingJelly's is used)."""
    sg = node.surrogate_function
    return (x_seq.device.type == "cpu" and x_seq.dtype in FUSED_DTYPES
            and not node.store_v_seq and node.v_reset is not None and node.detach_reset
            and node._neuron_precision is None and type(sg) is surrogate.ATan and sg.spiking
            and isinstance(sg.alpha, (int, float)) and x_seq.dim() >= 2 and x_seq.numel() > 0)


class FusedLIFNode(neuron.LIFNode):
    """SpikingJelly's ``LIFNode`` with :class:`FusedLIFFunction` on the CPU.

    Args:
        kernel: ``"eager"`` (default) or ``"compiled"``, see the module docstring.
        *args: as ``spikingjelly.activation_based.neuron.LIFNode``.
        **kwargs: as ``spikingjelly.activation_based.neuron.LIFNode``.
    """

    def __init__(self, *args, kernel: str = "eager", **kwargs):
        super().__init__(*args, **kwargs)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if args or kwargs or not fused_lif_supported(self, x_seq):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        v = self._memories["v"]
        # a float is a freshly reset state: skip filling a tensor with it (decay_input only,
        # where v - v_reset = 0 keeps the arithmetic exactly SpikingJelly's)
        if not (isinstance(v, float) and self.decay_input):
            (v,) = self.materialize_states((x_seq,), (v,), "m")
        v_needs_grad = isinstance(v, torch.Tensor) and v.requires_grad
        if torch.is_grad_enabled() and (x_seq.requires_grad or v_needs_grad):
            spikes, v = FusedLIFFunction.apply(x_seq, v, self.tau, self.v_threshold,
                                               self.v_reset, float(self.surrogate_function.alpha),
                                               self.decay_input, self.kernel)
        else:  # no graph: nothing to keep (the compiled kernel keeps H: no second compile)
            spikes, v, _, _ = lif_forward(x_seq, v, self.tau, self.v_threshold, self.v_reset,
                                          self.decay_input, self.kernel,
                                          keep_h=self.kernel == "compiled")
        self._memories["v"] = v
        self.v_seq = None
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kernel={self.kernel!r}"
