"""Attention mechanisms behind one interface: DSSA (this paper).

DSSA, Dual Spike Self-Attention (Shi et al., CVPR 2024, Sec. 3.2, Eqs. 6-10): both matrix
products take a spike operand, so they need only additions, and the two scaling factors

    c1 = 1 / sqrt(r_x * d_h)        c2 = 1 / sqrt(r_attn * N_kv)

keep the variance of each product near 1 (a sum of m Bernoulli(r)-masked unit-variance terms
has variance ~ r m). ``r_x`` and ``r_attn`` are per-head firing rates, tracked as running
averages during training and frozen in evaluation.

Every mechanism takes and returns ``[T, B, C, H, W]`` (the real-valued residual stream) and is
built as ``Mechanism(dim, num_heads, ...)``; ``forward(x, return_attention=True)`` also returns
the attention map ``[T, B, h, N_kv, N]`` used in that call.
"""

import torch
from torch import nn

from srlib.layers import BN, SpikingMatmul, conv1x1, patch_conv
from srlib.neurons import create_neuron

FIRING_RATE_MOMENTUM = 0.999  # running-average momentum of r_x and r_attn (authors' code)


class DSSA(nn.Module):
    """Multi-head Dual Spike Self-Attention with a residual connection.

    ``s = SN(x)``; ``y = BN(Conv_pxp(s))`` gives 2C channels, head by head ``[y1 | y2]``
    (``d_h`` channels each) over ``N_kv = (H/p)(W/p)`` tokens; then per head

        attn = SN(c1 * y1^T s)      [N_kv, HW]
        out  = SN(c2 * y2 attn)     [d_h, HW]

    and ``result = BN(Conv1x1(out)) + x``. The token count ``N_kv`` is taken from the input,
    so one module serves any input size the patch size divides.

    Running firing rates (buffers ``firing_rate_x``, ``firing_rate_attn``, shape
    ``[1, 1, h, 1, 1]``): in training, each forward first folds the batch rate (mean over T, B,
    the head's channels and tokens) into the average with momentum 0.999, then scales with the
    average; an all-zero average (a fresh model) is set to the first batch's rate. In eval the
    averages are frozen. Two deliberate departures from the authors' code, both only where it
    produces non-finite values: (1) a never-trained model in eval (averages still zero) scales
    with the current batch's rate instead of dividing by zero; (2) a rate of exactly zero is
    clamped to the smallest positive float, so a silent head gives 0 rather than 0 * inf = NaN.
    The authors' Python-side "initialised" flags are not used: the state dict alone decides.

    Args:
        dim: channels C of the residual stream.
        num_heads: number of heads h; ``dim`` must be divisible by it.
        patch_size: p, kernel and stride of the token-embedding convolution.
        neuron: neuron kind for the three spiking neurons (``"lif"`` or ``"plif"``).
    """

    def __init__(self, dim: int, num_heads: int, patch_size: int = 1, neuron: str = "lif"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.patch_size = dim, num_heads, patch_size
        self.register_buffer("firing_rate_x", torch.zeros(1, 1, num_heads, 1, 1))
        self.register_buffer("firing_rate_attn", torch.zeros(1, 1, num_heads, 1, 1))
        self.activation_in = create_neuron(neuron)
        self.W = patch_conv(dim, 2 * dim, patch_size)
        self.norm = BN(2 * dim)
        self.matmul1 = SpikingMatmul("right")
        self.activation_attn = create_neuron(neuron)
        self.matmul2 = SpikingMatmul("right")
        self.activation_out = create_neuron(neuron)
        self.Wproj = conv1x1(dim, dim)
        self.norm_proj = BN(dim)

    def _scale(self, running_rate: torch.Tensor, spikes: torch.Tensor, fan_in: int):
        """Update the running rate (training only) and return 1 / sqrt(rate * fan_in).

        Written without data-dependent Python branches, so ``torch.compile`` sees one graph.
        """
        batch_rate = spikes.detach().mean((0, 1, 3, 4), keepdim=True).to(running_rate.dtype)
        # a fresh (all-zero) average starts at the current batch's rate
        rate = torch.where(running_rate.any(), running_rate, batch_rate)
        if self.training:
            rate = rate * FIRING_RATE_MOMENTUM + batch_rate * (1 - FIRING_RATE_MOMENTUM)
            running_rate.copy_(rate)
        rate = rate.clamp_min(torch.finfo(rate.dtype).tiny)
        return (1.0 / torch.sqrt(rate * fan_in)).to(spikes.dtype)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        T, B, C, H, W = x.shape
        h, d = self.num_heads, C // self.num_heads
        s = self.activation_in(x)  # [T, B, C, H, W] spikes
        y = self.norm(self.W(s))  # [T, B, 2C, H/p, W/p]
        y = y.flatten(3).unflatten(2, (h, 2 * d))  # [T, B, h, 2d, N_kv]
        y1, y2 = y[:, :, :, :d], y[:, :, :, d:]  # [T, B, h, d, N_kv] each
        N_kv = y.shape[-1]
        s = s.flatten(3).unflatten(2, (h, d))  # [T, B, h, d, HW]
        scale1 = self._scale(self.firing_rate_x, s, d)  # [1, 1, h, 1, 1]
        attn = self.matmul1(y1.transpose(-1, -2), s) * scale1  # [T, B, h, N_kv, HW]
        attn = self.activation_attn(attn)  # spikes
        scale2 = self._scale(self.firing_rate_attn, attn, N_kv)
        out = self.matmul2(y2, attn) * scale2  # [T, B, h, d, HW]
        out = self.activation_out(out.reshape(T, B, C, H, W))  # heads back into channels
        out = self.norm_proj(self.Wproj(out)) + x  # [T, B, C, H, W]
        return (out, attn) if return_attention else out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, patch_size={self.patch_size}"


ATTENTIONS = {"dssa": DSSA}


def create_attention(kind: str, dim: int, num_heads: int, patch_size: int = 1,
                     neuron: str = "lif") -> nn.Module:
    """Build an attention block by name (see ``ATTENTIONS``)."""
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; expected one of {sorted(ATTENTIONS)}")
    return ATTENTIONS[kind](dim, num_heads, patch_size=patch_size, neuron=neuron)
