"""Helpers shared by the models of the zoo (kept out of ``srlib.models`` itself, whose
``__init__`` imports the model modules)."""

import torch


def check_input(x: torch.Tensor, in_channels: int, size_divisor: int) -> None:
    """``ValueError`` unless ``x`` is ``[B, C, H, W]`` or ``[T, B, C, H, W]`` with ``C`` equal
    to ``in_channels`` and H and W multiples of ``size_divisor``."""
    expected = (f"[B, {in_channels}, H, W] or [T, B, {in_channels}, H, W] "
                f"with H and W multiples of {size_divisor}")
    if x.dim() not in (4, 5):
        raise ValueError(f"expected input {expected}, got shape {tuple(x.shape)}")
    C, H, W = x.shape[-3:]
    if C != in_channels or H % size_divisor or W % size_divisor:
        raise ValueError(f"expected input {expected}, got shape {tuple(x.shape)}")


def to_time_major(x: torch.Tensor, in_channels: int, size_divisor: int, T: int) -> torch.Tensor:
    """Check a model's input (:func:`check_input`) and return it as ``[T, B, C, H, W]``: a
    static batch ``[B, C, H, W]`` is presented at every one of the ``T`` steps (direct
    encoding; a view with a zero time stride, so every step is the very same tensor), a
    time-major sequence ``[T, B, C, H, W]`` is returned as is.
    """
    check_input(x, in_channels, size_divisor)
    if x.dim() == 4:
        x = x.expand(T, *x.shape)  # [T, B, C, H, W], no copy
    return x
