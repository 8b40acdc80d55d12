"""Tiny on-disk datasets in the real layouts, for tests that must never download anything.

Each writer builds a few items in the exact layout the loaders in :mod:`srlib.data` read, with
class-dependent content so that a few training steps can learn something.
"""

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def class_images(labels: np.ndarray, size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 images [N, size, size] (or [N, size, size, C]): a bright horizontal band whose
    row depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), size, size), dtype=np.uint8)
    band = max(size // 10, 1)
    for i, label in enumerate(labels):
        row = int(label) * band % (size - band)
        images[i, row:row + band] = 230
    if channels > 1:
        images = np.repeat(images[..., None], channels, axis=-1)
    return images


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0801 if array.ndim == 1 else 0x0803
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(root: Path, n_train: int = 96, n_test: int = 32, gz: bool = True,
                        seed: int = 0) -> Path:
    """Fashion-MNIST idx files (28x28, 10 classes) under ``root``; returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = np.arange(count) % 10
        images = class_images(labels, 28, seed=seed + offset)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = _idx_bytes(array)
            if gz:
                with gzip.open(root / f"{name}.gz", "wb") as file:
                    file.write(data)
            else:
                (root / name).write_bytes(data)
    return root


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3,
                       size: int = 40, corrupt: bool = False) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``; with ``corrupt`` one
    unreadable ``broken.png`` in ``train/<first class>``."""
    root = Path(root)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            images = class_images(np.full(per_class, label), size, channels=3, seed=label)
            for i, image in enumerate(images):
                Image.fromarray(image).save(folder / f"{name}_{i}.png")
    if corrupt:
        (root / "train" / classes[0] / "broken.png").write_bytes(b"this is not a PNG file")
    return root


def write_cifar(root: Path, name: str = "cifar10", n_train: int = 20, n_test: int = 10) -> Path:
    """torchvision's python-pickle layout (``cifar-10-batches-py`` / ``cifar-100-python``).

    torchvision checks the MD5 sums of the real archives' files; tests that use this tree patch
    that check out (the rest of torchvision's reader runs as usual).
    """
    root = Path(root)
    classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def batch(count, seed):
        labels = np.arange(count) % classes
        images = class_images(labels, 32, channels=3, seed=seed)  # [N, 32, 32, 3]
        data = images.transpose(0, 3, 1, 2).reshape(count, -1)  # [N, 3*32*32] channel-major
        return {"data": data, label_key: labels.tolist()}

    if name == "cifar10":
        files = {f"data_batch_{i}": batch(n_train // 5, i) for i in range(1, 6)}
        files["test_batch"] = batch(n_test, 9)
        meta_name, meta = "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}
    else:
        files = {"train": batch(n_train, 1), "test": batch(n_test, 9)}
        meta_name, meta = "meta", {"fine_label_names": [f"c{i}" for i in range(100)]}
    files[meta_name] = meta
    for file_name, content in files.items():
        with open(folder / file_name, "wb") as file:
            pickle.dump(content, file)
    return root


def write_dvs_frames(root: Path, name: str, T: int, per_class: int = 2, size: int = 16) -> Path:
    """SpikingJelly's processed-frames layout: ``events_np/`` (present, so nothing is
    downloaded or converted) and ``frames_number_<T>_split_by_number/`` with one ``.npz``
    (key ``frames``, ``[T, 2, size, size]`` event counts) per sample."""
    root = Path(root)
    (root / "events_np").mkdir(parents=True, exist_ok=True)
    frames_dir = root / f"frames_number_{T}_split_by_number"
    rng = np.random.default_rng(0)
    if name == "dvs128gesture":
        layout = {split: [str(c) for c in range(11)] for split in ("train", "test")}
    else:
        layout = {None: ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                         "horse", "ship", "truck"]}
    for split, classes in layout.items():
        for label, class_name in enumerate(classes):
            folder = frames_dir / split / class_name if split else frames_dir / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                frames = rng.poisson(0.3 + 0.1 * label, size=(T, 2, size, size))
                np.savez(folder / f"{class_name}_{i}.npz", frames=frames.astype(np.float32))
    return root
