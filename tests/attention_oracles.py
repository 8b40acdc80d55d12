"""Naive references for SSA, vanilla attention and Spikformer, used as test oracles.

Written from the equations (Zhou et al., ICLR 2023, the SSA equations; Vaswani et al. 2017, scaled dot-product attention)
with explicit loops over time steps, samples, heads, channels and tokens; they read only the
weights of the module under test. Slow, so only for tiny sizes (run them in float64).
"""

import torch
import torch.nn.functional as F

TAU = 2.0


def lif_loop(x, v_threshold=1.0, tau=TAU):
    """H = V + (X - V)/tau; S = [H >= v_threshold]; V = H (1 - S). x: [T, ...]. Forward only."""
    v = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau
        s = (h >= v_threshold).to(x.dtype)
        v = h * (1 - s)
        spikes.append(s)
    return torch.stack(spikes)


def bn_train(x, bn):
    """Training-mode BatchNorm of [T, B, C, H, W]: statistics over T, B, H, W per channel."""
    mean = x.mean(dim=(0, 1, 3, 4), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 1, 3, 4), keepdim=True)
    y = (x - mean) / torch.sqrt(var + bn.eps)
    return y * bn.weight.view(1, 1, -1, 1, 1) + bn.bias.view(1, 1, -1, 1, 1)


def conv_seq(x, conv, **kwargs):
    """A conv applied step by step to [T, B, C, H, W] (weight and optional bias of ``conv``)."""
    return torch.stack([F.conv2d(x[t], conv.weight, conv.bias, **kwargs)
                        for t in range(x.shape[0])])


def ssa_naive(module, x):
    """Spikformer SSA from its equations; returns (result, attention map [T, B, h, N, N])."""
    T, B, C, H, W = x.shape
    h, N = module.num_heads, H * W
    d = C // h
    s = x if type(module.activation_in).__name__ == "Identity" else lif_loop(x)
    q, k, v = (lif_loop(bn_train(conv_seq(s, conv), bn.bn)).reshape(T, B, C, N)
               for conv, bn in ((module.q_conv, module.q_bn), (module.k_conv, module.k_bn),
                                (module.v_conv, module.v_bn)))
    attn = torch.zeros(T, B, h, N, N, dtype=x.dtype)
    pre = torch.zeros(T, B, C, N, dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            for i in range(h):
                qi, ki, vi = (z[t, b, i * d:(i + 1) * d] for z in (q, k, v))  # [d, N] each
                a = sum(qi[c][:, None] * ki[c][None, :] for c in range(d)) * 0.125  # [N, N]
                attn[t, b, i] = a
                pre[t, b, i * d:(i + 1) * d] = sum(vi[:, j][:, None] * a[:, j][None, :]
                                                   for j in range(N))  # [d, N]
    out = lif_loop(pre.reshape(T, B, C, H, W), v_threshold=0.5)
    out = bn_train(conv_seq(out, module.proj_conv), module.proj_bn.bn)
    if type(module.proj_lif).__name__ != "Identity":
        out = lif_loop(out)
    return out + x, attn


def vanilla_naive(module, x):
    """Softmax multi-head attention, one step and head at a time; returns (result, map)."""
    T, B, C, H, W = x.shape
    h, N = module.num_heads, H * W
    d = C // h
    qkv = conv_seq(bn_train(x, module.norm.bn), module.qkv).reshape(T, B, 3 * C, N)
    attn = torch.zeros(T, B, h, N, N, dtype=x.dtype)
    out = torch.zeros(T, B, C, N, dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            for i in range(h):
                q = qkv[t, b, i * d:(i + 1) * d]  # [d, N]
                k = qkv[t, b, C + i * d:C + (i + 1) * d]
                v = qkv[t, b, 2 * C + i * d:2 * C + (i + 1) * d]
                scores = sum(q[c][:, None] * k[c][None, :] for c in range(d)) / d**0.5
                weights = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
                a = weights / weights.sum(dim=1, keepdim=True)  # [N queries, N keys]
                attn[t, b, i] = a
                out[t, b, i * d:(i + 1) * d] = sum(v[:, j][:, None] * a[:, j][None, :]
                                                   for j in range(N))
    out = bn_train(conv_seq(out.reshape(T, B, C, H, W), module.proj), module.norm_proj.bn)
    return out + x, attn


def spikformer_naive(model, x):
    """Spikformer from its description: SPS, blocks (x + SSA(x), x + MLP(x)), mean, Linear.

    x: [T, B, C, H, W]; returns per-step logits [T, B, K].
    """
    # ImageNet: a 3x3/2 max-pool after each of the four convs; CIFAR: after the last two only
    pools = (True,) * 4 if model.config.stem == "imagenet" else (False, False, True, True)
    for stage, pool in zip(model.patch_embed.stages, pools):
        x = lif_loop(bn_train(conv_seq(x, stage[0], padding=1), stage[1].bn))
        if pool:
            x = torch.stack([F.max_pool2d(x[t], 3, 2, 1) for t in range(x.shape[0])])
    rpe = model.patch_embed.rpe
    x = x + lif_loop(bn_train(conv_seq(x, rpe[0], padding=1), rpe[1].bn))
    for block in model.blocks:
        x, _ = ssa_naive(block.attn, x)
        mlp = block.mlp
        hidden = lif_loop(bn_train(conv_seq(x, mlp.fc1_conv), mlp.fc1_bn.bn))
        x = x + lif_loop(bn_train(conv_seq(hidden, mlp.fc2_conv), mlp.fc2_bn.bn))
    pooled = x.mean(dim=(-1, -2))  # [T, B, D]
    return pooled @ model.head.weight.T + model.head.bias  # [T, B, K]
