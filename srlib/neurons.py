"""Spiking neurons: LIF, PLIF and IF on SpikingJelly 2.0, plus a from-scratch LIF for teaching.

All neurons are multi-step: they take a time-major tensor ``[T, ...]`` and return spikes of the
same shape. SpikingJelly picks the kernel for the device (plain torch on CPU, fused kernels on
CUDA), so the same model code runs on both.

The discrete LIF dynamics used throughout the paper (Shi et al., CVPR 2024, Sec. 3.1) are

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau      (charge, input decays)
    S[t] = Heaviside(H[t] - V_threshold)                    (fire)
    V[t] = H[t] (1 - S[t]) + V_reset S[t]                   (hard reset, detached)

with tau = 2, V_threshold = 1, V_reset = 0 and the ATan surrogate gradient
dS/dH = alpha / 2 / (1 + (pi / 2 * alpha * (H - V_threshold))^2), alpha = 2.

Each model family keeps its paper's surrogate (``surrogate=`` of every factory below):
SpikingResformer ATan (the default), Spikformer (Zhou et al., ICLR 2023) the Sigmoid surrogate,
the default of the SpikingJelly ``MultiStepLIFNode`` its public code builds every neuron with,

    dS/dH = alpha * sigmoid(alpha u) * (1 - sigmoid(alpha u)),  u = H - V_threshold, alpha = 4.

The surrogate changes only the backward pass: spikes are the same.
"""

import math

import torch
from spikingjelly.activation_based import base, neuron
from spikingjelly.activation_based.surrogate import ATan, Sigmoid
from torch import nn

TAU = 2.0  # membrane time constant, paper Sec. 3.1
V_THRESHOLD = 1.0
V_RESET = 0.0
ATAN_ALPHA = 2.0  # SpikingJelly's default for surrogate.ATan
SIGMOID_ALPHA = 4.0  # SpikingJelly's default for surrogate.Sigmoid (0.0.0.0.12 and 2.0 alike)

SURROGATES = {  # name -> surrogate-gradient function, as SpikingJelly defines it
    "atan": lambda: ATan(alpha=ATAN_ALPHA),  # SpikingResformer (Shi et al., CVPR 2024)
    "sigmoid": lambda: Sigmoid(alpha=SIGMOID_ALPHA),  # Spikformer (Zhou et al., ICLR 2023)
}


