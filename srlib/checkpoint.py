"""Saving and loading checkpoints: srlib's own files and those released by the authors.

Both hold the model's state dict under the key ``model`` (the authors' files also hold
``optimizer``, ``epoch``, ``max_acc1`` and ``lr_scheduler``). Spikformer's released files, written
by timm's training script, hold it under ``state_dict`` with the public code's names; they are
recognised and mapped (:mod:`srlib.models.spikformer_keys`). Loading checks every key and shape
first and changes nothing unless all fit. Saving writes a temporary file and renames it, so an
interrupted save never leaves a half-written checkpoint.
"""

import argparse
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from srlib.models.spikformer_keys import from_spikformer_layout, is_spikformer_layout

# prefixes added by wrappers: DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# the only class a checkpoint may hold beyond torch's weights-only set: timm's training script
# (Spikformer's) stores its parsed command line, an argparse.Namespace, under "args"
_ALLOWED_CLASSES = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def _write_atomically(path: str | os.PathLike, write) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path`` (flushed to disk), then
    rename it to ``path``: readers see the old file or the whole new one, and the temporary file
    never outlives a failure. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    return _write_atomically(path, lambda file: torch.save(obj, file))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it into place."""
    return _write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _json_value(value):
    """pandas' nullable integers (``pd.NA``) and numpy scalars in JSON."""
    return value.item() if hasattr(value, "item") else None


def atomic_write_json(path: str | os.PathLike, report) -> Path:
    """``report`` as indented JSON (numpy scalars as numbers, ``pd.NA`` as null), written
    through :func:`atomic_write_text`."""
    return atomic_write_text(path, json.dumps(report, indent=1, default=_json_value))


def _strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        stripped[key] = value
    return stripped


def extract_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint object (``model`` entry or a bare dict)."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"expected a checkpoint dict or a state dict, got "
                              f"{type(checkpoint).__name__}")
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise CheckpointError("expected a state dict (names -> tensors) or a checkpoint holding "
                              f"one under 'model'; got a dict with keys {sorted(checkpoint)[:8]}")
    return _strip_wrapper_prefixes(checkpoint)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file onto the CPU, with a clear error for a missing or broken file.

    Weights-only unpickling: tensors, containers, numbers and strings, plus ``argparse.Namespace``
    (timm's ``args`` entry); any other object in the file is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_ALLOWED_CLASSES):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"could not read checkpoint {path}: {error}") from error


def load_checkpoint(model: nn.Module, path_or_state_dict, ignore: tuple[str, ...] = ()) -> dict:
    """Load weights into ``model`` after checking that every key and shape fits.

    Args:
        model: the model to fill (e.g. from :func:`srlib.create_model`).
        path_or_state_dict: a file path, a checkpoint dict (weights under ``model`` or, in
            timm's files, ``state_dict``) or a state dict. Prefixes added by DDP (``module.``)
            or ``torch.compile`` are removed; Spikformer's public names are mapped to srlib's.
        ignore: key prefixes to skip on both sides, e.g. ``("classifier.",)`` to transfer a
            backbone to a new number of classes.

    Returns:
        The checkpoint object (so callers can read ``epoch`` or ``config`` from it).

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys (under the file's
            names); the model is then left exactly as it was.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        checkpoint = read_checkpoint(path_or_state_dict)
    else:
        checkpoint = path_or_state_dict
    source = extract_state_dict(checkpoint)
    target = model.state_dict()
    names, layout = {}, ""  # model key -> the file's name for it, where they differ
    if is_spikformer_layout(source):
        source, names = from_spikformer_layout(source, {k: v.shape for k, v in target.items()})
        layout = " (Spikformer's public layout)"

    def kept(key: str) -> bool:
        return not any(key.startswith(prefix) for prefix in ignore)

    def shown(key: str) -> str:
        name = names.get(key, key)
        return key if name == key else f"{name} (model: {key})"

    source = {key: value for key, value in source.items() if kept(key)}
    missing = sorted(shown(key) for key in target if kept(key) and key not in source)
    unexpected = sorted(key for key in source if key not in target)
    misshaped = sorted(f"{shown(key)}: checkpoint {tuple(source[key].shape)}, model "
                       f"{tuple(target[key].shape)}" for key in source
                       if key in target and source[key].shape != target[key].shape)
    if missing or unexpected or misshaped:
        lines = [f"checkpoint{layout} does not fit {type(model).__name__}; nothing was loaded"]
        for title, keys in (("missing", missing), ("unexpected", unexpected),
                            ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"{len(keys)} {title} key(s): " + ", ".join(keys))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(source, strict=not ignore)
    return checkpoint if isinstance(checkpoint, Mapping) else {}
