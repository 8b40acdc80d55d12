"""Training: the engine (AMP, DDP through torchrun, exact resume from the run state, logging),
its frozen config and the command line ``python -m srlib.train --config <recipe>``.
"""

from srlib.train.config import TrainConfig, load_config, make_config
from srlib.train.engine import NonFiniteLossError, Trainer, train
from srlib.train.setup import build_datasets, build_model
from srlib.train.optim import CosineWarmupSchedule, build_optimizer, classification_loss

__all__ = ["CosineWarmupSchedule", "NonFiniteLossError", "TrainConfig", "Trainer",
           "build_datasets", "build_model", "build_optimizer", "classification_loss",
           "load_config", "make_config", "train"]
