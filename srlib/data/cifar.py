"""CIFAR-10 and CIFAR-100 through torchvision (downloaded only when asked).

Expected layout: ``root/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta) or
``root/cifar-100-python/`` (train, test, meta), as torchvision's download extracts them.
"""

import os
from pathlib import Path

from torchvision import datasets

from srlib.data.transforms import (CIFAR100_MEAN, CIFAR100_STD, CIFAR10_MEAN, CIFAR10_STD,
                                   CIFAR_AUTO_AUGMENT, CIFAR_CROP_PCT, check_auto_augment,
                                   check_normalization, check_rand_augment_ops, cifar_transform)
from srlib.paths import data_dir

_VARIANTS = {  # name -> (torchvision class, folder inside root, mean, std, classes)
    "cifar10": (datasets.CIFAR10, "cifar-10-batches-py", CIFAR10_MEAN, CIFAR10_STD, 10),
    "cifar100": (datasets.CIFAR100, "cifar-100-python", CIFAR100_MEAN, CIFAR100_STD, 100),
}


def cifar(name: str, root: str | os.PathLike | None, train: bool = True, img_size: int = 32,
          download: bool = False, auto_augment: str | None = CIFAR_AUTO_AUGMENT,
          color_jitter: float = 0.0, random_erasing: float = 0.0,
          crop_pct: float = CIFAR_CROP_PCT, augment: bool | None = None,
          auto_augment_ops=None, normalize_mean=None, normalize_std=None):
    """CIFAR-10/100 with the authors' CIFAR transforms (see :func:`cifar_transform`).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: folder holding ``cifar-10-batches-py`` / ``cifar-100-python``; default ``data/``.
        train: training (50,000 images) or test (10,000) split.
        img_size: output size; 32, or e.g. 128 when fine-tuning an ImageNet model.
        download: let torchvision download the archive (170 MB) into ``root``.
        auto_augment: timm RandAugment string, e.g. ``"rand-m7-n1-mstd0.5-inc1"`` (direct
            training) or ``"rand-m9-n1-mstd0.4-inc1"`` (transfer); None: off.
        color_jitter: colour jitter strength, applied only when ``auto_augment`` is off
            (timm's rule); the authors pass 0.
        random_erasing: probability of timm's random erasing (one box, 'const'); 0: off.
        crop_pct: evaluation center crop of ``img_size`` out of ``img_size / crop_pct`` (the
            authors: 1, the whole image).
        augment: flips and RandAugment (default: for the training split only).
        auto_augment_ops: timm op names replacing the RandAugment string's op set, e.g.
            Spikformer's ``("Equalize", "Rotate", "ShearX", "TranslateXRel",
            "TranslateYRel")``; None: timm's set for the string.
        normalize_mean, normalize_std: per-channel statistics of the normalisation; None: the
            authors' for the dataset (Spikformer's CIFAR-10 std is (0.2470, 0.2435, 0.2616)).
    """
    # checked for the test split too: a bad recipe fails before anything runs
    check_auto_augment(auto_augment)
    check_rand_augment_ops(auto_augment_ops)
    if auto_augment_ops is not None and not auto_augment:
        raise ValueError(f"auto_augment_ops {list(auto_augment_ops)} needs a RandAugment string "
                         "in auto_augment (e.g. 'rand-m9-n1-mstd0.4-inc1'), got "
                         f"{auto_augment!r}")
    check_normalization("normalize_mean", normalize_mean)
    check_normalization("normalize_std", normalize_std, positive=True)
    dataset_cls, folder, mean, std, _ = _VARIANTS[name]
    mean = tuple(mean if normalize_mean is None else normalize_mean)
    std = tuple(std if normalize_std is None else normalize_std)
    root = data_dir() if root is None else Path(root)
    if not download and not (root / folder).is_dir():
        raise FileNotFoundError(
            f"{name} not found: expected the folder {root / folder} (python-pickle batches as "
            f"torchvision extracts them). Pass --download (download=True) to fetch it into "
            f"{root}, or point --data-root at the folder that contains {folder}/.")
    augment = train if augment is None else augment
    transform = cifar_transform(augment, img_size, mean, std, auto_augment, color_jitter,
                                random_erasing, crop_pct, auto_augment_ops)
    try:
        return dataset_cls(str(root), train=train, transform=transform, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"{name} at {root / folder} is incomplete or corrupted "
                                f"({error}); expected torchvision's layout. Delete it and pass "
                                "--download to fetch it again.") from error
