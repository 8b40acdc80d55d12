"""Attention mechanisms behind one interface: DSSA (this paper), Spikformer's SSA, softmax MHA.

DSSA, Dual Spike Self-Attention (Shi et al., CVPR 2024, Sec. 3.2, Eqs. 6-10): both matrix
products take a spike operand, so they need only additions, and the two scaling factors

    c1 = 1 / sqrt(r_x * d_h)        c2 = 1 / sqrt(r_attn * N_kv)

keep the variance of each product near 1 (a sum of m Bernoulli(r)-masked unit-variance terms
has variance ~ r m). ``r_x`` and ``r_attn`` are per-head firing rates, tracked as running
averages during training and frozen in evaluation.

SSA, Spiking Self-Attention (Zhou et al., ICLR 2023, Spikformer): spike Q, K, V,
``SN(Q K^T V * 0.125)`` with no softmax; its cost grows with N^2 (N tokens). VanillaAttention is
real-valued softmax multi-head attention, the ANN reference.

Every mechanism takes and returns ``[T, B, C, H, W]`` (the real-valued residual stream, residual
included) and is built as ``Mechanism(dim, num_heads, patch_size=..., neuron=...)``;
``forward(x, return_attention=True)`` also returns the attention map used in that call, time-
and head-major: DSSA ``[T, B, h, N_kv, N]`` (rows: the N_kv patch tokens, columns: the N = HW
pixels); SSA and VanillaAttention ``[T, B, h, N, N]`` (rows: queries, columns: keys).
"""

import math

import torch
from torch import nn

from srlib.layers import BN, SpikingMatmul, conv1x1, patch_conv
from srlib.neurons import create_neuron

FIRING_RATE_MOMENTUM = 0.999  # running-average momentum of r_x and r_attn (authors' code)
SSA_SCALE = 0.125  # Spikformer's fixed scale of Q K^T V (1/sqrt(64), whatever d_h is)
SSA_ATTN_THRESHOLD = 0.5  # threshold of the neuron after Q K^T V (Spikformer's attn_lif)


