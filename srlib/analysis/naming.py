"""Where a layer sits in the network: stage, block and a short ``kind`` label for tables.

Labels are read off the module tree, so they work for any srlib model:

    layers.0.0.activation_in     stage 0, block 0, kind "dssa.in"
    layers.0.0.matmul1           stage 0, block 0, kind "dssa.matmul1"
    layers.1.2.conv.0.0          stage 1, block 2, kind "gwffn.conv"
    layers.1.0.activation        stage 1, block 0, kind "downsample"
    blocks.3.attn.q_lif          stage -, block 3, kind "ssa.q"       (Spikformer)
    prologue.0, classifier       stage -, block -, kind "prologue", "classifier"

``kind`` is the type of the nearest enclosing module that is not a plain container
(``Sequential``, ``ModuleList``, ``ModuleDict``), lower-cased without a trailing "layer", then the
first attribute name below it, without an ``activation`` prefix or a ``_lif`` suffix.
"""

from dataclasses import dataclass

from torch import nn

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class LayerInfo:
    """Position of one module: ``stage`` and ``block`` are ``None`` outside the stages."""

    name: str
    stage: int | None
    block: int | None
    kind: str
    num_heads: int | None  # heads of the enclosing attention block, if any


def _short_type(module: nn.Module) -> str:
    name = type(module).__name__.lower()
    return name[: -len("layer")] if name.endswith("layer") and len(name) > 5 else name


def _short_attribute(attribute: str) -> str:
    if attribute == "activation":
        return ""
    attribute = attribute.removeprefix("activation_")
    return attribute.removesuffix("_lif")


def describe(model: nn.Module, name: str) -> LayerInfo:
    """Stage, block, kind and head count of the submodule ``name`` of ``model``.

    Args:
        model: the whole network.
        name: a name from ``model.named_modules()``.
    """
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{name!r} is not a submodule of {type(model).__name__}")
    parts = name.split(".") if name else []
    # the nearest enclosing module that is not a plain container (the model itself at worst)
    depth = len(parts) - 1
    while depth > 0 and isinstance(modules[".".join(parts[:depth])], CONTAINERS):
        depth -= 1
    owner = modules[".".join(parts[:depth])] if depth > 0 else model
    attribute = _short_attribute(parts[depth]) if parts else ""
    if owner is model:
        kind = attribute or type(model).__name__.lower()
    else:
        kind = ".".join(part for part in (_short_type(owner), attribute) if part)
    numbers = [int(part) for part in parts[:depth] if part.isdigit()]
    stage = numbers[-2] if len(numbers) >= 2 else None
    block = numbers[-1] if numbers else None
    num_heads = None
    for end in range(len(parts) - 1, -1, -1):  # nearest ancestor (or self) with num_heads
        candidate = modules[".".join(parts[:end])] if end > 0 else model
        if isinstance(getattr(candidate, "num_heads", None), int):
            num_heads = candidate.num_heads
            break
    return LayerInfo(name, stage, block, kind, num_heads)
