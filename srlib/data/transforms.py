"""Image and event-frame transforms of the paper's recipes, and batch-level Mixup/CutMix.

Static images (ImageNet, CIFAR) get exactly the pipeline the authors' ``main.py`` asks timm's
``create_loader`` for (``load_data`` in github.com/xyshi2000/SpikingResformer), built here from
the same timm pieces in the same order:

1. a random resized crop to ``img_size`` (bicubic): ImageNet scale 0.08-1, aspect 3/4-4/3;
   CIFAR the whole image (scale and aspect 1), i.e. a plain bicubic resize for transfer;
2. a horizontal flip with probability 0.5;
3. timm's RandAugment, given by the recipe's timm string (``auto_augment``, e.g.
   ``rand-m7-mstd0.5-inc1``: magnitude 7 out of 10, each picked op applied with probability
   0.5, the magnitude redrawn per op from a Gaussian of std 0.5, the 'increasing' op set,
   fills with the mean pixel; Spikformer's CIFAR-10 code draws from its own five ops,
   ``auto_augment_ops``) -- or, when ``auto_augment`` is off, colour jitter: timm turns
   colour jitter off under RandAugment, so the authors' ImageNet ``color_jitter=0.4`` is
   inactive;
4. conversion to a tensor and normalisation by the dataset's mean and std (or the recipe's:
   Spikformer's CIFAR-10 std differs from the authors');
5. optionally, timm's random erasing (Spikformer's recipes; the authors' ``cutout`` is off).

Evaluation resizes the short side to ``img_size / crop_pct`` (bicubic) and center-crops
``img_size``. Event frames (CIFAR10-DVS, DVS128 Gesture) arrive as ``[T, 2, H, W]`` and get the
authors' bilinear antialiased resize and DVS augmentation (flip, then one of roll / rotation /
cutout), identical at every time step. Fashion-MNIST uses cheap tensor ops (pad-and-crop, flip)
so the default CPU run spends its time in the model.

Random draws come from three generators: torch's (flips, colour jitter, the DVS and
Fashion-MNIST transforms), Python's ``random`` (timm's crop, RandAugment's magnitudes and
probabilities, random erasing) and numpy's global one (RandAugment's choice of ops).
:class:`SeededDataset` seeds all three per sample from ``(seed, epoch, index)``: a sample's
augmentation is the same whatever the number of workers and whether the run was resumed
half-way through an epoch.
"""

import math
import random
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# normalisation statistics as in the authors' code
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # over the 60,000 training images
# the authors' image pipelines (main.py, load_data): every resize bicubic, flips p = 0.5
INTERPOLATION = "bicubic"
HFLIP_PROBABILITY = 0.5
IMAGENET_CROP_SCALE, IMAGENET_CROP_RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # crop area, aspect
CIFAR_CROP_SCALE = CIFAR_CROP_RATIO = (1.0, 1.0)  # the whole image, resized to img_size
CROP_PCT = 0.95  # ImageNet eval: resize to img_size / CROP_PCT, center-crop img_size
CIFAR_CROP_PCT = 1.0  # CIFAR eval: resize to img_size, nothing cropped
IMAGENET_AUTO_AUGMENT = "rand-m7-mstd0.5-inc1"  # Ti and S (configs/main/spikingresformer_ti.yaml)
CIFAR_AUTO_AUGMENT = "rand-m7-n1-mstd0.5-inc1"  # direct training (configs/direct_training)
# random erasing as both the authors' `cutout` and Spikformer's configs set it (timm's names:
# re_mode, re_count): one box per image, filled with 0 (the mean pixel after normalisation)
RANDOM_ERASING_MODE, RANDOM_ERASING_COUNT = "const", 1
TRANSLATE_FRACTION = 0.45  # timm: absolute translations reach 45 % of the image side
# timm RandAugment string sections: m magnitude (of 10), n ops per image, mstd magnitude noise,
# mmax magnitude bound, inc the 'increasing' op set, p probability per op, t<name> op set
_RAND_SECTIONS = {"m": int, "n": int, "mstd": float, "mmax": int, "inc": int, "p": float}
_RAND_OP_SETS = ("weights", "3a", "3aw")
_RAND_EXAMPLE = ("expected a timm RandAugment string: 'rand' then '-'-separated sections "
                 "m<int> (magnitude 0-10), n<int> (ops per image), mstd<float> (magnitude "
                 "noise), mmax<int>, inc<0|1> (increasing op set), p<float> (probability per "
                 "op), t<weights|3a|3aw>; e.g. 'rand-m7-mstd0.5-inc1'")
