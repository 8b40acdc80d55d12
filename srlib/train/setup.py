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


def build_datasets(config: TrainConfig):
    """(train set, test set) of the recipe, with the options its dataset accepts."""
    info = dataset_info(config.dataset)
    accepted = dataset_options(config.dataset)
    values = dict(download=config.download, skip_corrupt=config.skip_corrupt, T=config.T,
                  augment=config.augment, auto_augment=config.auto_augment,
                  color_jitter=config.color_jitter, random_erasing=config.random_erasing,
                  crop_scale_min=config.crop_scale_min, crop_pct=config.crop_pct)
    options = {key: value for key, value in values.items() if key in accepted}
    size = config.img_size or info.img_size
    train = build_dataset(config.dataset, config.data_root, True, size, **options)
    test = build_dataset(config.dataset, config.data_root, False, size,
                         **{**options, "augment": False})
    if config.max_train_samples and config.max_train_samples < len(train):
        generator = torch.Generator().manual_seed(config.seed)
        keep = torch.randperm(len(train), generator=generator)[:config.max_train_samples]
        train = torch.utils.data.Subset(train, sorted(keep.tolist()))
    if config.max_eval_samples and config.max_eval_samples < len(test):
        test = torch.utils.data.Subset(test, range(config.max_eval_samples))
    return train, test
