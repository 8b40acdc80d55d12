"""Dense cost model of the attention mechanisms: multiply-accumulates (MACs) per layer.

Counts are per time step and per image, for one attention block on ``N`` tokens of ``C``
channels with ``h`` heads (``d_h = C / h``); they are the MACs a dense (non-spiking) processor
would spend, i.e. what the layer shapes cost before any spike sparsity. Only convolutions,
linear layers and matrix products are counted; batch norm (foldable into the conv), softmax,
neurons and residual additions are not. Keys are the names of the submodules in
:mod:`srlib.attention`, so each entry can be checked against a hook on that module.

    DSSA     (N_kv = N / p^2)  W: 2 C^2 N   matmul1: C N N_kv   matmul2: C N N_kv   Wproj: C^2 N
    SSA                        q/k/v_conv: C^2 N each   matmul1: C N^2   matmul2: C N^2
                               proj_conv: C^2 N
    vanilla                    qkv: 3 C^2 N   matmul1: C N^2   matmul2: C N^2   proj: C^2 N

So DSSA grows linearly in N when the patch grows with the image (N_kv = N / p^2 fixed, as in
SpikingResformer's design, where N_kv = 3136/4^2 = 784/2^2 = 196/1^2 = 196 at every ImageNet
stage at 224 px) and quadratically when p is fixed; SSA and vanilla attention always grow as
N^2 (they ignore p). Spiking hardware replaces most of these MACs by additions (SOPs, see
:mod:`srlib.analysis`), but the dense count is what memory and a GPU pay.
"""

KINDS = ("dssa", "ssa", "vanilla")


def _check(kind: str, num_tokens: int, dim: int, num_heads: int, patch_size: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown attention {kind!r}; expected one of {KINDS}")
    if min(num_tokens, dim, num_heads, patch_size) < 1:
        raise ValueError(f"num_tokens, dim, num_heads and patch_size must be >= 1, got "
                         f"{num_tokens}, {dim}, {num_heads}, {patch_size}")
    if dim % num_heads:
        raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
    if kind == "dssa" and num_tokens % patch_size**2:
        raise ValueError(f"DSSA needs num_tokens ({num_tokens}) divisible by patch_size^2 "
                         f"({patch_size**2}): H and W must be multiples of the patch size")


def attention_macs(kind: str, num_tokens: int, dim: int, num_heads: int,
                   patch_size: int = 1) -> dict[str, int]:
    """Dense MACs of each layer of one attention block, per time step and per image.

    Args:
        kind: ``"dssa"``, ``"ssa"`` or ``"vanilla"`` (the names of ``srlib.attention.ATTENTIONS``).
        num_tokens: N = H * W, the tokens (pixels) of the block's input.
        dim: channels C.
        num_heads: heads h. The total does not depend on h (the heads split C), but it is
            checked like the modules check it.
        patch_size: DSSA's p (N_kv = N / p^2 key/value tokens); ignored by SSA and vanilla.

    Returns:
        ``{submodule name: MACs}``, e.g. ``{"W": ..., "matmul1": ..., "matmul2": ...,
        "Wproj": ...}`` for DSSA.
    """
    _check(kind, num_tokens, dim, num_heads, patch_size)
    N, C = num_tokens, dim
    if kind == "dssa":
        N_kv = N // patch_size**2
        # W: p x p conv, C -> 2C, at N_kv positions: 2C * C p^2 * N_kv = 2 C^2 N
        # matmul1, per head: [N_kv, d_h] @ [d_h, N]; matmul2: [d_h, N_kv] @ [N_kv, N]
        return {"W": 2 * C * C * N, "matmul1": C * N_kv * N, "matmul2": C * N_kv * N,
                "Wproj": C * C * N}
    if kind == "ssa":
        # matmul1, per head: [N, d_h] @ [d_h, N]; matmul2: [N, N] @ [N, d_h]
        return {"q_conv": C * C * N, "k_conv": C * C * N, "v_conv": C * C * N,
                "matmul1": C * N * N, "matmul2": C * N * N, "proj_conv": C * C * N}
    # vanilla, per head: matmul1 [N, d_h] @ [d_h, N]; matmul2 [d_h, N] @ [N, N]
    return {"qkv": 3 * C * C * N, "matmul1": C * N * N, "matmul2": C * N * N,
            "proj": C * C * N}


def total_attention_macs(kind: str, num_tokens: int, dim: int, num_heads: int,
                         patch_size: int = 1) -> int:
    """Sum of :func:`attention_macs` over the block's layers (per time step, per image)."""
    return sum(attention_macs(kind, num_tokens, dim, num_heads, patch_size).values())


def attention_mac_table(token_counts, dim: int, num_heads: int, patch_size: int = 1,
                        kinds=KINDS, fixed_kv_tokens: int | None = None) -> list[dict]:
    """One row per (kind, N): the total MACs, ready for ``pandas.DataFrame`` and a plot.

    Args:
        token_counts: the N values (e.g. ``(img_size // stride) ** 2`` for several images).
        dim, num_heads, patch_size: as in :func:`attention_macs`.
        kinds: which mechanisms.
        fixed_kv_tokens: if given, DSSA's patch size is chosen per N so that
            N / p^2 equals it (SpikingResformer's design); ``patch_size`` is then ignored.

    Returns:
        rows ``{"kind", "num_tokens", "patch_size", "macs"}``.
    """
    rows = []
    for kind in kinds:
        for N in token_counts:
            p = patch_size
            if kind == "dssa" and fixed_kv_tokens is not None:
                p = round((N / fixed_kv_tokens) ** 0.5)
                if p * p * fixed_kv_tokens != N:
                    raise ValueError(f"N = {N} is not {fixed_kv_tokens} times a square")
            rows.append({"kind": kind, "num_tokens": N, "patch_size": p,
                         "macs": total_attention_macs(kind, N, dim, num_heads, p)})
    return rows