# Spikformer's CIFAR-10 RandAugment op list (github.com/ZK-Zhou/spikformer, cifar10/aa_snn.py,
# _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS: the same five) and its normalisation std
SPIKFORMER_CIFAR_OPS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
SPIKFORMER_CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # cifar10/cifar10.yml
_SEED_STRIDE = 1_000_003  # a prime: (epoch, index) pairs map to distinct seeds
_NUMPY_SEED_TAG = 0x6E756D70  # extra key word: numpy's MT19937 state differs from Python's


def check_auto_augment(auto_augment: str | None) -> None:
    """Raise ``ValueError`` unless ``auto_augment`` is off (``None`` or ``""``, as in timm) or a
    timm RandAugment string whose every section timm understands (timm itself skips sections
    without a number and reads unknown op-set names as the default set, silently)."""
    if auto_augment is None or auto_augment == "":
        return
    if not isinstance(auto_augment, str):
        raise ValueError(f"auto_augment must be a string or None, got "
                         f"{type(auto_augment).__name__} {auto_augment!r}; {_RAND_EXAMPLE}")
    name, *sections = auto_augment.split("-")
    if name != "rand":
        raise ValueError(f"unknown augmentation {auto_augment!r} (only RandAugment is "
                         f"supported): {_RAND_EXAMPLE}")
    for section in sections:
        if section.startswith("t"):  # timm reads any section starting with 't' as an op set
            if section[1:] not in _RAND_OP_SETS:
                raise ValueError(f"unknown op set {section!r} in auto_augment "
                                 f"{auto_augment!r}; {_RAND_EXAMPLE}")
            continue
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        if match is None or match[1] not in _RAND_SECTIONS:
            raise ValueError(f"unknown section {section!r} in auto_augment {auto_augment!r}; "
                             f"{_RAND_EXAMPLE}")
        kind = _RAND_SECTIONS[match[1]]
        try:
            kind(match[2])
        except ValueError:
            raise ValueError(f"section {section!r} in auto_augment {auto_augment!r} needs "
                             f"{kind.__name__} after {match[1]!r}; {_RAND_EXAMPLE}") from None


def check_rand_augment_ops(ops) -> None:
    """Raise ``ValueError`` unless ``ops`` is None or a non-empty list of timm RandAugment op
    names (``timm.data.auto_augment.NAME_TO_OP``)."""
    if ops is None:
        return
    from timm.data.auto_augment import NAME_TO_OP

    if isinstance(ops, str) or not ops:
        raise ValueError(f"auto_augment_ops must be a non-empty list of timm op names, got "
                         f"{ops!r}; e.g. {list(SPIKFORMER_CIFAR_OPS)}")
    unknown = [name for name in ops if name not in NAME_TO_OP]
    if unknown:
        raise ValueError(f"unknown RandAugment op(s) {unknown} in auto_augment_ops; timm's ops: "
                         f"{sorted(NAME_TO_OP)}")


def check_normalization(name: str, values, positive: bool = False) -> None:
    """Raise ``ValueError`` unless ``values`` is None or three numbers (per RGB channel)."""
    if values is None:
        return
    numbers = [value for value in values if isinstance(value, (int, float))] \
        if isinstance(values, (list, tuple)) else []
    if len(numbers) != 3 or len(values) != 3 or (positive and min(numbers) <= 0):
        raise ValueError(f"{name} must be three {'positive ' if positive else ''}numbers (one "
                         f"per RGB channel) or None, got {values!r}")


def _check_fraction(name: str, value: float, low: float = 0.0) -> None:
    if not isinstance(value, (int, float)) or not low <= value <= 1:
        raise ValueError(f"{name} must be a number in [{low}, 1], got {value!r}")


