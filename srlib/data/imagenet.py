"""ImageNet-1k (ILSVRC 2012) from a class-folder tree, with the paper's transforms.

Expected layout (the usual one after extracting the ILSVRC 2012 archives and sorting ``val``
into class folders, e.g. with the ``valprep.sh`` script of many ImageNet tutorials)::

    root/train/n01440764/n01440764_10026.JPEG ...   1000 class folders
    root/val/n01440764/ILSVRC2012_val_00000293.JPEG ...   the same 1000 folders

Any folder tree of that shape works (a few classes, PNGs), which is how the tests use it.
"""

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder

from srlib.data.transforms import (CROP_PCT, IMAGENET_AUTO_AUGMENT, IMAGENET_CROP_SCALE,
                                   check_auto_augment, imagenet_eval_transform,
                                   imagenet_train_transform)
from srlib.paths import data_dir

NUM_CLASSES = 1000
HOW_TO_GET = ("ImageNet cannot be downloaded automatically: get ILSVRC 2012 from "
              "https://image-net.org (registration), extract train/ and val/ and sort val/ into "
              "class folders.")
LAYOUT = "root/train/<class>/<image> and root/val/<class>/<image> (ILSVRC 2012 class folders)"


def _readable(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError):
        return False


def _load_rgb(path: str) -> Image.Image:
    """PIL loader that names the file it cannot read."""
    try:
        with open(path, "rb") as file:
            image = Image.open(file)
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise OSError(f"cannot read image {path}: {error} (pass skip_corrupt=True, or "
                      "--skip-corrupt on the command line, to leave unreadable files out)") \
            from error


class ImageFolderDataset(ImageFolder):
    """``torchvision.datasets.ImageFolder`` with clear errors.

    Args:
        root: the split folder (``.../train`` or ``.../val``) holding one folder per class.
        transform: applied to each PIL image.
        skip_corrupt: check every file first and leave out (with a warning listing them) those
            PIL cannot read; otherwise an unreadable file raises ``OSError`` naming its path when
            it is loaded.
    """

    def __init__(self, root, transform=None, skip_corrupt: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist; expected {LAYOUT}. "
                                    f"{HOW_TO_GET}")
        try:
            super().__init__(str(root), transform=transform, loader=_load_rgb)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{root} holds no class folders with images ({error}); "
                                    f"expected {LAYOUT}") from error
        if skip_corrupt:
            bad = [path for path, _ in self.samples if not _readable(path)]
            if bad:
                warnings.warn(f"skipping {len(bad)} unreadable image(s): {', '.join(bad[:20])}")
                bad_set = set(bad)
                self.samples = [s for s in self.samples if s[0] not in bad_set]
                self.targets = [target for _, target in self.samples]
                self.imgs = self.samples
            if not self.samples:
                raise FileNotFoundError(f"no readable images left in {root}")


def imagenet(root: str | os.PathLike | None, train: bool = True, img_size: int = 224,
             skip_corrupt: bool = False, auto_augment: str | None = IMAGENET_AUTO_AUGMENT,
             color_jitter: float = 0.4, random_erasing: float = 0.0, crop_pct: float = CROP_PCT,
             crop_scale_min: float = IMAGENET_CROP_SCALE[0],
             augment: bool | None = None) -> ImageFolderDataset:
    """The ImageNet ``train`` or ``val`` split with the authors' transforms (see
    :mod:`srlib.data.transforms`).

    Args:
        root: folder holding ``train/`` and ``val/``; default ``data/imagenet``.
        train: training or validation split.
        img_size: output side.
        skip_corrupt: leave out (with a warning) files PIL cannot read.
        auto_augment: timm RandAugment string, e.g. ``"rand-m7-mstd0.5-inc1"`` (Ti, S) or
            ``"rand-m9-mstd0.5-inc1"`` (M); None: off.
        color_jitter: colour jitter strength, applied only when ``auto_augment`` is off (timm's
            rule: the authors pass 0.4, which their RandAugment leaves inactive).
        random_erasing: probability of timm's random erasing (one box, 'const'); 0: off.
        crop_pct: evaluation center crop of ``img_size`` out of ``img_size / crop_pct``.
        crop_scale_min: smallest training crop area, as a fraction of the image.
        augment: give the split the training transform (default: the training split only);
            ``False`` gives the training split the evaluation transform.
    """
    check_auto_augment(auto_augment)  # also for the evaluation split: a bad recipe fails early
    if root is None:
        root = data_dir() / "imagenet"
    root = Path(root)
    missing = [name for name in ("train", "val") if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"ImageNet not found at {root}: missing {', '.join(missing)}/. "
                                f"Expected {LAYOUT}. {HOW_TO_GET}")
    if train if augment is None else augment:
        transform = imagenet_train_transform(img_size, auto_augment, color_jitter,
                                             random_erasing, crop_scale_min)
    else:
        transform = imagenet_eval_transform(img_size, crop_pct)
    return ImageFolderDataset(root / ("train" if train else "val"), transform, skip_corrupt)
