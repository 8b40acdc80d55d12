"""Datasets and loaders: ImageNet, CIFAR-10/100, CIFAR10-DVS, DVS128 Gesture, Fashion-MNIST.

``build_dataset(name, root, train, img_size, **options)`` returns a map-style dataset of
``(x, label)``: ``x`` is an image ``[C, H, W]`` or, for the event datasets, a frame sequence
``[T, C, H, W]``. ``build_loader`` batches them into ``[B, C, H, W]`` or, time-major,
``[T, B, C, H, W]`` (the one place where the event data's batch-major layout is transposed).

Training loaders use :class:`ResumableSampler`: the order depends on (seed, epoch) only, each
sample's augmentation on (seed, epoch, index) only, and an epoch can be restarted at any
batch, so a resumed run sees exactly the data the uninterrupted run would have seen. A dataset
whose items draw no random numbers says so (``random = False``, Fashion-MNIST without
augmentation) and is loaded a batch at a time through its ``__getitems__``, unseeded.
"""

import inspect
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from srlib.data.cifar import cifar
from srlib.data.dvs import dvs_frames
from srlib.data.fashion_mnist import FashionMNIST
from srlib.data.imagenet import imagenet
from srlib.data.transforms import SeededDataset, mixup_cutmix, sample_seed


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    num_classes: int
    in_channels: int
    img_size: int  # the paper's input size for direct training
    sequence: bool  # items are frame sequences [T, C, H, W] (batched time-major)


DATASETS = {
    "fashion-mnist": DatasetInfo(10, 1, 32, False),
    "imagenet": DatasetInfo(1000, 3, 224, False),
    "cifar10": DatasetInfo(10, 3, 32, False),
    "cifar100": DatasetInfo(100, 3, 32, False),
    "cifar10dvs": DatasetInfo(10, 3, 64, True),
    "dvs128gesture": DatasetInfo(11, 3, 64, True),
}
_BUILDERS = {
    "fashion-mnist": FashionMNIST,
    "imagenet": imagenet,
    "cifar10": partial(cifar, "cifar10"),
    "cifar100": partial(cifar, "cifar100"),
    "cifar10dvs": partial(dvs_frames, "cifar10dvs"),
    "dvs128gesture": partial(dvs_frames, "dvs128gesture"),
}


def dataset_info(name: str) -> DatasetInfo:
    """Classes, channels, size and kind of a dataset known to :func:`build_dataset`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def dataset_options(name: str) -> set[str]:
    """Keyword options the builder of ``name`` accepts beyond root, train and img_size."""
    dataset_info(name)
    parameters = inspect.signature(_BUILDERS[name]).parameters
    return set(parameters) - {"root", "train", "img_size"}


def build_dataset(name: str, root=None, train: bool = True, img_size: int | None = None,
                  **options) -> Dataset:
    """Build a dataset by name.

    Args:
        name: one of ``fashion-mnist``, ``imagenet``, ``cifar10``, ``cifar100``,
            ``cifar10dvs``, ``dvs128gesture``.
        root: where the data lies (``None``: the dataset's default place under ``data/``, and
            for Fashion-MNIST also Debian's ``/usr/share/datasets/fashion-mnist``).
        train: training split (with augmentation) or evaluation split.
        img_size: input size; ``None`` takes the paper's size for the dataset.
        **options: dataset-specific options (see :func:`dataset_options`), e.g.
            ``download=True``, ``skip_corrupt=True``, ``T=16``,
            ``auto_augment="rand-m9-mstd0.5-inc1"``.
    """
    info = dataset_info(name)
    unknown = set(options) - dataset_options(name)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for dataset {name!r}; expected "
                         f"some of {sorted(dataset_options(name))}")
    size = info.img_size if img_size is None else img_size
    return _BUILDERS[name](root=root, train=train, img_size=size, **options)


def _replicas() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (one shard per process, reshuffled per epoch from the seed) that
    can start an epoch at a given batch and pairs each index with its augmentation seed.

    Args:
        dataset: the dataset to sample from (its length is all that is used).
        shuffle: draw a new permutation every epoch (training) or keep the order.
        seed: the run's seed; the permutation of epoch e is drawn from ``seed + e``.
        drop_last: drop the tail so that every process gets the same number of samples;
            otherwise the tail is padded with repeated indices (DistributedSampler's rule).
        with_seeds: yield ``(index, seed)`` pairs for :class:`SeededDataset`.
        num_replicas: processes sharing the data (default: the process group's size, or 1).
        rank: this process's shard (default: its rank in the process group, or 0).
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 with_seeds: bool = True, num_replicas: int | None = None,
                 rank: int | None = None):
        world, this_rank = _replicas()
        super().__init__(dataset, num_replicas=world if num_replicas is None else num_replicas,
                         rank=this_rank if rank is None else rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.with_seeds = with_seeds
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the position (in samples of this process) to start from."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())[self.start:]
        if not self.with_seeds:
            return iter(indices)
        return iter([(index, sample_seed(self.seed, self.epoch, index)) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation sampler: process r of n takes items r, r+n, r+2n, ... with no padding, so
    sums over all processes count every item exactly once."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None):
        world, this_rank = _replicas()
        self.length = len(dataset)
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = this_rank if rank is None else rank

    def __iter__(self):
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


def time_major_collate(batch):
    """Stack ``[T, C, H, W]`` items and put time first: ``[T, B, C, H, W]``."""
    frames, labels = default_collate(batch)  # [B, T, C, H, W], [B]
    return frames.transpose(0, 1).contiguous(), labels  # [T, B, C, H, W]


def build_loader(dataset: Dataset, batch_size: int, train: bool, *, seed: int = 0,
                 num_workers: int = 0, sequence: bool = False, pin_memory: bool = False,
                 drop_last: bool | None = None) -> DataLoader:
    """A loader for one process (under DDP: this process's shard of every batch).

    Args:
        dataset: from :func:`build_dataset`.
        batch_size: samples per process per step.
        train: shuffle with :class:`ResumableSampler` (call ``loader.sampler.set_epoch``
            before each epoch) and drop the last incomplete batch; otherwise
            :class:`ShardSampler` in order.
        seed: the run's seed (order and augmentations).
        num_workers: loader worker processes (0 loads in the main process).
        sequence: items are frame sequences: batches become time-major ``[T, B, ...]``.
        pin_memory: pin batches for faster host-to-GPU copies.
        drop_last: override the default (``train``).
    """
    drop_last = train if drop_last is None else drop_last
    if train:
        # items get augmentation seeds unless their dataset says it draws no random numbers
        # (``random`` false: Fashion-MNIST without augmentation, loaded a batch at a time)
        seeded = getattr(dataset, "random", True) is not False
        sampler = ResumableSampler(dataset, shuffle=True, seed=seed, drop_last=drop_last,
                                   with_seeds=seeded)
        dataset = SeededDataset(dataset)
    else:
        sampler = ShardSampler(dataset)
    # the loader's own generator: starting an epoch's iterator draws a worker base seed from
    # it, which must not advance the global generator (Mixup draws from that one)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=time_major_collate if sequence else default_collate,
                      pin_memory=pin_memory, drop_last=drop_last, generator=generator,
                      persistent_workers=num_workers > 0)


__all__ = ["DATASETS", "DatasetInfo", "ResumableSampler", "ShardSampler", "build_dataset",
           "build_loader", "dataset_info", "dataset_options", "mixup_cutmix", "time_major_collate"]
