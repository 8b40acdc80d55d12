"""Naive reference implementations used as test oracles.

Written independently of srlib from the paper's equations (Shi et al., CVPR 2024: LIF, DSSA, GWFFN) and
the authors' public code (github.com/xyshi2000/SpikingResformer, ``models/``), with explicit
loops over time steps, heads and tokens. Slow, so only for tiny sizes.
"""

import math

import torch
import torch.nn.functional as F

TAU, V_TH, ALPHA, MOMENTUM = 2.0, 1.0, 2.0, 0.999


class Heaviside(torch.autograd.Function):
    """Heaviside step forward; backward multiplies by ``derivative(x)``, a surrogate's slope."""

    @staticmethod
    def forward(ctx, x, derivative):
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x), None


def atan_derivative(x, alpha=ALPHA):
    """d/dx of arctan(pi/2 alpha x)/pi + 1/2: SpikingResformer's ATan surrogate."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def lif_loop(x, tau=TAU, v_threshold=V_TH, derivative=atan_derivative):
    """H = V + (X - V)/tau; S = [H >= v_threshold]; V = H (1 - S) with the reset detached;
    ``derivative`` is the surrogate's slope. x: [T, ...]."""
    v = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau
        s = Heaviside.apply(h - v_threshold, derivative)
        v = h * (1 - s.detach())
        spikes.append(s)
    return torch.stack(spikes)


def bn_naive(x, bn, training):
    """BatchNorm over [T*B, H, W] per channel; updates bn's running stats like torch does."""
    T, B, C, H, W = x.shape
    flat = x.reshape(T * B, C, H * W)
    if training:
        mean = flat.mean(dim=(0, 2))
        var = ((flat - mean[None, :, None]) ** 2).mean(dim=(0, 2))
        n = T * B * H * W
        with torch.no_grad():
            bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean)
            bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var * n / (n - 1))
            bn.num_batches_tracked.add_(1)
    else:
        mean, var = bn.running_mean, bn.running_var
    y = (flat - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
    y = y * bn.weight[None, :, None] + bn.bias[None, :, None]
    return y.reshape(T, B, C, H, W)


def conv_seq(x, conv, **kwargs):
    T, B = x.shape[:2]
    y = F.conv2d(x.flatten(0, 1), conv.weight, **kwargs)
    return y.reshape(T, B, *y.shape[1:])


def update_rate(buffer, spikes_per_head, training):
    """Running per-head rate: init from the first batch when all zero, then EMA (train only)."""
    batch = torch.stack([s.mean() for s in spikes_per_head])
    if training:
        with torch.no_grad():
            if torch.all(buffer == 0):
                buffer.copy_(batch.view_as(buffer))
            buffer.copy_(buffer * MOMENTUM + batch.view_as(buffer) * (1 - MOMENTUM))
    return buffer.flatten()


def dssa_naive(module, x, training):
    """DSSA written with explicit per-step, per-sample, per-head loops."""
    T, B, C, H, W = x.shape
    h = module.num_heads
    d, p = C // h, module.patch_size
    s = lif_loop(x)
    y = bn_naive(conv_seq(s, module.W, stride=p), module.norm.bn, training)
    Hp, Wp = y.shape[-2:]
    N_kv, N = Hp * Wp, H * W
    heads_s = [s[:, :, i * d:(i + 1) * d] for i in range(h)]
    rate_x = update_rate(module.firing_rate_x, heads_s, training)
    pre_attn = torch.zeros(T, B, h, N_kv, N, dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            for i in range(h):
                y1 = y[t, b, 2 * i * d:2 * i * d + d].reshape(d, N_kv)
                si = s[t, b, i * d:(i + 1) * d].reshape(d, N)
                acc = sum(y1[c][:, None] * si[c][None, :] for c in range(d))
                pre_attn[t, b, i] = acc / math.sqrt(rate_x[i] * d)
    attn = lif_loop(pre_attn)
    rate_attn = update_rate(module.firing_rate_attn, [attn[:, :, i] for i in range(h)], training)
    pre_out = torch.zeros(T, B, C, N, dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            for i in range(h):
                y2 = y[t, b, 2 * i * d + d:2 * (i + 1) * d].reshape(d, N_kv)
                acc = sum(y2[:, k][:, None] * attn[t, b, i, k][None, :] for k in range(N_kv))
                pre_out[t, b, i * d:(i + 1) * d] = acc / math.sqrt(rate_attn[i] * N_kv)
    out = lif_loop(pre_out.reshape(T, B, C, H, W))
    out = bn_naive(conv_seq(out, module.Wproj), module.norm_proj.bn, training)
    return out + x, attn


def gwffn_naive(module, x, training):
    up_conv, up_bn = module.up[1], module.up[2].bn
    u = bn_naive(conv_seq(lif_loop(x), up_conv), up_bn, training)
    mid = module.conv[0]
    v = bn_naive(conv_seq(lif_loop(u), mid[1], padding=1, groups=mid[1].groups), mid[2].bn,
                 training) + u
    return bn_naive(conv_seq(lif_loop(v), module.down[1]), module.down[2].bn, training) + x


def model_naive(model, x, training):
    """SpikingResformer forward from the pieces above; x is [T, B, C, H, W]."""
    stem_conv, stem_bn = model.prologue[0], model.prologue[1].bn
    if model.config.stem == "imagenet":
        y = bn_naive(conv_seq(x, stem_conv, stride=2, padding=3), stem_bn, training)
        T, B = y.shape[:2]
        y = F.max_pool2d(y.flatten(0, 1), 3, 2, 1)
        y = y.reshape(T, B, *y.shape[1:])
    else:
        y = bn_naive(conv_seq(x, stem_conv, padding=1), stem_bn, training)
    for stage in model.layers:
        for block in stage:
            kind = type(block).__name__
            if kind == "DownsampleLayer":
                y = bn_naive(conv_seq(lif_loop(y), block.conv, stride=2, padding=1),
                             block.norm.bn, training)
            elif kind == "DSSA":
                y, _ = dssa_naive(block, y, training)
            else:
                y = gwffn_naive(block, y, training)
    pooled = y.mean(dim=(-1, -2))  # [T, B, C]
    return pooled @ model.classifier.weight.T  # [T, B, K]
