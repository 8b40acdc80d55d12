"""Energy estimates from operation counts, under two named conventions.

The SNN literature prices operations with Horowitz's 45 nm figures for 32-bit floats
(M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014):
an addition (accumulate, AC) costs 0.9 pJ, a multiply-accumulate (MAC) 3.7 + 0.9 = 4.6 pJ.
A synaptic operation driven by a binary spike is an addition.

Conventions (per image, all time steps):

    "paper"      E = E_AC * SOPs
                 SpikingResformer's Table 2 (Ti: 2.73 G SOPs -> 2.46 mJ): only the counted
                 layers' SOPs; the stem conv (analog input, real MACs) and the classifier are
                 not charged. The default.
    "with_stem"  E = E_AC * SOPs + E_MAC * (stem MACs over the T steps the model computes)
                 also charges the analog stem conv, which a spiking chip cannot run as
                 additions. The model convolves the repeated static image at every step, so
                 this charges T times the per-step MACs (Ti at 224: 4 x 0.118 G); accounts
                 that convolve a static image once (e.g. Spike-driven Transformer's
                 E_MAC * FL_conv1) charge ``macs_per_step`` of the stem instead.

Neither convention charges batch norm (foldable into the conv at inference), pooling, residual
additions, neuron updates or memory traffic. SpikingJelly 2.0's ``SimpleEnergyProfiler`` does
charge all of those (MACs of every non-spike op at 4.6 pJ, ACs of BN / additions at 0.9 pJ, and
24.96 pJ per byte of weight and membrane traffic), so its totals are several times these.
"""

E_AC_PJ = 0.9  # energy of one 32-bit float addition, 45 nm (Horowitz, ISSCC 2014)
E_MAC_PJ = 4.6  # energy of one 32-bit float multiply-accumulate, 45 nm (Horowitz, ISSCC 2014)
PJ_PER_MJ = 1e9

CONVENTIONS = {
    "paper": "E_AC x SOPs (stem and classifier not charged), as SpikingResformer's Table 2",
    "with_stem": "E_AC x SOPs + E_MAC x stem MACs summed over the T steps",
}


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown energy convention {convention!r}; expected one of "
                         f"{sorted(CONVENTIONS)}")
    return convention


def energy_mj(sops: float, stem_macs: float = 0.0, convention: str = "paper") -> float:
    """Energy in millijoules of ``sops`` synaptic operations (and the stem's MACs).

    Args:
        sops: synaptic operations (additions), e.g. per image summed over T.
        stem_macs: MACs of the analog stem over the same steps; charged only by
            ``"with_stem"``.
        convention: a key of :data:`CONVENTIONS`.
    """
    check_convention(convention)
    picojoules = E_AC_PJ * sops
    if convention == "with_stem":
        picojoules += E_MAC_PJ * stem_macs
    return picojoules / PJ_PER_MJ


def ann_energy_mj(macs_per_step: float) -> float:
    """Energy of the same network run once as an ANN: ``E_MAC x`` its dense MACs of one step
    (the authors' "A/S power ratio" divides this by the paper-convention energy)."""
    return E_MAC_PJ * macs_per_step / PJ_PER_MJ
