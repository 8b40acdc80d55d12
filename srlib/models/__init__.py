"""Model zoo and registry: ``create_model``, ``list_models``, ``count_parameters``.

Each registered name maps to a model class and a frozen config; ``create_model`` copies the
config with the overrides it is given (``num_classes``, ``img_size``, ``T`` or any config field).
"""

import dataclasses

from torch import nn

from srlib.models.spikformer import SPIKFORMER_VARIANTS, Spikformer, SpikformerConfig
from srlib.models.spikingresformer import (VARIANTS, DownsampleLayer, GWFFN, SpikingResformer,
                                           SpikingResformerConfig)

_REGISTRY: dict[str, tuple[type[nn.Module], object]] = {}


def register_model(name: str, model_cls: type[nn.Module], config) -> None:
    """Add ``name`` to the zoo: ``model_cls(config)`` builds it."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = (model_cls, config)


def list_models(pattern: str = "") -> list[str]:
    """Registered model names (containing ``pattern``), sorted."""
    return sorted(name for name in _REGISTRY if pattern in name)


def get_model_config(name: str):
    """The default config of a registered model."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {list_models()}")
    return _REGISTRY[name][1]


def create_model(name: str, *, num_classes: int | None = None, img_size: int | None = None,
                 T: int | None = None, **overrides) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`, e.g. ``"spikingresformer_ti"``.
        num_classes: classifier outputs; ``None`` keeps the variant's (1000 for ImageNet).
        img_size: nominal input size; ``None`` keeps the variant's (224 for ImageNet).
        T: time steps for static input; ``None`` keeps the variant's (4).
        **overrides: any other field of the variant's config, e.g. ``attention="ssa"``.
    """
    config = get_model_config(name)
    model_cls = _REGISTRY[name][0]
    given = dict(num_classes=num_classes, img_size=img_size, T=T)
    overrides.update({key: value for key, value in given.items() if value is not None})
    fields = {field.name for field in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; expected some of "
                         f"{sorted(fields)}")
    return model_cls(dataclasses.replace(config, **overrides))


def count_parameters(model: nn.Module, include_bn_affine: bool = True) -> int:
    """Number of parameters; ``include_bn_affine=False`` leaves out BatchNorm's weight and bias
    (the convention of the paper's parameter column for Ti and M)."""
    total = sum(p.numel() for p in model.parameters())
    if not include_bn_affine:
        total -= sum(p.numel() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     for p in m.parameters(recurse=False))
    return total


for _name, _config in VARIANTS.items():
    register_model(_name, SpikingResformer, _config)
for _name, _config in SPIKFORMER_VARIANTS.items():
    register_model(_name, Spikformer, _config)

__all__ = ["GWFFN", "DownsampleLayer", "Spikformer", "SpikformerConfig", "SpikingResformer",
           "SpikingResformerConfig",
           "count_parameters", "create_model", "get_model_config", "list_models",
           "register_model"]
