"""srlib: SpikingResformer (Shi, Hao, Yu, CVPR 2024) for learning, reproduction and research.

Shapes are time-major everywhere: images ``[T, B, C, H, W]``, tokens ``[T, B, C, N]``, heads
``[T, B, h, d, N]``.
"""

from srlib import paths
from srlib.checkpoint import CheckpointError, load_checkpoint
from srlib.models import count_parameters, create_model, list_models

__version__ = "0.1.0"
__all__ = ["CheckpointError", "paths", "count_parameters", "create_model", "list_models",
           "load_checkpoint"]
