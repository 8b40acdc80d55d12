"""Spike analysis: firing rates, synaptic operations (SOPs), dense MACs and energy.

    from srlib.analysis import FiringRateMonitor, profile

    with FiringRateMonitor(model) as monitor:      # rates over any number of batches
        model(images)
    monitor.table()                                # one row per spiking neuron layer

    result = profile(model, images)                # SOPs / MACs / energy, the paper's way
    result.layers, result.totals

Modules: :mod:`~srlib.analysis.monitor` (rates), :mod:`~srlib.analysis.ops` (counting),
:mod:`~srlib.analysis.energy` (constants and conventions), :mod:`~srlib.analysis.profile`
(one call that does it all), :mod:`~srlib.analysis.calibrate` (make an untrained network fire,
for demonstrations); ``python -m srlib.analysis`` is the command line.
"""

from srlib.analysis.calibrate import calibrate
from srlib.analysis.energy import CONVENTIONS, E_AC_PJ, E_MAC_PJ, ann_energy_mj, energy_mj
from srlib.analysis.monitor import FiringRateMonitor
from srlib.analysis.naming import LayerInfo, describe
from srlib.analysis.ops import OpCounter, conv_sops, linear_sops, matmul_sops
from srlib.analysis.profile import Profile, format_profile, profile, profile_batches

__all__ = ["CONVENTIONS", "E_AC_PJ", "E_MAC_PJ", "FiringRateMonitor", "LayerInfo", "OpCounter",
           "Profile", "ann_energy_mj", "calibrate", "conv_sops", "describe", "energy_mj",
           "format_profile", "linear_sops", "matmul_sops", "profile", "profile_batches"]
