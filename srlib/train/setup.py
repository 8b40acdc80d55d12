"""Building a run's parts from its config: seeds, the model (with optional transfer weights)
and the train/test datasets."""

import random

import numpy as np
import torch
from torch import nn

from srlib.checkpoint import load_checkpoint
from srlib.data import build_dataset, dataset_info, dataset_options
from srlib.models import create_model, get_model_config
from srlib.train.config import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The recipe's model for its dataset (classes, channels, size and T from the config)."""
    info = dataset_info(config.dataset)
    overrides = {}
    if getattr(get_model_config(config.model), "in_channels", info.in_channels) != \
            info.in_channels:
        overrides["in_channels"] = info.in_channels
    model = create_model(config.model, num_classes=config.num_classes or info.num_classes,
                         img_size=config.img_size or info.img_size, T=config.T, **overrides)
    if config.pretrained:
        load_checkpoint(model, config.pretrained, ignore=tuple(config.pretrained_ignore))
    return model.to(device)


# options that only some datasets take: a recipe that sets one for another dataset is an error
_SPECIFIC = ("auto_augment_ops", "normalize_mean", "normalize_std")  # None: not set


def _dataset_options(config: TrainConfig) -> dict:
    """The config's data options that its dataset's builder accepts."""
    accepted = dataset_options(config.dataset)
    values = dict(download=config.download, skip_corrupt=config.skip_corrupt, T=config.T,
                  augment=config.augment, auto_augment=config.auto_augment,
                  color_jitter=config.color_jitter, random_erasing=config.random_erasing,
                  crop_scale_min=config.crop_scale_min, crop_pct=config.crop_pct,
                  auto_augment_ops=config.auto_augment_ops,
                  normalize_mean=config.normalize_mean, normalize_std=config.normalize_std)
    ignored = sorted(key for key in _SPECIFIC if values[key] is not None and key not in accepted)
    if ignored:
        raise ValueError(f"{', '.join(ignored)} set, but dataset {config.dataset!r} does not take "
                         f"{'it' if len(ignored) == 1 else 'them'} (it takes: "
                         f"{', '.join(sorted(accepted))})")
    return {key: value for key, value in values.items() if key in accepted}


def build_train_dataset(config: TrainConfig):
    """The recipe's training set (its augmentation; a fixed random subset with
    ``max_train_samples``)."""
    info = dataset_info(config.dataset)
    train = build_dataset(config.dataset, config.data_root, True, config.img_size or
                          info.img_size, **_dataset_options(config))
    if config.max_train_samples and config.max_train_samples < len(train):
        generator = torch.Generator().manual_seed(config.seed)
        keep = torch.randperm(len(train), generator=generator)[:config.max_train_samples]
        train = torch.utils.data.Subset(train, sorted(keep.tolist()))
    return train


def build_eval_dataset(config: TrainConfig):
    """The recipe's evaluation set (its eval transform; the first ``max_eval_samples``)."""
    info = dataset_info(config.dataset)
    options = _dataset_options(config)
    if "augment" in options:
        options["augment"] = False
    test = build_dataset(config.dataset, config.data_root, False, config.img_size or
                         info.img_size, **options)
    if config.max_eval_samples and config.max_eval_samples < len(test):
        test = torch.utils.data.Subset(test, range(config.max_eval_samples))
    return test


def build_datasets(config: TrainConfig):
    """(train set, test set) of the recipe, with the options its dataset accepts."""
    return build_train_dataset(config), build_eval_dataset(config)
