"""Helpers shared by the models of the zoo (kept out of ``srlib.models`` itself, whose
``__init__`` imports the model modules)."""

import torch


def to_time_major(x: torch.Tensor, in_channels: int, size_divisor: int, T: int) -> torch.Tensor:
    """Check a model's input and return it as ``[T, B, C, H, W]``.

    ``x`` is a static batch ``[B, C, H, W]`` (repeated ``T`` times: direct encoding) or a
    time-major sequence ``[T, B, C, H, W]`` (returned as is); ``C`` must be ``in_channels`` and
    H and W multiples of ``size_divisor``, else ``ValueError``.
    """
    expected = (f"[B, {in_channels}, H, W] or [T, B, {in_channels}, H, W] "
                f"with H and W multiples of {size_divisor}")
    if x.dim() not in (4, 5):
        raise ValueError(f"expected input {expected}, got shape {tuple(x.shape)}")
    C, H, W = x.shape[-3:]
    if C != in_channels or H % size_divisor or W % size_divisor:
        raise ValueError(f"expected input {expected}, got shape {tuple(x.shape)}")
    if x.dim() == 4:
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)  # [T, B, C, H, W]
    return x
