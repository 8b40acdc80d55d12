"""Training: the engine (AMP, DDP through torchrun, exact resume from the run state, logging),
its frozen config and the command line ``python -m srlib.train --config <recipe>``.
"""

from srlib.train.config import TrainConfig, load_config, make_config
from srlib.train.engine import Trainer, train
from srlib.train.finite import (NonFiniteBatchError, NonFiniteError, NonFiniteGradientError,
                                NonFiniteLossError, NonFiniteStateError)
from srlib.train.setup import build_datasets, build_eval_dataset, build_model
from srlib.train.optim import (CosineWarmupSchedule, EpochCosineSchedule, build_optimizer,
                               build_schedule, classification_loss)

__all__ = ["CosineWarmupSchedule", "EpochCosineSchedule", "NonFiniteBatchError",
           "NonFiniteError", "NonFiniteGradientError", "NonFiniteLossError",
           "NonFiniteStateError", "TrainConfig", "Trainer", "build_datasets",
           "build_eval_dataset", "build_model", "build_optimizer", "build_schedule",
           "classification_loss", "load_config", "make_config", "train"]
