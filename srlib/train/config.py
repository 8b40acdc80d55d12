"""The training configuration: one frozen dataclass; YAML recipes map 1:1 onto its fields.

``load_config(recipe, **overrides)`` reads a recipe, applies overrides and checks every key: an
unknown key is an error that lists the valid ones. Recipes ship inside the package
(``srlib.configs``, the repository's ``configs/`` folder): ``load_config("imagenet_ti")`` finds
one by name, and any YAML file works by its path. :class:`TrainConfig`'s defaults ARE the main
job's recipe, ``configs/default.yaml`` (``tests/test_configs.py`` keeps the two equal).
"""

import dataclasses
import importlib.resources
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from srlib.perf import PRESETS, PerfOptions

AMP_MODES = ("none", "bf16", "fp16")
LOSSES = ("mean", "tet")
SCHEDULE_UNITS = ("step", "epoch")
OMP_WAIT_POLICIES = ("passive", "active")
RECIPES_PACKAGE = "srlib.configs"
DEFAULT_RECIPE = "default"


def option(default, help: str):
    """A config field with its ``--help`` text (read by the command line)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults are the main job's (default.yaml)."""

    # run
    name: str = option("fashion_mnist", "the run folder is <output_dir>/<name>")
    output_dir: str = option("runs", "folder of the run folders")
    seed: int = option(0, "seeds data order, augmentation and initialisation")
    device: str = option("auto", '"auto": CUDA when available, else the CPU; or "cpu", '
                         '"cuda:1", ...')
    threads: int = option(0, "torch CPU threads (intra-op); 0 keeps torch's default")
    deterministic: bool = option(False, "deterministic kernels (slower on GPU; the CPU is "
                                 "already)")
    # model
    model: str = option("spikingresformer_fmnist", "a name from srlib.list_models()")
    T: int = option(2, "time steps (frames per sample for the event datasets)")
    img_size: int | None = option(None, "input size; None: the dataset's (32 for padded "
                                  "Fashion-MNIST)")
    num_classes: int | None = option(None, "classifier outputs; None: the dataset's")
    pretrained: str | None = option(None, "transfer learning: start from these weights")
    pretrained_ignore: tuple[str, ...] = option(("classifier.",), "...leaving out these key "
                                                "prefixes")
    # data
    dataset: str = option("fashion-mnist", "fashion-mnist, imagenet, cifar10, cifar100, "
                          "cifar10dvs or dvs128gesture")
    data_root: str | None = option(None, "where the dataset lies; None: <data folder>/<dataset> "
                                   "(srlib.paths.data_dir)")
    download: bool = option(False, "allow torchvision / SpikingJelly to download the dataset")
    workers: int = option(0, "loader processes per training process")
    augment: bool = option(False, "the dataset's training augmentation (false: the eval "
                           "transform)")
    skip_corrupt: bool = option(False, "leave out unreadable images (image folders) with a "
                                "warning")
    auto_augment: str | None = option(None, "timm's RandAugment string, e.g. "
                                      "rand-m7-mstd0.5-inc1 (ImageNet, CIFAR); null: off")
    auto_augment_ops: tuple[str, ...] | None = option(
        None, "RandAugment's ops (timm names) in place of the string's set (CIFAR); "
        "Spikformer's CIFAR-10: Equalize Rotate ShearX TranslateXRel TranslateYRel")
    color_jitter: float = option(0.0, "colour jitter strength (ImageNet, CIFAR); timm's rule: "
                                 "off wherever RandAugment is on")
    random_erasing: float = option(0.0, "probability of timm's random erasing (one box, "
                                   "constant fill)")
    crop_scale_min: float = option(0.08, "ImageNet: smallest area fraction of the random "
                                   "resized crop")
    crop_pct: float = option(0.95, "eval: center crop of img_size out of img_size / crop_pct")
    normalize_mean: tuple[float, float, float] | None = option(
        None, "per-channel mean of the normalisation (CIFAR); None: the dataset's")
    normalize_std: tuple[float, float, float] | None = option(
        None, "per-channel std of the normalisation (CIFAR); None: the dataset's "
        "(Spikformer's CIFAR-10: 0.2470 0.2435 0.2616)")
    max_train_samples: int | None = option(None, "train on a fixed random subset of this size")
    max_eval_samples: int | None = option(None, "evaluate on the first n items (None: all)")
    # optimisation
    epochs: int = option(4, "training epochs")
    batch_size: int = option(128, "per process and micro-batch; the global batch is "
                             "batch_size x accum_steps x processes")
    accum_steps: int = option(1, "gradient accumulation: micro-batches per optimizer step (an "
                              "epoch's last batches mod accum_steps are skipped, as drop_last)")
    eval_batch_size: int | None = option(None, "None: 2 x batch_size")
    lr: float = option(8e-3, "peak learning rate, reached after the warm-up")
    min_lr: float = option(1e-5, "end of the cosine decay")
    warmup_epochs: float = option(0.05, "linear warm-up from warmup_lr, in epochs")
    warmup_lr: float = option(1e-5, "learning rate at step 0")
    schedule_unit: str = option("step", '"step": the cosine moves at every optimizer step; '
                                '"epoch": once per epoch, the warm-up inside the cosine (the '
                                "authors' timm CosineLRScheduler, warmup_prefix=False)")
    cooldown_epochs: int = option(0, "the last epochs (counted in epochs) held at min_lr after "
                                  "the cosine (Spikformer: 10 of 310)")
    weight_decay: float = option(0.01, "AdamW; never on norms, biases and other 1-d / 0-d "
                                 "parameters")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW's betas")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy")
    mixup: float = option(0.0, "Mixup alpha (0: off)")
    cutmix: float = option(0.0, "CutMix alpha (0: off)")
    mixup_switch_prob: float = option(0.5, "with both on: probability of CutMix for a batch")
    mixup_off_epoch: int = option(0, "Mixup/CutMix off from this epoch on (0: never; "
                                  "Spikformer's CIFAR-10: 200)")
    loss: str = option("mean", '"mean": CE of the time-averaged logits; "tet": mean over t of '
                       "CE")
    tet_lambda: float = option(0.0, "TET's MSE regulariser weight ...")
    tet_phi: float = option(1.0, "... towards this constant")
    clip_grad: float | None = option(None, "max global gradient norm (None: no clipping)")
    amp: str = option("none", '"bf16" (CUDA or CPU) or "fp16" (CUDA, with a grad scaler)')
    eval_amp: bool = option(False, "evaluate under amp's autocast too (false: in float32, as "
                            "the authors; low precision can flip spikes at the threshold)")
    sync_bn: bool = option(False, "SyncBatchNorm across processes (CUDA/NCCL only)")
    # speed (results unchanged) and process settings (only when asked)
    perf: PerfOptions | str = option("best", 'speed options (srlib.perf): "best" (the fastest '
                                     'exact ones on the device), "plain", or a mapping of '
                                     "PerfOptions fields")
    tune_allocator: bool = option(False, "keep freed memory in the process (glibc; "
                                  "srlib.perf.tune_cpu_allocator)")
    omp_wait_policy: str | None = option(None, 'restart the CLI with OMP_WAIT_POLICY set: '
                                         '"passive" on a machine whose cores are already busy')
    # run state and feedback
    save_every: int = option(100, "also save the run state (last.pth) every this many steps "
                             "(0: at epoch ends only)")
    eval_every: int = option(1, "evaluate every this many epochs (and always after the last)")
    resume: str | None = option(None, 'a last.pth to continue from; "auto": this run\'s, if '
                                "any")
    progress: bool = option(True, "tqdm progress bars")
    tensorboard: bool = option(True, "TensorBoard events in the run folder")
    plots: bool = option(True, "at the end: curves.png and the per-layer firing rates")
    log_every: int = option(20, "steps between steps.csv rows and TensorBoard scalars")

    def __post_init__(self):
        checks = [
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}"),
            (self.schedule_unit in SCHEDULE_UNITS,
             f"schedule_unit must be one of {SCHEDULE_UNITS}, got {self.schedule_unit!r}"),
            (0 <= self.cooldown_epochs < self.epochs,
             f"cooldown_epochs must lie in [0, epochs = {self.epochs}), got "
             f"{self.cooldown_epochs}"),
            (self.mixup_off_epoch >= 0, f"mixup_off_epoch must be >= 0, got "
             f"{self.mixup_off_epoch}"),
            (self.auto_augment_ops is None or len(self.auto_augment_ops) > 0,
             "auto_augment_ops must name at least one op, or be null"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 1,
             f"label_smoothing must lie in [0, 1), got {self.label_smoothing}"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix alphas must be >= 0"),
            (self.T >= 1, f"T must be >= 1, got {self.T}"),
            (self.save_every >= 0, "save_every must be >= 0"),
            (self.omp_wait_policy in (None, *OMP_WAIT_POLICIES),
             f"omp_wait_policy must be one of {OMP_WAIT_POLICIES} or null, "
             f"got {self.omp_wait_policy!r}"),
            (isinstance(self.perf, PerfOptions) or self.perf in PRESETS,
             f"perf must be a preset {PRESETS} or PerfOptions, got {self.perf!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        """Plain types only (tuples become lists, perf options a mapping): safe for YAML and
        ``weights_only`` loads, and read back by :func:`make_config`."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, PerfOptions):
                value = dataclasses.asdict(value)
            values[field.name] = list(value) if isinstance(value, tuple) else value
        return values


def _coerce(key: str, value, hint):
    """Turn a YAML / CLI value into the field's type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if type(None) in typing.get_args(hint) and (
                value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        if PerfOptions in args:  # a preset name, a mapping of fields, or the options
            if isinstance(value, (dict, PerfOptions)):
                return PerfOptions.from_spec(value)
            return _coerce(key, value, str)
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
    hints = typing.get_type_hints(TrainConfig)
    normalised = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(normalised) - set(hints))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; valid keys: {sorted(hints)}")
    return TrainConfig(**{key: _coerce(key, value, hints[key])
                          for key, value in normalised.items()})


def list_recipes() -> list[str]:
    """Names of the recipes shipped with srlib (``configs/*.yaml``)."""
    folder = importlib.resources.files(RECIPES_PACKAGE)
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def recipe_text(recipe: str | Path) -> tuple[str, str]:
    """(where, YAML text) of a recipe given by file path or by shipped name."""
    path = Path(recipe)
    if path.is_file():
        return str(path), path.read_text()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in list_recipes():
        resource = importlib.resources.files(RECIPES_PACKAGE) / f"{name}.yaml"
        return f"srlib recipe {name}", resource.read_text()
    raise FileNotFoundError(f"recipe {recipe} is neither a YAML file nor a shipped recipe; "
                            f"shipped: {', '.join(list_recipes())}")


def read_recipe(recipe: str | Path) -> dict:
    """The key -> value mapping of a YAML recipe (a file path or a shipped name)."""
    where, text = recipe_text(recipe)
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {where} must be a mapping of config keys to values")
    return values


def load_config(recipe: str | Path | None = None, **overrides) -> TrainConfig:
    """Read a recipe (default: the main job's, ``default``) and apply ``overrides``."""
    recipe = DEFAULT_RECIPE if recipe is None else recipe
    values = read_recipe(recipe)
    values.update(overrides)
    try:
        return make_config(values)
    except ValueError as error:
        raise ValueError(f"{recipe}: {error}") from None
