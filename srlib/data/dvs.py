"""Event-camera datasets as frame sequences through SpikingJelly: CIFAR10-DVS, DVS128 Gesture.

Events are integrated into ``T`` frames holding equal numbers of events (``split_by='number'``)
by SpikingJelly, which caches them under ``root/frames_number_<T>_split_by_number/``. Items
are ``(frames [T, 3, S, S], label)`` (see :class:`EventFrameTransform`); :func:`build_loader`
batches them time-major, ``[T, B, 3, S, S]``.

Expected layout of ``root`` (SpikingJelly's): any of

* ``download/`` with the original archives (CIFAR10-DVS: ``airplane.zip`` ... ``truck.zip``
  from figshare; DVS128 Gesture: ``DvsGesture.tar.gz`` and ``gesture_mapping.csv`` from IBM),
* ``events_np/`` (events already converted by SpikingJelly),
* ``frames_number_<T>_split_by_number/`` (frames already integrated).
"""

import math
import os
from pathlib import Path

from torch.utils.data import Dataset, Subset

from srlib.data.transforms import EventFrameTransform
from srlib.paths import data_dir

TRAIN_FRACTION = 0.9  # CIFAR10-DVS has no official split: the first 90 % of each class train
_INFO = {  # name -> (SpikingJelly class name, classes, where to get it)
    "cifar10dvs": ("CIFAR10DVS", 10,
                   "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 "
                   "(10 zip files, one per class); --download lets SpikingJelly fetch them"),
    "dvs128gesture": ("DVS128Gesture", 11,
                      "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz and "
                      "gesture_mapping.csv, manual download after accepting the licence)"),
}


def _frames_dir(root: Path, T: int) -> Path:
    return root / f"frames_number_{T}_split_by_number"


def _check_layout(name: str, root: Path, T: int, download: bool) -> None:
    present = [_frames_dir(root, T), root / "events_np", root / "download"]
    if any(path.is_dir() and any(path.iterdir()) for path in present):
        return
    if download and name == "cifar10dvs":
        return
    raise FileNotFoundError(
        f"{name} not found at {root}: expected one of {', '.join(str(p) for p in present)} "
        f"(SpikingJelly's layout: download/ holds the original archives, events_np/ the "
        f"converted events, {_frames_dir(root, T).name}/ the integrated frames). Get it from "
        f"{_INFO[name][2]} and put the files in {root / 'download'}.")


def _import_spikingjelly_dataset(module: str):
    """Import ``spikingjelly.datasets.<module>`` without the package's ``__init__``.

    SpikingJelly 2.0's ``spikingjelly/datasets/__init__.py`` imports every dataset, including
    the speech-commands one that needs torchaudio, which srlib does not install (every
    torchaudio release pins an older torch, see pyproject.toml). The event-camera modules
    themselves need only torch, torchvision and numpy, so the package is registered as a bare
    namespace and the one module is imported from it.
    """
    import importlib
    import sys
    import types

    import spikingjelly

    package = "spikingjelly.datasets"
    if package not in sys.modules:
        try:
            importlib.import_module(package)
        except ImportError:  # torchaudio missing: register the bare package instead
            sys.modules.pop(package, None)
            bare = types.ModuleType(package)
            bare.__path__ = [str(Path(spikingjelly.__file__).parent / "datasets")]
            sys.modules[package] = bare
    return importlib.import_module(f"{package}.{module}")


def _spikingjelly_dataset(name: str, root: Path, T: int, train: bool | None, transform):
    module = {"cifar10dvs": "cifar10_dvs", "dvs128gesture": "dvs128_gesture"}[name]
    cls = getattr(_import_spikingjelly_dataset(module), _INFO[name][0])
    kwargs = dict(data_type="frame", frames_number=T, split_by="number", transform=transform)
    if train is not None:
        kwargs["train"] = train
    try:
        return cls(str(root), **kwargs)
    except (FileNotFoundError, NotImplementedError, RuntimeError) as error:
        raise FileNotFoundError(f"SpikingJelly could not prepare {name} from {root}: {error}. "
                                f"Get it from {_INFO[name][2]}.") from error


def class_split(targets, train: bool, fraction: float = TRAIN_FRACTION) -> list[int]:
    """Indices of the first ``ceil(fraction * n_c)`` items of each class (train) or the rest
    (test), in dataset order: the split of the authors' CIFAR10-DVS runs."""
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    chosen = []
    for indices in by_class.values():
        cut = math.ceil(fraction * len(indices))
        chosen += indices[:cut] if train else indices[cut:]
    return sorted(chosen)


def dvs_frames(name: str, root: str | os.PathLike | None, train: bool = True,
               img_size: int = 64, T: int = 16, download: bool = False,
               augment: bool | None = None) -> Dataset:
    """CIFAR10-DVS or DVS128 Gesture as ``T`` event-count frames per sample.

    Args:
        name: ``"cifar10dvs"`` or ``"dvs128gesture"``.
        root: SpikingJelly's dataset folder (see the module docstring); default
            ``data/<name>``.
        train: training or test split (CIFAR10-DVS: 9:1 per class, see :func:`class_split`).
        img_size: frames are resized from 128x128 to this size (bilinear, antialiased, as
            the authors: see :class:`EventFrameTransform`).
        T: number of frames per sample.
        download: let SpikingJelly download CIFAR10-DVS (DVS128 Gesture needs a manual
            download).
        augment: the DVS augmentation (default: for the training split only).
    """
    root = data_dir() / name if root is None else Path(root)
    _check_layout(name, root, T, download)
    transform = EventFrameTransform(train if augment is None else augment, img_size)
    if name == "dvs128gesture":
        dataset = _spikingjelly_dataset(name, root, T, train, transform)
    else:
        full = _spikingjelly_dataset(name, root, T, None, transform)
        dataset = Subset(full, class_split(full.targets, train))
        dataset.classes = full.classes
    if len(dataset) == 0:
        raise FileNotFoundError(f"{name} at {root} holds no samples for the "
                                f"{'train' if train else 'test'} split")
    return dataset
