"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), the default dataset: 60,000 + 10,000 grey 28x28
images of 10 clothing classes, read from the original idx files and kept in memory.

Where the files are looked for, in order: the ``root`` given, ``<data>/fashion-mnist`` (the data
folder of :func:`srlib.paths.data_dir`: ``$SRLIB_DATA_DIR``, the checkout's ``data/`` or
``./data``), Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``),
and torchvision's layout ``<data>/FashionMNIST/raw``. With ``download=True`` torchvision
fetches the files into the data folder.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from srlib.data.transforms import FashionMNISTTransform
from srlib.paths import data_dir

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_MAGIC = {0x0801: 1, 0x0803: 3}  # unsigned-byte idx files: labels (1-d), images (3-d)
HOW_TO_GET = ("Get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
              f"files in {DEBIAN_DIR}), `bash scripts/get_fashion_mnist.sh`, or pass "
              "--download (torchvision fetches it into data/).")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an unsigned-byte idx file (optionally gzipped) into a uint8 array.

    Raises:
        ValueError: the file is truncated or not an idx file of unsigned bytes.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read idx file {path}: {error}") from error
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in IDX_MAGIC:
        raise ValueError(f"{path} is not an unsigned-byte idx file (expected magic 0x00000801 "
                         f"or 0x00000803, got {magic!r})")
    ndim = IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise ValueError(f"{path} is truncated or malformed: header says shape {shape} "
                         f"({int(np.prod(shape))} bytes), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    """Folders searched for the idx files, in order."""
    if root is not None:
        root = Path(root)
        return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    data = data_dir()
    dirs = [data / "fashion-mnist", DEBIAN_DIR, data / "FashionMNIST" / "raw"]
    return list(dict.fromkeys(dirs))


def find_fashion_mnist(root: str | os.PathLike | None = None, train: bool = True,
                       download: bool = False) -> tuple[Path, Path]:
    """Paths of the (images, labels) idx files of one split.

    Raises:
        FileNotFoundError: nothing found; the message lists the places searched, the expected
            file names and how to get them.
    """
    names = FILES[train]
    searched = candidate_dirs(root)
    for folder in searched:
        found = [_find_file(folder, name) for name in names]
        if all(found):
            return found[0], found[1]
    if download:
        import torchvision  # the download is the only use of it here

        target = Path(root) if root is not None else data_dir()
        torchvision.datasets.FashionMNIST(str(target), train=train, download=True)
        return find_fashion_mnist(target, train, download=False)
    raise FileNotFoundError(
        f"Fashion-MNIST {'train' if train else 'test'} split not found. Expected {names[0]}"
        f"[.gz] and {names[1]}[.gz] in one of: {', '.join(map(str, searched))}. {HOW_TO_GET}")


class FashionMNIST(Dataset):
    """Fashion-MNIST held in memory as a uint8 tensor ``[N, 28, 28]``.

    Items are ``(image [1, S, S] float, label int)`` with ``S = img_size`` (28 or more; the
    image is zero-padded in the middle, e.g. to 32 for the default model).

    Args:
        root: a folder holding the idx files; ``None`` searches the usual places.
        train: the 60,000-image training split, or the 10,000-image test split.
        img_size: output size S.
        download: fetch through torchvision if the files are nowhere to be found.
        augment: random shift (``shift`` pixels) and horizontal flip; default: ``train``.
        shift: the largest random shift in pixels.
        hflip: random horizontal flips when augmenting.
    """

    num_classes = len(CLASSES)
    classes = CLASSES

    def __init__(self, root=None, train: bool = True, img_size: int = 32, download: bool = False,
                 augment: bool | None = None, shift: int = 2, hflip: bool = True):
        images_path, labels_path = find_fashion_mnist(root, train, download)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(f"expected images [N, 28, 28] and labels [N] in {images_path} and "
                             f"{labels_path}, got {images.shape} and {labels.shape}")
        if labels.max(initial=0) >= len(CLASSES):
            raise ValueError(f"labels in {labels_path} must lie in 0..9, got {labels.max()}")
        self.images = torch.from_numpy(images.copy())  # [N, 28, 28] uint8
        self.targets = torch.from_numpy(labels.astype(np.int64))  # [N]
        self.root = images_path.parent
        self.transform = FashionMNISTTransform(train if augment is None else augment, img_size,
                                               shift, hflip)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.targets[index])

    @property
    def random(self) -> bool:
        """Whether items draw random numbers (augmentation)."""
        return self.transform.random

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A batch of items, as ``[self[i] for i in indices]``; without augmentation the
        transform runs once on the whole batch (``DataLoader`` calls this)."""
        if self.random:
            return [self[index] for index in indices]
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.transform.batch(self.images[index])  # [B, 1, S, S]
        return list(zip(images.unbind(0), self.targets[index].tolist()))