class Matmul(nn.Module):
    """Real-valued ``left @ right`` as a module, so that MAC-counting hooks see the product.

    The dense counterpart of :class:`srlib.layers.SpikingMatmul`: neither operand is binary,
    so every product costs ``rows(left) * cols(left) * cols(right)`` multiply-accumulates.
    """

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right


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
    with the current batch's rate instead of dividing by zero; (2) a head whose rate is exactly
    zero (no spike at all) is scaled by 1, so it gives 0 and finite gradients rather than
    0 * inf = NaN.
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
        # a head with no spike at all (rate exactly 0) is scaled by 1 instead of 1/0
        rate = torch.where(rate > 0, rate, 1.0 / fan_in)
        return (1.0 / torch.sqrt(rate * fan_in)).to(spikes.dtype)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        T, B, C, H, W = x.shape
        h, d = self.num_heads, C // self.num_heads
        s = self.activation_in(x)  # [T, B, C, H, W] spikes
        y = self.norm(self.W(s))  # [T, B, 2C, H/p, W/p]
        y = y.flatten(3).unflatten(2, (h, 2 * d))  # [T, B, h, 2d, N_kv]
        y1, y2 = y.split(d, dim=3)  # [T, B, h, d, N_kv] each (backward: a cat, no zero-fill)
        N_kv = y.shape[-1]
        s = s.flatten(3).unflatten(2, (h, d))  # [T, B, h, d, HW]
        scale1 = self._scale(self.firing_rate_x, s, d)  # [1, 1, h, 1, 1]
        attn = self.matmul1(y1.transpose(-1, -2), s) * scale1  # [T, B, h, N_kv, HW]
        attn = self.activation_attn(attn)  # spikes
        scale2 = self._scale(self.firing_rate_attn, attn, N_kv)
        out = self.matmul2(y2, attn) * scale2  # [T, B, h, d, HW]
        out = self.activation_out(self.merge_heads(out, x))  # [T, B, C, H, W]
        out = self.norm_proj(self.Wproj(out)) + x  # [T, B, C, H, W]
        return (out, attn) if return_attention else out

    @staticmethod
    def merge_heads(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Heads ``[T, B, h, d, HW]`` back into the stream's shape ``[T, B, h*d, H, W]`` of
        ``x``: head i fills channels i*d..(i+1)*d-1."""
        return out.reshape(x.shape)  # [T, B, C, H, W]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, patch_size={self.patch_size}"


class SSA(nn.Module):
    """Spikformer's Spiking Self-Attention (Zhou et al., ICLR 2023) with a residual connection.

    ``s = SN(x)`` (optional, see ``input_neuron``); per head (``d_h = C / h`` channels)

        Q, K, V = SN(BN(Conv1x1(s)))  each, spikes      [N, d_h]
        attn    = Q K^T * 0.125                          [N, N], integer counts * 0.125
        out     = SN_0.5(attn V)                         [N, d_h], threshold 0.5

    and ``result = BN(Conv1x1(out)) + x`` (Spikformer: ``SN(BN(Conv1x1 + bias)) + x``). There is
    no softmax and no rate-based scaling.

    Spike operands (for SOP accounting, :class:`srlib.layers.SpikingMatmul`): ``matmul1`` is
    ``Q @ K^T`` with spikes on both sides; ``matmul2`` is ``attn @ V`` with spikes on the right
    (``attn`` holds coincidence counts in 0..d_h times 0.125, not spikes). We take the product
    order ``(Q K^T) V`` of the paper's equation and the public CIFAR code, so the N x N map
    exists and can be returned; the public ImageNet code computes ``Q (K^T V)`` (``K^T V`` is a
    d_h x d_h integer count matrix, not spikes), which is the same number: every entry is a
    small integer times 2^-3, exact in float32 while N * d_h < 2^24. The cost is quadratic in N.

    The head layout is Spikformer's: head i owns channels ``[i d_h, (i+1) d_h)`` of Q, K, V and
    of the output.

    Args:
        dim: channels C.
        num_heads: number of heads h; ``dim`` must be divisible by it.
        patch_size: accepted for the common interface and ignored: SSA attends over all N = HW
            tokens (no pooling of keys or values).
        neuron: neuron kind for every spiking neuron (the one after ``attn V`` gets threshold
            0.5 whatever the kind).
        input_neuron: put a spiking neuron on the input. Needed inside SpikingResformer, whose
            residual stream is real-valued (DSSA has the same neuron); Spikformer itself passes
            ``False``: its stream is already a sum of spikes (SEW-style residual).
        output_neuron: end the branch with a spiking neuron after the projection's BN
            (Spikformer's ``proj_lif``); SpikingResformer's branches end in BN.
        qkv_bias: biases on the Q, K, V projections (the public CIFAR code's ``nn.Linear``).
        proj_bias: bias on the output projection (both public Spikformer codes have one).
        surrogate: the neurons' surrogate gradient (:data:`srlib.neurons.SURROGATES`);
            Spikformer's own is ``"sigmoid"``.
    """

    def __init__(self, dim: int, num_heads: int, patch_size: int = 1, neuron: str = "lif", *,
                 input_neuron: bool = True, output_neuron: bool = False, qkv_bias: bool = False,
                 proj_bias: bool = False, surrogate: str = "atan"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.patch_size = dim, num_heads, patch_size
        self.scale = SSA_SCALE
        self.activation_in = create_neuron(neuron, surrogate) if input_neuron else nn.Identity()
        self.q_conv, self.q_bn = conv1x1(dim, dim, qkv_bias), BN(dim)
        self.q_lif = create_neuron(neuron, surrogate)
        self.k_conv, self.k_bn = conv1x1(dim, dim, qkv_bias), BN(dim)
        self.k_lif = create_neuron(neuron, surrogate)
        self.v_conv, self.v_bn = conv1x1(dim, dim, qkv_bias), BN(dim)
        self.v_lif = create_neuron(neuron, surrogate)
        self.matmul1 = SpikingMatmul("both")  # Q @ K^T
        self.matmul2 = SpikingMatmul("right")  # attn @ V
        self.attn_lif = create_neuron(neuron, surrogate)
        self.attn_lif.v_threshold = SSA_ATTN_THRESHOLD
        self.proj_conv = conv1x1(dim, dim, proj_bias)
        self.proj_bn = BN(dim)
        self.proj_lif = create_neuron(neuron, surrogate) if output_neuron else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` -> ``[T, B, h, N, d_h]`` (head i = channels i*d_h..)."""
        T, B, C, H, W = x.shape
        x = x.flatten(3).unflatten(2, (self.num_heads, C // self.num_heads))  # [T, B, h, d, N]
        return x.transpose(-1, -2)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        T, B, C, H, W = x.shape
        s = self.activation_in(x)  # [T, B, C, H, W]: spikes, or Spikformer's spike-count stream
        q = self._heads(self.q_lif(self.q_bn(self.q_conv(s))))  # [T, B, h, N, d] spikes
        k = self._heads(self.k_lif(self.k_bn(self.k_conv(s))))  # [T, B, h, N, d] spikes
        v = self._heads(self.v_lif(self.v_bn(self.v_conv(s))))  # [T, B, h, N, d] spikes
        attn = self.matmul1(q, k.transpose(-1, -2)) * self.scale  # [T, B, h, N, N]
        out = self.matmul2(attn, v)  # [T, B, h, N, d]
        out = out.transpose(-1, -2).reshape(T, B, C, H, W)  # heads back into channels
        out = self.attn_lif(out)  # spikes
        out = self.proj_lif(self.proj_bn(self.proj_conv(out))) + x  # [T, B, C, H, W]
        return (out, attn) if return_attention else out

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale}, "
                f"patch_size={self.patch_size} (ignored)")


class VanillaAttention(nn.Module):
    """Real-valued multi-head softmax self-attention with a residual: the ANN reference.

    Each time step is attended independently over its N = HW tokens (pre-norm, as ViT, with BN
    in place of LayerNorm like the rest of the network; the output projection ends in BN like
    DSSA's):

        Q, K, V = split(Conv1x1(BN(x)))                       per head [d_h, N]
        attn    = softmax(Q^T K / sqrt(d_h))  over keys       [N, N] (rows: queries)
        out     = V attn^T                                    [d_h, N]
        result  = BN(Conv1x1(out)) + x

    The ``qkv`` conv's 3C output channels are ``[Q | K | V]``, each head-major. No neurons: the
    cost is dense multiply-accumulates (the products are :class:`Matmul` modules), quadratic in
    N.

    Args:
        dim: channels C.
        num_heads: number of heads h; ``dim`` must be divisible by it.
        patch_size: accepted for the common interface and ignored (no key/value pooling: this
            is plain global attention, the reference that DSSA's patches approximate).
        neuron: accepted for the common interface and ignored (no spiking neurons).
    """

    def __init__(self, dim: int, num_heads: int, patch_size: int = 1, neuron: str = "lif"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.patch_size = dim, num_heads, patch_size
        self.norm = BN(dim)
        self.qkv = conv1x1(dim, 3 * dim)
        self.matmul1 = Matmul()  # Q^T K
        self.matmul2 = Matmul()  # V attn^T
        self.proj = conv1x1(dim, dim)
        self.norm_proj = BN(dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        T, B, C, H, W = x.shape
        h, d = self.num_heads, C // self.num_heads
        qkv = self.qkv(self.norm(x)).flatten(3)  # [T, B, 3C, N]
        q, k, v = qkv.unflatten(2, (3, h, d)).unbind(2)  # [T, B, h, d, N] each
        scores = self.matmul1(q.transpose(-1, -2), k) / math.sqrt(d)  # [T, B, h, N, N]
        attn = scores.softmax(dim=-1)  # each query's row sums to 1
        out = self.matmul2(v, attn.transpose(-1, -2))  # [T, B, h, d, N]
        out = self.norm_proj(self.proj(out.reshape(T, B, C, H, W))) + x  # [T, B, C, H, W]
        return (out, attn) if return_attention else out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, patch_size={self.patch_size} (ignored)"


ATTENTIONS = {"dssa": DSSA, "ssa": SSA, "vanilla": VanillaAttention}


def create_attention(kind: str, dim: int, num_heads: int, patch_size: int = 1,
                     neuron: str = "lif") -> nn.Module:
    """Build an attention block by name (see ``ATTENTIONS``)."""
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; expected one of {sorted(ATTENTIONS)}")
    return ATTENTIONS[kind](dim, num_heads, patch_size=patch_size, neuron=neuron)
