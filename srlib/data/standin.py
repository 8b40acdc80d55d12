"""A small ImageNet stand-in: Fashion-MNIST written as an ImageNet class-folder tree.

The ImageNet code path (folder reading, the paper's transforms, Mixup/CutMix, the recipe) can
then run end to end on a laptop without ImageNet::

    root/train/00_t-shirt_top/0000.png ...   num_classes folders, train_per_class RGB PNGs each
    root/val/00_t-shirt_top/0000.png ...     the same folders, val_per_class PNGs each

Training images come from Fashion-MNIST's training split and validation images from its test
split (so the two never share an image), upscaled from 28 x 28 to ``img_size`` (bicubic) and
copied into three equal channels. A ``standin.json`` file records how the tree was made;
calling the builder again with the same settings reuses it.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from srlib.data.fashion_mnist import CLASSES, find_fashion_mnist, read_idx

MARKER = "standin.json"  # describes the tree; its presence marks a finished build


def class_folder_names(num_classes: int = len(CLASSES)) -> list[str]:
    """Folder names ``00_t-shirt_top``, ``01_trouser``, ...: sorted order = Fashion-MNIST order."""
    return [f"{label:02d}_" + name.lower().replace("/", "_").replace(" ", "_")
            for label, name in enumerate(CLASSES[:num_classes])]


def _pick(labels: np.ndarray, num_classes: int, per_class: int, seed: int,
          split: str) -> list[np.ndarray]:
    """For each class, ``per_class`` indices of that class in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(labels))  # [N]
    picked = []
    for label in range(num_classes):
        members = order[labels[order] == label]
        if len(members) < per_class:
            raise ValueError(f"Fashion-MNIST {split} split has {len(members)} images of class "
                             f"{label}, fewer than the {per_class} asked for")
        picked.append(members[:per_class])
    return picked


def write_standin_imagenet(root: str | os.PathLike, *, num_classes: int = 10,
                           train_per_class: int = 60, val_per_class: int = 20,
                           img_size: int = 64, seed: int = 0,
                           source_root: str | os.PathLike | None = None) -> Path:
    """Write (or reuse) a Fashion-MNIST stand-in of the ImageNet folder layout at ``root``.

    The tree is built in a temporary folder beside ``root`` and renamed into place, so an
    interrupted build leaves nothing behind.

    Args:
        root: the folder to create; it will hold ``train/``, ``val/`` and ``standin.json``.
        num_classes: the first this many Fashion-MNIST classes (1 to 10).
        train_per_class: training images per class (from Fashion-MNIST's training split).
        val_per_class: validation images per class (from its test split).
        img_size: side of the written PNGs in pixels (28 or more).
        seed: which images are picked.
        source_root: where the Fashion-MNIST idx files lie (``None``: the usual places, see
            :func:`srlib.data.fashion_mnist.find_fashion_mnist`).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: a setting is out of range, or a class has too few images.
        FileExistsError: ``root`` exists but is not a stand-in made with these settings.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must lie in 1..{len(CLASSES)}, got {num_classes}")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"train_per_class and val_per_class must be >= 1, got "
                         f"{train_per_class} and {val_per_class}")
    if img_size < 28:
        raise ValueError(f"img_size must be >= 28 (Fashion-MNIST is 28 x 28), got {img_size}")
    root = Path(root)
    settings = dict(num_classes=num_classes, train_per_class=train_per_class,
                    val_per_class=val_per_class, img_size=img_size, seed=seed)
    if root.exists():
        marker = root / MARKER
        found = json.loads(marker.read_text()) if marker.is_file() else None
        if found == settings:
            return root
        raise FileExistsError(f"{root} exists and is not a stand-in made with {settings} "
                              f"(its {MARKER}: {found}); remove it or pick another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        folders = class_folder_names(num_classes)
        for split, train, per_class in (("train", True, train_per_class),
                                        ("val", False, val_per_class)):
            images_path, labels_path = find_fashion_mnist(source_root, train)
            images, labels = read_idx(images_path), read_idx(labels_path)  # [N, 28, 28], [N]
            for folder, indices in zip(folders, _pick(labels, num_classes, per_class, seed,
                                                      split)):
                (building / split / folder).mkdir(parents=True)
                for i, index in enumerate(indices):
                    image = Image.fromarray(images[index]).resize(
                        (img_size, img_size), Image.Resampling.BICUBIC).convert("RGB")
                    image.save(building / split / folder / f"{i:04d}.png")
        (building / MARKER).write_text(json.dumps(settings, indent=1))
        os.replace(building, root)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return root


__all__ = ["MARKER", "class_folder_names", "write_standin_imagenet"]
