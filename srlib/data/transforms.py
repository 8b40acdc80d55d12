"""Image and event-frame transforms of the paper's recipes, and batch-level Mixup/CutMix.

Static images (ImageNet, CIFAR) use torchvision's ``transforms.v2``; event frames (CIFAR10-DVS,
DVS128 Gesture) arrive as ``[T, C, H, W]`` arrays and get the authors' augmentations (flip, then
one of roll / rotation / cutout) applied identically at every time step. Fashion-MNIST uses
cheap tensor ops (pad-and-crop, flip) so the default CPU run spends its time in the model.

Every random draw uses torch's global generator, which :class:`SeededDataset` seeds per
sample from ``(seed, epoch, index)``: a sample's augmentation is the same whatever the number
of workers and whether the run was resumed half-way through an epoch.
"""

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# normalisation statistics as in the authors' code
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # over the 60,000 training images
CROP_PCT = 0.95  # eval: resize to img_size / CROP_PCT, center-crop img_size (authors' config)
_SEED_STRIDE = 1_000_003  # a prime: (epoch, index) pairs map to distinct seeds


def imagenet_train_transform(img_size: int = 224, color_jitter: float = 0.4,
                             randaugment_n: int = 2, randaugment_m: int = 7,
                             crop_scale_min: float = 0.08) -> v2.Compose:
    """The paper's ImageNet training pipeline (PIL image -> normalised ``[3, S, S]`` tensor).

    RandomResizedCrop (scale ``crop_scale_min``-1, bicubic), horizontal flip, colour jitter,
    RandAugment (n ops of magnitude m; ``randaugment_n=0`` turns it off), normalisation.
    """
    steps = [v2.RandomResizedCrop(img_size, scale=(crop_scale_min, 1.0),
                                  interpolation=InterpolationMode.BICUBIC),
             v2.RandomHorizontalFlip()]
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    if randaugment_n > 0:
        steps.append(v2.RandAugment(num_ops=randaugment_n, magnitude=randaugment_m,
                                    interpolation=InterpolationMode.BICUBIC))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
              v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def imagenet_eval_transform(img_size: int = 224, crop_pct: float = CROP_PCT) -> v2.Compose:
    """Resize the short side to ``img_size / crop_pct`` (bicubic), center-crop ``img_size``."""
    return v2.Compose([
        v2.Resize(int(img_size / crop_pct), interpolation=InterpolationMode.BICUBIC),
        v2.CenterCrop(img_size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def cifar_transform(train: bool, img_size: int = 32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                    randaugment_n: int = 1, randaugment_m: int = 7) -> v2.Compose:
    """CIFAR as the authors train it: resize to ``img_size`` (bicubic; 32 is a no-op, 128 for
    transfer from ImageNet), and in training a horizontal flip and RandAugment (n ops,
    magnitude m; ``randaugment_n=0`` turns it off). No random crop."""
    steps = []  # PIL until the end: bicubic RandAugment needs PIL images
    if img_size != 32:
        steps.append(v2.Resize(img_size, interpolation=InterpolationMode.BICUBIC))
    if train:
        steps.append(v2.RandomHorizontalFlip())
        if randaugment_n > 0:
            steps.append(v2.RandAugment(num_ops=randaugment_n, magnitude=randaugment_m,
                                        interpolation=InterpolationMode.BICUBIC))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class FashionMNISTTransform:
    """uint8 ``[28, 28]`` -> normalised ``[1, S, S]``: zero-pad (background) to ``img_size``;
    in training, a random shift by up to ``shift`` pixels and a horizontal flip."""

    def __init__(self, train: bool, img_size: int = 32, shift: int = 2, hflip: bool = True):
        if img_size < 28:
            raise ValueError(f"img_size must be >= 28 for Fashion-MNIST, got {img_size}")
        self.train, self.img_size, self.shift, self.hflip = train, img_size, shift, hflip

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32).div(255).sub(FASHION_MNIST_MEAN).div(FASHION_MNIST_STD)
        before = (self.img_size - 28) // 2
        after = self.img_size - 28 - before
        background = -FASHION_MNIST_MEAN / FASHION_MNIST_STD
        shift = self.shift if self.train else 0
        x = F.pad(x[None], (before + shift, after + shift) * 2, value=background)  # [1, S+2s, S+2s]
        if shift:
            top, left = torch.randint(0, 2 * shift + 1, (2,)).tolist()
            x = x[:, top:top + self.img_size, left:left + self.img_size]  # [1, S, S]
        if self.train and self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x.contiguous()


class EventFrameTransform:
    """Event frames ``[T, 2, H, W]`` (counts per polarity) -> ``[T, 3, S, S]``.

    The third channel is the sum of both polarities (the paper's DVS models take 3 input
    channels); frames are resized to ``img_size`` (area averaging). In training, as in the
    authors' DVS augmentation: a horizontal flip (p = 0.5), then ONE of a roll by up to
    ``shift_fraction`` of the size, a rotation by up to ``rotate`` degrees, or a zeroed square
    of side ``cutout_fraction`` of the size; every time step gets the same transform.
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
        x = torch.cat([x, x.sum(1, keepdim=True)], dim=1)  # [T, 3, H, W]
        if x.shape[-2:] != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="area")
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


class SeededDataset(Dataset):
    """Wrap a dataset so that item ``(index, seed)`` is drawn with the CPU generator seeded
    with ``seed``.

    Used with :class:`srlib.data.ResumableSampler`, which yields such pairs: augmentations then
    depend only on (run seed, epoch, index). The global generator is restored afterwards, so
    the caller's random stream is untouched. A plain integer index is passed through unseeded.
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
        state = generator.get_state()
        generator.manual_seed(seed)  # ~1 us; torch.manual_seed also seeds CUDA (~200 us)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)
