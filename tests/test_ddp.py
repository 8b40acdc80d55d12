"""DDP on CPU (gloo, 2 processes): one step equals a single process on the same global batch.

Setup where equality is exact in theory: the model runs in eval mode during the step, so batch
norm uses its running statistics and DSSA its frozen firing rates (both first set by the same
train-mode forward on every process). In train mode each replica would normalise with the
statistics of its own half batch, which is a different computation (SyncBN, CUDA only, is what
makes it equal there). What is left is exactly what DDP must get right: the two halves of the
global batch come from the sampler shards, gradients are averaged across processes, and every
process applies the same AdamW update; evaluation sums counts over both shards. Gradients are
compared too (Adam's first step is nearly scale-free, so weights alone would not notice a sum
in place of a mean). With gradient accumulation, each process's micro-batches accumulate
locally (``no_sync``) and DDP averages once, on the last micro-batch: a DDP communication hook
counts the bucket all-reduces of a step.
"""

import itertools
import os
import socket
import sys
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from tiny_datasets import write_fashion_mnist

from srlib.train import Trainer, load_config

GLOBAL_BATCH = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def options(tmp_path, batch_size: int, perf="plain") -> dict:
    return dict(name="ddp", output_dir=str(tmp_path / "runs"), data_root=str(tmp_path / "data"),
                device="cpu", threads=1, batch_size=batch_size, epochs=1, lr=1e-2,
                perf=perf, progress=False, tensorboard=False)


def one_step(tmp_path, batch_size: int, accum_steps: int = 1, perf="plain") -> dict:
    """Build a trainer, fix BN and DSSA statistics, take one step in eval mode, evaluate."""
    trainer = Trainer(load_config(None, **options(tmp_path, batch_size, perf),
                                  accum_steps=accum_steps))
    fixed = torch.linspace(-1, 2, 8 * 32 * 32).reshape(8, 1, 32, 32)
    trainer.model.train()
    with torch.no_grad():
        trainer.model(fixed)  # the same statistics on every process
    trainer.model.eval()
    trainer.train_loader.sampler.set_epoch(0)
    batches = list(itertools.islice(trainer.train_loader, accum_steps))
    images, labels = [b[0] for b in batches], [b[1] for b in batches]
    syncs = []
    if trainer.context.enabled:  # count DDP's gradient all-reduces (one per bucket and sync)
        def counting_hook(state, bucket):
            syncs.append(bucket.index())
            return default_hooks.allreduce_hook(state, bucket)

        trainer.network.register_comm_hook(None, counting_hook)
    before = trainer.model.prologue[0].weight.detach().clone()
    result = trainer.train_step(images, labels)
    metrics = trainer.evaluate()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    return {"state": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "grads": grads, "stem_before": before, "labels": torch.cat(labels),
            "loss": result["loss"], "metrics": metrics, "syncs": len(syncs)}


def worker(rank: int, world: int, port: int, tmp_path, accum_steps: int = 1,
           perf="plain") -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from srlib.train import distributed

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [one_step(tmp_path, GLOBAL_BATCH // (world * k), k, perf)
                       for k in sorted({1, accum_steps})]
        torch.save(results[-1] | {"syncs_without_accumulation": results[0]["syncs"],
                                  "warnings": [str(w.message) for w in caught]},
                   tmp_path / f"rank{rank}.pt")
    finally:
        distributed.cleanup()


def assert_same_step(ranks: list[dict], single: dict) -> None:
    """The processes' gradients equal the single process's (averaged, not summed or local),
    and so do the weights and buffers after the step, identical on every process."""
    for name, grad in single["grads"].items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-7,
                                   msg=name)
    for key, value in single["state"].items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-5, atol=1e-6,
                                   msg=key)
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key


@pytest.mark.slow
def test_two_process_step_equals_single_process(tmp_path):
    write_fashion_mnist(tmp_path / "data", n_train=32, n_test=13)  # 13: shards of 7 and 6
    mp.start_processes(worker, args=(2, free_port(), tmp_path), nprocs=2, start_method="spawn",
                       join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = one_step(tmp_path, GLOBAL_BATCH)
    # the shards of the global batch are the single process's batch, interleaved
    assert torch.equal(torch.stack([ranks[0]["labels"], ranks[1]["labels"]], 1).flatten(),
                       single["labels"])
    assert_same_step(ranks, single)
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(single["loss"], rel=1e-5)
    for name, value in single["metrics"].items():
        assert ranks[0]["metrics"][name] == ranks[1]["metrics"][name]
        assert ranks[0]["metrics"][name] == pytest.approx(value, rel=1e-5), name
    change = single["state"]["prologue.0.weight"] - single["stem_before"]
    assert change.abs().max() > 1e-3  # the step moved the weights (lr 1e-2)


@pytest.mark.slow
def test_accumulated_two_process_step_syncs_once_and_equals_single_process(tmp_path):
    """2 processes x 2 micro-batches of 2 = the single process's batch of 8; gradients are
    all-reduced on the last micro-batch only (as many bucket syncs as a step without
    accumulation)."""
    write_fashion_mnist(tmp_path / "data", n_train=32, n_test=13)
    mp.start_processes(worker, args=(2, free_port(), tmp_path, 2), nprocs=2,
                       start_method="spawn", join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = one_step(tmp_path, GLOBAL_BATCH)
    for rank in ranks:
        assert rank["syncs"] == rank["syncs_without_accumulation"] > 0  # no_sync on micro 1
    # each process's two micro-batches are its shard of the single process's batch
    assert sorted(torch.cat([r["labels"] for r in ranks]).tolist()) == \
        sorted(single["labels"].tolist())
    assert_same_step(ranks, single)


@pytest.mark.slow
def test_two_process_channels_last_step_equals_single_process_without_layout_warnings(
        tmp_path):
    """With NHWC weights (perf channels_last), DDP's gradient buckets match the gradients'
    strides: 1x1 convolution weights are ambiguous ("contiguous" in both layouts), and once
    kept their plain strides while their gradients came back NHWC, which DDP reports as "Grad
    strides do not match bucket view strides" and copies every step."""
    write_fashion_mnist(tmp_path / "data", n_train=32, n_test=13)
    perf = {"channels_last": True}
    mp.start_processes(worker, args=(2, free_port(), tmp_path, 1, perf), nprocs=2,
                       start_method="spawn", join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank in ranks:
        assert not [w for w in rank["warnings"] if "strides" in w], rank["warnings"]
    assert_same_step(ranks, one_step(tmp_path, GLOBAL_BATCH, perf=perf))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