def create_surrogate(name: str) -> nn.Module:
    """Build a surrogate-gradient function by name: ``"atan"`` or ``"sigmoid"``."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}")
    return SURROGATES[name]()


def lif(tau: float = TAU, v_threshold: float = V_THRESHOLD, surrogate: str = "atan") -> nn.Module:
    """Multi-step LIF neuron with the paper's settings (hard reset to 0, detached reset, ATan
    surrogate unless another is asked for).

    Args:
        tau: membrane time constant.
        v_threshold: firing threshold.
        surrogate: surrogate gradient, a name from ``SURROGATES``.
    """
    return neuron.LIFNode(tau=tau, decay_input=True, v_threshold=v_threshold, v_reset=V_RESET,
                          surrogate_function=create_surrogate(surrogate), detach_reset=True,
                          step_mode="m")


def plif(init_tau: float = TAU, surrogate: str = "atan") -> nn.Module:
    """Multi-step parametric LIF (learnable tau, stored as ``w`` with tau = 1 + exp(-w)).

    Used only by the DVS128 Gesture model.
    """
    return neuron.ParametricLIFNode(init_tau=init_tau, decay_input=True, v_threshold=V_THRESHOLD,
                                    v_reset=V_RESET,
                                    surrogate_function=create_surrogate(surrogate),
                                    detach_reset=True, step_mode="m")


def integrate_and_fire(surrogate: str = "atan") -> nn.Module:
    """Multi-step IF neuron: H[t] = V[t-1] + X[t], then fire and hard-reset as LIF."""
    return neuron.IFNode(v_threshold=V_THRESHOLD, v_reset=V_RESET,
                         surrogate_function=create_surrogate(surrogate), detach_reset=True,
                         step_mode="m")


NEURONS = {"lif": lif, "plif": plif, "if": integrate_and_fire}


def create_neuron(kind: str, surrogate: str = "atan") -> nn.Module:
    """Build a neuron by name: ``"lif"``, ``"plif"`` or ``"if"``, with the surrogate gradient
    ``surrogate`` (``"atan"``, SpikingResformer's, or ``"sigmoid"``, Spikformer's)."""
    if kind not in NEURONS:
        raise ValueError(f"unknown neuron {kind!r}; expected one of {sorted(NEURONS)}")
    return NEURONS[kind](surrogate=surrogate)


def set_surrogate(module: nn.Module, surrogate: str) -> int:
    """Give every SpikingJelly neuron inside ``module`` the surrogate ``surrogate``, in place.

    For neurons built by code that does not take a surrogate (see
    :class:`srlib.models.spikformer.SpikformerBlock`). Returns the number of neurons changed.
    """
    create_surrogate(surrogate)  # an unknown name fails before anything changes
    if any(isinstance(node, ReferenceLIF) for node in module.modules()):
        raise TypeError("ReferenceLIF implements the ATan surrogate only; nothing was changed")
    nodes = [node for node in module.modules() if isinstance(node, neuron.BaseNode)]
    for node in nodes:
        node.surrogate_function = create_surrogate(surrogate)
    return len(nodes)


def is_spiking_neuron(module: nn.Module) -> bool:
    """True for SpikingJelly neurons and the teaching :class:`ReferenceLIF`."""
    return isinstance(module, (neuron.BaseNode, ReferenceLIF))


def reset_states(model: nn.Module) -> None:
    """Reset the state of every stateful module (neuron membranes) inside ``model``.

    Walks the module tree on every call (no cache), so it stays right after modules are swapped.
    """
    for module in model.modules():
        if isinstance(module, (base.MemoryModule, ReferenceLIF)):
            module.reset()


class _ATanSpike(torch.autograd.Function):
    """Heaviside forward, ATan surrogate backward (the derivative of arctan(pi/2 alpha x)/pi)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad = alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)
        return grad_output * grad, None


class ReferenceLIF(nn.Module):
    """The LIF neuron written out in plain torch, one time step at a time, for teaching.

    Same equations as :func:`lif` (see the module docstring); ``forward`` takes ``[T, ...]``
    and returns the spikes ``[T, ...]``; the membrane after each step is kept in ``v_seq``
    (the potential after reset, as SpikingJelly's ``v_seq``).

    Args:
        tau: membrane time constant.
        v_threshold: firing threshold.
        v_reset: reset potential; ``None`` gives a soft reset (subtract the threshold).
        alpha: ATan surrogate sharpness.
        detach_reset: cut the reset out of the autograd graph.
    """

    def __init__(self, tau: float = TAU, v_threshold: float = V_THRESHOLD,
                 v_reset: float | None = V_RESET, alpha: float = ATAN_ALPHA,
                 detach_reset: bool = True):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.alpha, self.detach_reset = alpha, detach_reset
        self.v_seq = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        v_rest = 0.0 if self.v_reset is None else self.v_reset
        v = torch.full_like(x[0], v_rest)
        spikes, v_seq = [], []
        for t in range(T):
            h = v + (x[t] - (v - v_rest)) / self.tau  # charge
            s = _ATanSpike.apply(h - self.v_threshold, self.alpha)  # fire
            s_reset = s.detach() if self.detach_reset else s
            if self.v_reset is None:
                v = h - s_reset * self.v_threshold  # soft reset
            else:
                v = h * (1 - s_reset) + self.v_reset * s_reset  # hard reset
            spikes.append(s)
            v_seq.append(v)
        self.v_seq = torch.stack(v_seq)  # [T, ...]
        return torch.stack(spikes)  # [T, ...]

    def reset(self) -> None:
        self.v_seq = None
