"""The training settings the SpikingResformer paper reports for each run that srlib ships a
recipe for, in the recipes' own keys and units, for the table on the recipes page.

Sources: Shi, Hao, Yu, "SpikingResformer: Bridging ResNet and Vision Transformer in Spiking
Neural Networks", CVPR 2024 (arXiv 2403.14302), its experimental settings, and the authors'
configs (github.com/xyshi2000/SpikingResformer, ``configs/``). A setting neither states is left
out (the table shows a dot); Spikformer's baselines and srlib's own default recipe have no
entry.
"""

# ImageNet-1k, 8 GPUs; batch_size is per GPU
_IMAGENET = dict(T=4, img_size=224, epochs=320, warmup_epochs=3, warmup_lr=1e-5, min_lr=1e-5,
                 weight_decay=0.01, label_smoothing=0.1, mixup=0.2, cutmix=1.0)
# CIFAR-10/100 trained directly with Ti* (3x3 stem)
_CIFAR = dict(T=4, img_size=32, epochs=600, batch_size=128, lr=5e-4, mixup=0.5,
              auto_augment="rand-m7-n1-mstd0.5-inc1")
# transfer from ImageNet-pretrained SpikingResformer-S at 128x128
_TRANSFER_CIFAR = dict(model="spikingresformer_s", T=4, img_size=128, lr=1e-4,
                       auto_augment="rand-m9-n1-mstd0.4-inc1")
# DVS sets trained directly: frames by event count; the authors' mixup flag selects a
# soft-target loss on one-hot labels and their DVS loaders never mix, so no smoothing acts
_DVS = dict(T=16, img_size=64, epochs=300, batch_size=8, label_smoothing=0.0)

PAPER = {
    "imagenet_ti": dict(_IMAGENET, model="spikingresformer_ti", batch_size=32, lr=1e-3,
                        auto_augment="rand-m7-mstd0.5-inc1"),
    "imagenet_s": dict(_IMAGENET, model="spikingresformer_s", batch_size=32, lr=1e-3,
                       auto_augment="rand-m7-mstd0.5-inc1"),
    "imagenet_m": dict(_IMAGENET, model="spikingresformer_m", batch_size=28, lr=8e-4,
                       auto_augment="rand-m9-mstd0.5-inc1"),
    "imagenet_l": dict(_IMAGENET, model="spikingresformer_l", batch_size=16, lr=5e-4,
                       auto_augment="rand-m9-n3-mstd0.5-inc1"),
    "cifar10": dict(_CIFAR, model="spikingresformer_cifar"),
    "cifar100": dict(_CIFAR, model="spikingresformer_cifar"),
    "transfer_cifar10": dict(_TRANSFER_CIFAR, epochs=100),
    "transfer_cifar100": dict(_TRANSFER_CIFAR, epochs=150),
    "cifar10dvs": dict(_DVS, lr=5e-4),
    "dvs128gesture": dict(_DVS, model="spikingresformer_dvsg", lr=1e-4),
    "transfer_cifar10dvs": dict(model="spikingresformer_s", T=10, img_size=128,
                                label_smoothing=0.0),
    "transfer_dvs128gesture": dict(model="spikingresformer_s", T=10, img_size=128,
                                   label_smoothing=0.0),
}
