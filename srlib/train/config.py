"""The training configuration: one frozen dataclass; YAML recipes in ``configs/`` map 1:1 onto it.

``load_config(path, **overrides)`` reads a recipe, applies command-line overrides and checks
every key: an unknown key is an error that lists the valid ones.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

AMP_MODES = ("none", "bf16", "fp16")
LOSSES = ("mean", "tet")
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults are the Fashion-MNIST main job's."""

    # run
    name: str = "fashion_mnist"  # the run folder is <output_dir>/<name>
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available, else CPU; or "cpu", "cuda:1", ...
    threads: int = 0  # torch CPU threads (intra-op); 0 keeps torch's default
    deterministic: bool = False  # deterministic kernels (slower on GPU; CPU is already)
    # model
    model: str = "spikingresformer_fmnist"
    T: int = 4  # time steps (frames per sample for the event datasets)
    img_size: int | None = None  # None: the dataset's size (32 for padded Fashion-MNIST)
    num_classes: int | None = None  # None: the dataset's
    pretrained: str | None = None  # transfer learning: start from these weights
    pretrained_ignore: tuple[str, ...] = ("classifier.",)  # ...leaving out these key prefixes
    # data
    dataset: str = "fashion-mnist"
    data_root: str | None = None  # None: the dataset's default place (see srlib.data)
    download: bool = False  # allow torchvision / SpikingJelly to download the dataset
    workers: int = 0  # loader processes per training process
    augment: bool = True  # the dataset's training augmentation (False: eval transform)
    skip_corrupt: bool = False  # leave out unreadable images (image folders) with a warning
    randaugment_n: int = 0  # RandAugment ops per image (ImageNet, CIFAR); 0: off
    randaugment_m: int = 7  # RandAugment magnitude
    color_jitter: float = 0.4  # ImageNet only
    crop_pct: float = 0.95  # ImageNet eval: center crop of img_size out of img_size / crop_pct
    max_train_samples: int | None = None  # train on a fixed random subset of this size
    max_eval_samples: int | None = None  # evaluate on the first n items (None: all)
    # optimisation
    epochs: int = 3
    batch_size: int = 64  # per process; the global batch is batch_size * world size
    eval_batch_size: int | None = None  # None: 2 * batch_size
    lr: float = 3e-3  # peak learning rate, reached after the warm-up
    min_lr: float = 1e-5  # end of the cosine decay
    warmup_epochs: float = 0.25
    warmup_lr: float = 1e-5  # learning rate at step 0
    weight_decay: float = 0.01  # AdamW; never on norms, biases and other 1-d / 0-d parameters
    betas: tuple[float, float] = (0.9, 0.999)
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    mixup_switch_prob: float = 0.5  # with both on: probability of CutMix for a batch
    loss: str = "mean"  # "mean": CE of the time-averaged logits; "tet": mean over t of CE
    tet_lambda: float = 0.0  # TET's MSE regulariser weight ...
    tet_phi: float = 1.0  # ... towards this constant
    clip_grad: float | None = None  # max global gradient norm (None: no clipping)
    amp: str = "none"  # "bf16" (CUDA or CPU) or "fp16" (CUDA, with a grad scaler)
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA/NCCL only)
    compile: bool = False  # torch.compile the model (compiles on the first steps)
    neuron_kernel: str = "spikingjelly"  # CPU LIF kernel: "fused" / "fused-compiled" (srlib.perf)
    channels_last: bool = False  # NHWC memory format for the convolutions
    stem_once: bool = False  # run the stem once per static image, not T times (same results)
    # checkpoints and feedback
    checkpoint_every: int = 0  # also save last.pth every this many steps (0: epoch ends only)
    eval_every: int = 1  # evaluate every this many epochs (and always after the last)
    resume: str | None = None  # a last.pth to continue from; "auto": this run's, if any
    progress: bool = True  # tqdm progress bars
    tensorboard: bool = True  # TensorBoard events in the run folder
    plots: bool = True  # at the end: curves.png and the per-layer firing rates
    log_every: int = 20  # steps between TensorBoard scalars

    def __post_init__(self):
        checks = [
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 1,
             f"label_smoothing must lie in [0, 1), got {self.label_smoothing}"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix alphas must be >= 0"),
            (self.T >= 1, f"T must be >= 1, got {self.T}"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        """Plain types only (tuples become lists): safe for YAML and ``weights_only`` loads."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def _field_types() -> dict[str, type]:
    return typing.get_type_hints(TrainConfig)


def _coerce(key: str, value, hint):
    """Turn a YAML / CLI value into the field's type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(key, value, args[0])
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        args = typing.get_args(hint)
        item_type = args[0]
        if args[-1] is not Ellipsis and len(items) != len(args):
            raise ValueError(f"{key} needs {len(args)} values, got {items!r}")
        return tuple(_coerce(key, item, item_type) for item in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ValueError(f"{key} must be of type {hint.__name__}, got {value!r}")


def make_config(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from a dict (YAML keys use the field names; ``-`` and ``_`` are
    interchangeable). Unknown keys and ill-typed values raise ``ValueError``."""
    hints = _field_types()
    normalised = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(normalised) - set(hints))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; valid keys: {sorted(hints)}")
    return TrainConfig(**{key: _coerce(key, value, hints[key])
                          for key, value in normalised.items()})


def read_recipe(path: str | Path) -> dict:
    """The key -> value mapping of a YAML recipe."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist (recipes live in configs/)")
    with open(path) as file:
        values = yaml.safe_load(file) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of config keys to values")
    return values


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Read a recipe (default: ``configs/default.yaml``) and apply ``overrides``."""
    values = read_recipe(DEFAULT_RECIPE if path is None else path)
    values.update(overrides)
    try:
        return make_config(values)
    except ValueError as error:
        raise ValueError(f"{path or DEFAULT_RECIPE}: {error}") from None
