"""Run state: everything needed to continue a run exactly where it stopped.

The run state (``last.pth``, ``best.pth``) is a dict of plain types and tensors (so ``torch.load(weights_only=True)``,
which :func:`srlib.checkpoint.read_checkpoint` uses, reads it):

    model       the model's state dict (no DDP / compile prefixes)
    optimizer   AdamW state            scheduler   {"step_count": n}
    scaler      GradScaler state ({} without fp16)
    epoch       the epoch to continue  epoch_step  optimizer steps already done in it
    step        optimizer steps in all
    best_acc1   the best test accuracy so far (updated before the save), best_step its step
    processes   one entry per process: {"rng": torch, cuda, numpy and python generator
                states, "epoch_stats" / "interval_stats": [loss sum, correct, count] of this
                epoch / of the steps since the last steps.csv row}
    config      TrainConfig.to_dict()  world_size  processes that wrote it

Files are written by :func:`srlib.checkpoint.atomic_save` (temporary file, then rename), so a
run killed during a save keeps its previous run state. Its ``model`` entry is a checkpoint
(the model's weights) that :func:`srlib.load_checkpoint` reads directly.
"""

import random
import warnings

import numpy as np
import torch
import torch.distributed as dist

from srlib.checkpoint import atomic_save, read_checkpoint

LAST = "last.pth"  # the run state to resume from
BEST = "best.pth"  # the run state with the best test accuracy


def rng_state() -> dict:
    """This process's generator states, as tensors and lists (``weights_only``-safe)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore the generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn("the run state's CUDA generator states are for "
                          f"{len(state['cuda'])} devices, this machine has "
                          f"{torch.cuda.device_count()}: CUDA generators not restored")
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]),
                     python_state["gauss"]))


def gather_process_states(epoch_stats: list[float], interval_stats: list[float]) -> list[dict]:
    """Every process's generator states and running sums, in rank order (collective under
    DDP)."""
    own = {"rng": rng_state(), "epoch_stats": [float(value) for value in epoch_stats],
           "interval_stats": [float(value) for value in interval_stats]}
    if not (dist.is_available() and dist.is_initialized()):
        return [own]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, own)
    return states


def save_run_state(path, *, model, optimizer, scheduler, scaler, epoch: int,
                        epoch_step: int, step: int, best_acc1: float, best_step: int | None,
                        processes: list[dict], config: dict,
                        world_size: int) -> None:
    """Write the run state atomically (call on the main process only)."""
    atomic_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "epoch": epoch, "epoch_step": epoch_step, "step": step,
        "best_acc1": float(best_acc1), "best_step": best_step,
        "processes": processes, "config": config, "world_size": world_size,
    }, path)


def load_run_state(path) -> dict:
    """Read a run state (``weights_only``) and check that it is one."""
    state = read_checkpoint(path)
    required = {"model", "optimizer", "scheduler", "epoch", "epoch_step", "step", "processes",
                "best_acc1", "config"}
    missing = sorted(required - set(state))
    if missing:
        raise ValueError(f"{path} is not a run state of srlib.train (missing {missing}); "
                         "to start from a model's weights only, use pretrained=<path>")
    return state