def _posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize op, with Pillow 12's result at 0 bits kept: a black image.

    timm's PosterizeIncreasing keeps ``4 - int(magnitude * 0.4)`` bits, 0 at magnitude 10,
    which the magnitude noise reaches (m9 with std 0.5: 2 % of its draws). Pillow up to 12
    returned a black image for 0 bits; Pillow 13 raises ``ValueError`` and would stop training.
    """
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)  # every channel 0
    return ImageOps.posterize(image, bits_to_keep)


def rand_augment(auto_augment: str, img_size: int, mean, ops=None):
    """timm's RandAugment built from its string, with the settings timm's ``create_transform``
    adds: translations up to 45 % of ``img_size`` (absolute ops), fills with the ``mean``
    pixel, bicubic resampling. Its ops draw from Python's ``random``, its op choice from numpy.
    Posterize keeps Pillow 12's black image at 0 bits (see :func:`_posterize`). ``ops``, a
    list of timm op names, replaces the string's op set (timm's ``transforms`` argument; what
    Spikformer's copy of timm hard-codes for CIFAR-10).

    timm is imported here, not at the top: importing it loads timm's model zoo (seconds), which
    the Fashion-MNIST and DVS pipelines do not need.
    """
    from timm.data.auto_augment import posterize, rand_augment_transform
    from timm.data.transforms import str_to_pil_interp

    check_auto_augment(auto_augment)
    check_rand_augment_ops(ops)
    hparams = dict(translate_const=int(img_size * TRANSLATE_FRACTION),
                   img_mean=tuple(min(255, round(255 * value)) for value in mean),
                   interpolation=str_to_pil_interp(INTERPOLATION))
    transform = rand_augment_transform(auto_augment, hparams,
                                       transforms=None if ops is None else list(ops))
    for op in transform.ops:
        if op.aug_fn is posterize:
            op.aug_fn = _posterize
    return transform


def image_train_transform(img_size: int, mean, std, crop_scale, crop_ratio,
                          auto_augment: str | None = None, color_jitter: float = 0.0,
                          random_erasing: float = 0.0,
                          auto_augment_ops=None) -> transforms.Compose:
    """The authors' training pipeline for a PIL image -> normalised ``[3, S, S]`` tensor (the
    steps of the module docstring; what timm's ``create_transform`` builds for their arguments).

    Args:
        img_size: output side S.
        mean, std: normalisation statistics (per channel, of pixel values in [0, 1]).
        crop_scale: range of the crop's area as a fraction of the image's.
        crop_ratio: range of the crop's aspect ratio.
        auto_augment: timm RandAugment string (see :func:`check_auto_augment`); None: off.
        color_jitter: brightness, contrast and saturation jitter, used only when
            ``auto_augment`` is off or uses a 3-Augment op set (timm's rule); 0: none.
        random_erasing: probability of erasing one box (timm's RandomErasing, 'const' mode);
            0: off.
        auto_augment_ops: timm op names replacing the string's op set; None: timm's set.
    """
    from timm.data.random_erasing import RandomErasing
    from timm.data.transforms import RandomResizedCropAndInterpolation

    check_auto_augment(auto_augment)
    if not isinstance(color_jitter, (int, float)) or color_jitter < 0:
        raise ValueError(f"color_jitter must be a number >= 0, got {color_jitter!r}")
    _check_fraction("random_erasing", random_erasing)
    steps = [RandomResizedCropAndInterpolation(img_size, scale=tuple(crop_scale),
                                               ratio=tuple(crop_ratio),
                                               interpolation=INTERPOLATION),
             transforms.RandomHorizontalFlip(HFLIP_PROBABILITY)]
    if auto_augment:
        steps.append(rand_augment(auto_augment, img_size, mean, auto_augment_ops))
    # timm's rule: no colour jitter under RandAugment, except with its 3-Augment op sets
    if color_jitter > 0 and (not auto_augment or "3a" in auto_augment):
        steps.append(transforms.ColorJitter(color_jitter, color_jitter, color_jitter))
    # ToTensor (a division by 255) as timm: v2's ToDtype multiplies by 1/255, 1 ulp apart
    steps += [transforms.ToTensor(), transforms.Normalize(torch.tensor(mean), torch.tensor(std))]
    if random_erasing > 0:
        steps.append(RandomErasing(random_erasing, mode=RANDOM_ERASING_MODE,
                                   max_count=RANDOM_ERASING_COUNT, device="cpu"))
    return transforms.Compose(steps)


def image_eval_transform(img_size: int, mean, std, crop_pct: float) -> transforms.Compose:
    """Resize the short side to ``floor(img_size / crop_pct)`` (bicubic), center-crop
    ``img_size``, normalise: timm's evaluation pipeline."""
    _check_fraction("crop_pct", crop_pct, low=1e-3)
    resize_size = math.floor(img_size / crop_pct)
    return transforms.Compose([
        transforms.Resize(resize_size, interpolation=InterpolationMode.BICUBIC),
        transforms.CenterCrop(img_size), transforms.ToTensor(),
        transforms.Normalize(torch.tensor(mean), torch.tensor(std))])


def imagenet_train_transform(img_size: int = 224, auto_augment: str | None = IMAGENET_AUTO_AUGMENT,
                             color_jitter: float = 0.4, random_erasing: float = 0.0,
                             crop_scale_min: float = IMAGENET_CROP_SCALE[0]) -> transforms.Compose:
    """The authors' ImageNet training pipeline: crop of area ``crop_scale_min``-1 and aspect
    3/4-4/3 (Spikformer's ImageNet config uses ``crop_scale_min=1``), flip, RandAugment or
    colour jitter, normalisation, random erasing (see :func:`image_train_transform`)."""
    return image_train_transform(img_size, IMAGENET_MEAN, IMAGENET_STD, (crop_scale_min, 1.0),
                                 IMAGENET_CROP_RATIO, auto_augment, color_jitter, random_erasing)


def imagenet_eval_transform(img_size: int = 224, crop_pct: float = CROP_PCT) -> transforms.Compose:
    """Resize the short side to ``img_size / crop_pct`` (bicubic), center-crop ``img_size``."""
    return image_eval_transform(img_size, IMAGENET_MEAN, IMAGENET_STD, crop_pct)


def cifar_transform(train: bool, img_size: int = 32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                    auto_augment: str | None = CIFAR_AUTO_AUGMENT, color_jitter: float = 0.0,
                    random_erasing: float = 0.0, crop_pct: float = CIFAR_CROP_PCT,
                    auto_augment_ops=None) -> transforms.Compose:
    """CIFAR as the authors train it: the whole image resized to ``img_size`` (bicubic; 32 is
    a no-op, 128 for transfer from ImageNet), and in training a flip and RandAugment (or colour
    jitter), no random crop; evaluation resizes and center-crops at ``crop_pct``."""
    if train:
        return image_train_transform(img_size, mean, std, CIFAR_CROP_SCALE, CIFAR_CROP_RATIO,
                                     auto_augment, color_jitter, random_erasing,
                                     auto_augment_ops)
    return image_eval_transform(img_size, mean, std, crop_pct)


class FashionMNISTTransform:
    """uint8 ``[28, 28]`` -> normalised ``[1, S, S]``: zero-pad (background) to ``img_size``;
    in training, a random shift by up to ``shift`` pixels and a horizontal flip.

    Without augmentation the map draws no random numbers and :meth:`batch` applies it to a
    whole batch at once (what :class:`srlib.data.FashionMNIST` loads batches with: one call
    instead of one per image, 0.5 against 2.4 ms for 64 images on one core, the same values bit
    for bit)."""

    def __init__(self, train: bool, img_size: int = 32, shift: int = 2, hflip: bool = True):
        if img_size < 28:
            raise ValueError(f"img_size must be >= 28 for Fashion-MNIST, got {img_size}")
        self.train, self.img_size, self.shift, self.hflip = train, img_size, shift, hflip

    @property
    def random(self) -> bool:
        """Whether the map draws random numbers (a shift or a flip in training)."""
        return self.train and (self.shift > 0 or self.hflip)

    def _normalise_pad(self, images: torch.Tensor, shift: int) -> torch.Tensor:
        """uint8 ``[..., 28, 28]`` -> normalised, padded to ``img_size + 2 shift``."""
        x = images.to(torch.float32).div(255).sub(FASHION_MNIST_MEAN).div(FASHION_MNIST_STD)
        before = (self.img_size - 28) // 2
        after = self.img_size - 28 - before
        background = -FASHION_MNIST_MEAN / FASHION_MNIST_STD
        return F.pad(x, (before + shift, after + shift) * 2, value=background)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        shift = self.shift if self.train else 0
        x = self._normalise_pad(image[None], shift)  # [1, S+2s, S+2s]
        if shift:
            top, left = torch.randint(0, 2 * shift + 1, (2,)).tolist()
            x = x[:, top:top + self.img_size, left:left + self.img_size]  # [1, S, S]
        if self.train and self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x.contiguous()

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 28, 28]`` -> ``[B, 1, S, S]``, for a map without augmentation."""
        if self.random:
            raise ValueError("batch() applies the map without augmentation; this one shifts or "
                             "flips each image with its own random draws: call it per image")
        if images.dim() != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"expected uint8 images [B, 28, 28], got {tuple(images.shape)}")
        return self._normalise_pad(images[:, None], 0).contiguous()


class EventFrameTransform:
    """Event frames ``[T, 2, H, W]`` (counts per polarity) -> ``[T, 3, S, S]``.

    Frames are resized to ``img_size`` as the authors do (torchvision's ``Resize`` with
    ``antialias=True``: bilinear, antialiased; a no-op at the same size), then the third
    channel is the sum of both polarities (the paper's DVS models take 3 input channels). In
    training, as in the authors' DVS augmentation: a horizontal flip (p = 0.5), then ONE of a
    roll by up to ``shift_fraction`` of the size, a rotation by up to ``rotate`` degrees, or a
    zeroed square of side ``cutout_fraction`` of the size; every time step gets the same
    transform. (The authors sum the polarities after augmenting; flips, rolls, nearest-pixel
    rotations and zeroed squares move or zero pixels only, so the order changes nothing.)
    """

    def __init__(self, train: bool, img_size: int = 64, shift_fraction: float = 1 / 3,
                 rotate: float = 30.0, cutout_fraction: float = 1 / 3):
        self.train, self.img_size = train, img_size
        self.shift_fraction, self.rotate, self.cutout_fraction = (shift_fraction, rotate,
                                                                  cutout_fraction)

    def __call__(self, frames) -> torch.Tensor:
        x = torch.as_tensor(frames, dtype=torch.float32)
        if x.dim() != 4 or x.shape[1] != 2:
            raise ValueError(f"expected event frames [T, 2, H, W], got shape {tuple(x.shape)}")
        x = v2.functional.resize(x, [self.img_size, self.img_size], antialias=True,
                                 interpolation=InterpolationMode.BILINEAR)  # [T, 2, S, S]
        x = torch.cat([x, x.sum(1, keepdim=True)], dim=1)  # [T, 3, S, S]
        if not self.train:
            return x
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        S = self.img_size
        choice = int(torch.randint(0, 3, ()))
        if choice == 0:
            shift = int(S * self.shift_fraction)
            dy, dx = torch.randint(-shift, shift + 1, (2,)).tolist()
            x = x.roll((dy, dx), dims=(-2, -1))
        elif choice == 1:
            angle = float(torch.empty(()).uniform_(-self.rotate, self.rotate))
            x = v2.functional.rotate(x, angle)
        else:
            half = int(S * self.cutout_fraction) // 2
            top, left = torch.randint(0, S, (2,)).tolist()
            x = x.clone()
            x[..., max(top - half, 0):top + half, max(left - half, 0):left + half] = 0
        return x


def mixup_cutmix(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 switch_prob: float = 0.5):
    """Batch transform ``(images [B, ...], labels [B]) -> (mixed images, soft labels [B, K])``.

    With both alphas positive, one of the two is picked per batch (CutMix with probability
    ``switch_prob``), as timm does. Returns ``None`` when both are off.
    """
    choices, weights = [], []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        weights.append(1 - switch_prob if cutmix_alpha > 0 else 1.0)
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        weights.append(switch_prob if mixup_alpha > 0 else 1.0)
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices, p=weights)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch."""
    return ((seed * _SEED_STRIDE + epoch) * _SEED_STRIDE + index) % 2**63


def _numpy_seed(seed: int) -> list[int]:
    """numpy's key for ``seed``: its two 32-bit words and a tag word. Python's ``random.seed``
    feeds the same MT19937 initialisation with the seed's words alone, so without the tag both
    streams would be identical (tying RandAugment's op choice to its op draws)."""
    return [seed & 0xFFFFFFFF, seed >> 32, _NUMPY_SEED_TAG]


class SeededDataset(Dataset):
    """Wrap a dataset so that item ``(index, seed)`` is drawn with every generator the
    transforms use seeded from ``seed``: torch's CPU generator, Python's ``random`` and numpy's
    global generator (timm's crop and RandAugment draw from the last two).

    Used with :class:`srlib.data.ResumableSampler`, which yields such pairs: augmentations then
    depend only on (run seed, epoch, index). The generators are restored afterwards, so the
    caller's random streams are untouched. A plain integer index is passed through unseeded.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.dataset[key]
        index, seed = key
        generator = torch.default_generator  # the CPU generator behind torch.rand & co.
        states = generator.get_state(), random.getstate(), np.random.get_state()
        generator.manual_seed(seed)  # ~1 us; torch.manual_seed also seeds CUDA (~200 us)
        random.seed(seed)
        np.random.seed(_numpy_seed(seed))
        try:
            return self.dataset[index]
        finally:
            generator.set_state(states[0])
            random.setstate(states[1])
            np.random.set_state(states[2])

    def __getitems__(self, keys: list) -> list:
        """A batch of items (what ``DataLoader`` asks for): plain indices go in one call to the
        dataset's own ``__getitems__`` where it has one; ``(index, seed)`` pairs item by item."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems) and all(isinstance(key, int) for key in keys):
            return getitems(keys)
        return [self[key] for key in keys]
