"""Make an untrained network fire: set its BN statistics and running firing rates from a batch.

A freshly built network in eval mode normalises with BN's initial statistics (mean 0, variance
1) while its convolutions (weights ~ N(0, 0.02^2)) produce tiny values, so no neuron reaches
threshold and every SOP count is 0. For demonstrations and tests without a checkpoint,
:func:`calibrate` runs one training-mode forward so that each BN layer's running mean and
variance become exactly that batch's statistics and DSSA's running rates that batch's rates
(a fresh, all-zero running rate is initialised from the first batch). It changes the model's
buffers on purpose; never use it on a trained checkpoint you want to measure.
"""

import torch
from torch import nn

from srlib.neurons import reset_states


def calibrate(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Set BN statistics and running firing rates of ``model`` from one batch; returns it.

    Every BN layer is reset and given ``momentum=None`` (cumulative average) for the call, so
    after it ``running_mean`` / ``running_var`` equal the batch's statistics; buffers named
    ``firing_rate_*`` (DSSA) are zeroed first so that they take the batch's rates. Train/eval
    flags and BN momenta are restored afterwards.

    Args:
        model: an (untrained) network.
        inputs: a batch ``[B, C, H, W]`` or ``[T, B, C, H, W]`` on the model's device.
    """
    norms = [module for module in model.modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    was_training = {module: module.training for module in model.modules()}
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    for name, buffer in model.named_buffers():
        if name.rsplit(".", 1)[-1].startswith("firing_rate"):
            buffer.zero_()
    try:
        model.train()
        with torch.no_grad():
            model(inputs)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for module, training in was_training.items():
            module.train(training)
        reset_states(model)
    return model
