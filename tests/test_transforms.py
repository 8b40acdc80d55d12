"""srlib.data.transforms against the authors' pipelines: timm's create_transform with the
arguments their main.py passes (github.com/xyshi2000/SpikingResformer, ``load_data``), the
event-frame resize of their DVS loaders, and the per-sample seeding of every generator.

The recipe tests read the augmentation keys of ``configs/<recipe>.yaml`` and fail when one is
missing: each recipe must state the pipeline it runs.
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import timm.data as timm_data
import yaml
from PIL import Image, ImageOps
from timm.data.auto_augment import rand_augment_transform
from timm.data.loader import PrefetchLoader
from tiny_datasets import write_cifar, write_image_folder
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import v2

from srlib.data import build_dataset, build_loader
from srlib.data.transforms import (EventFrameTransform, SeededDataset, _posterize,
                                   check_auto_augment, image_train_transform)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE_KEYS = ("auto_augment", "color_jitter", "random_erasing", "img_size", "crop_pct")

# --- the authors' arguments to timm's create_transform (main.py, load_data) -------------------
# cutout is False in every config of theirs, so re_prob stays 0; their ImageNet loader passes
# color_jitter=0.4 and their CIFAR loaders 0.0 (timm drops either under RandAugment).
IMAGENET_ARGS = dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.0,
                     color_jitter=0.4, interpolation="bicubic", mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225), re_prob=0.0)
CIFAR_ARGS = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.5, vflip=0.0, color_jitter=0.0,
                  interpolation="bicubic", re_prob=0.0)
CIFAR10_STATS = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
CIFAR100_STATS = dict(mean=tuple(n / 255 for n in (129.3, 124.1, 112.4)),
                      std=tuple(n / 255 for n in (68.2, 65.4, 70.4)))
AUTHORS = {  # recipe -> (create_transform arguments for training, eval crop_pct)
    # configs/main/spikingresformer_{ti,s,m,l}.yaml: `augment`, input_size [3, 224, 224]
    "imagenet_ti": (dict(IMAGENET_ARGS, input_size=(3, 224, 224),
                         auto_augment="rand-m7-mstd0.5-inc1"), 0.95),
    "imagenet_s": (dict(IMAGENET_ARGS, input_size=(3, 224, 224),
                        auto_augment="rand-m7-mstd0.5-inc1"), 0.95),
    "imagenet_m": (dict(IMAGENET_ARGS, input_size=(3, 224, 224),
                        auto_augment="rand-m9-mstd0.5-inc1"), 0.95),
    "imagenet_l": (dict(IMAGENET_ARGS, input_size=(3, 224, 224),
                        auto_augment="rand-m9-n3-mstd0.5-inc1"), 0.95),
    # configs/direct_training/cifar{10,100}.yaml: input_size [3, 32, 32]
    "cifar10": (dict(CIFAR_ARGS, **CIFAR10_STATS, input_size=(3, 32, 32),
                     auto_augment="rand-m7-n1-mstd0.5-inc1"), 1.0),
    "cifar100": (dict(CIFAR_ARGS, **CIFAR100_STATS, input_size=(3, 32, 32),
                      auto_augment="rand-m7-n1-mstd0.5-inc1"), 1.0),
    # configs/transfer/cifar{10,100}.yaml: input_size [3, 128, 128]
    "transfer_cifar10": (dict(CIFAR_ARGS, **CIFAR10_STATS, input_size=(3, 128, 128),
                              auto_augment="rand-m9-n1-mstd0.4-inc1"), 1.0),
    "transfer_cifar100": (dict(CIFAR_ARGS, **CIFAR100_STATS, input_size=(3, 128, 128),
                               auto_augment="rand-m9-n1-mstd0.4-inc1"), 1.0),
}
# Spikformer's ImageNet config (github.com/ZK-Zhou/spikformer, imagenet/imagenet.yml, run by
# timm's train.py): scale [1, 1], bicubic, rand-m9-mstd0.5-inc1, reprob 0.25 'const' (recount
# 1), crop_pct 1; colour jitter is train.py's default 0.4.
SPIKFORMER_IMAGENET = (dict(IMAGENET_ARGS, input_size=(3, 224, 224), scale=(1.0, 1.0),
                            auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="const",
                            re_count=1), 1.0)
SEEDS = range(6)


def _old_pillow_posterize(image: Image.Image, bits: int) -> Image.Image:
    """Pillow <= 12's posterize (the authors' Pillow): keep the top ``bits`` bits of every
    channel; 0 bits gives a black image, where Pillow 13 raises."""
    mask = ~(2 ** (8 - bits) - 1)
    lut = [value & mask for value in range(256)]
    return image.point(lut * len(image.getbands()))


@pytest.fixture
def old_pillow(monkeypatch):
    """Run timm's pipelines with the authors' posterize (timm's RandAugment asks for 0 bits at
    magnitude 10, which Pillow 13 refuses)."""
    monkeypatch.setattr(ImageOps, "posterize", _old_pillow_posterize)


def _recipe(name: str) -> dict:
    """The augmentation keys of configs/<name>.yaml; a missing key fails the test."""
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    missing = [key for key in RECIPE_KEYS if key not in config]
    if missing:
        pytest.fail(f"configs/{name}.yaml has no {', '.join(missing)}: every recipe states its "
                    f"augmentation ({', '.join(RECIPE_KEYS)})")
    return config


def _images(size: int) -> list[Image.Image]:
    """Synthetic RGB images: smooth gradients plus noise, square at ``size`` (CIFAR) or two
    non-square ones larger than ``size`` (ImageNet)."""
    rng = np.random.default_rng(size)
    shapes = [(size, size)] if size <= 32 else [(size + 36, size - 24), (size - 40, size + 16)]
    images = []
    for height, width in shapes:
        y, x = np.mgrid[0:height, 0:width]
        ramp = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (height + width)],
                        axis=-1)  # [H, W, 3]
        noise = rng.integers(0, 60, (height, width, 3))
        images.append(Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8)))
    return images


def _seeded(transform, image, seed: int):
    """Run ``transform`` with torch's, Python's and numpy's generators seeded by ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    return transform(image)


def _describe(value):
    """A comparable description of a transform's settings (attributes, recursively)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_describe(item) for item in value]
    if isinstance(value, dict):
        return {key: _describe(item) for key, item in value.items()}
    if callable(value) and hasattr(value, "__qualname__"):  # an op function of RandAugment
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "__dict__"):
        return (type(value).__name__, _describe(vars(value)))
    return value


def _assert_same_steps(ours: transforms.Compose, theirs: transforms.Compose) -> None:
    assert len(ours.transforms) == len(theirs.transforms), f"{ours}\nvs timm's\n{theirs}"
    for mine, other in zip(ours.transforms, theirs.transforms):
        # timm's MaybeToTensor is a ToTensor that passes tensors through
        assert isinstance(other, type(mine)), f"{mine} where timm has {other}"
        # srlib's posterize is timm's with Pillow 12's 0 bits (test_posterize_...)
        described = str(_describe(vars(mine))).replace("srlib.data.transforms._posterize",
                                                        "timm.data.auto_augment.posterize")
        assert described == str(_describe(vars(other))), f"{mine} vs timm's {other}"


def _build(name: str, config: dict, tmp_path, monkeypatch, train: bool, **overrides):
    """srlib's dataset of a recipe on a tiny tree, with the recipe's augmentation keys."""
    dataset = config["dataset"]
    if dataset == "imagenet":
        root = write_image_folder(tmp_path / name)
    else:
        root = write_cifar(tmp_path / name, dataset)
        # the tiny files cannot match the MD5 sums of the real archive; the reader is unchanged
        monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    options = {key: config[key] for key in RECIPE_KEYS if key != "img_size"}
    return build_dataset(dataset, root, train, config["img_size"], **{**options, **overrides})


def _assert_pixel_equal(ours, theirs, authors_args, image_size: int) -> None:
    for image in _images(image_size):
        outputs = []
        for seed in SEEDS:
            mine = _seeded(ours, image, seed)
            assert torch.equal(mine, _seeded(theirs, image, seed)), f"seed {seed}"
            outputs.append(mine)
        assert any(not torch.equal(outputs[0], other) for other in outputs[1:]), "not random"
    # the authors ran timm's prefetcher: uint8 images, normalised batch-wise by PrefetchLoader
    prefetched = timm_data.create_transform(**authors_args, is_training=True, use_prefetcher=True)
    image = _images(image_size)[0]
    for seed in SEEDS:
        raw = _seeded(prefetched, image, seed)  # [3, S, S] uint8
        assert raw.dtype == torch.uint8
        loader = PrefetchLoader([(raw[None], torch.zeros(1, dtype=torch.long))],
                                mean=authors_args["mean"], std=authors_args["std"],
                                device=torch.device("cpu"))
        (batch, _), = list(loader)  # [1, 3, S, S]
        torch.testing.assert_close(_seeded(ours, image, seed), batch[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_recipe_training_pipeline_is_the_authors(name, tmp_path, monkeypatch, old_pillow):
    config = _recipe(name)
    authors_args, _ = AUTHORS[name]
    ours = _build(name, config, tmp_path, monkeypatch, train=True).transform
    theirs = timm_data.create_transform(**authors_args, is_training=True)
    _assert_same_steps(ours, theirs)
    assert config["color_jitter"] == authors_args["color_jitter"]  # used if RandAugment is off
    assert config["random_erasing"] == authors_args["re_prob"]
    _assert_pixel_equal(ours, theirs, authors_args, config["img_size"])


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_recipe_eval_pipeline_is_the_authors(name, tmp_path, monkeypatch):
    config = _recipe(name)
    authors_args, crop_pct = AUTHORS[name]
    ours = _build(name, config, tmp_path, monkeypatch, train=False).transform
    theirs = timm_data.create_transform(authors_args["input_size"], is_training=False,
                                        interpolation="bicubic", crop_pct=crop_pct,
                                        mean=authors_args["mean"], std=authors_args["std"])
    _assert_same_steps(ours, theirs)
    for image in _images(config["img_size"]):
        assert torch.equal(ours(image), theirs(image))


def test_colour_jitter_only_without_rand_augment(tmp_path, monkeypatch, old_pillow):
    config = _recipe("imagenet_ti")
    authors_args, _ = AUTHORS["imagenet_ti"]
    with_rand_augment = _build("on", config, tmp_path, monkeypatch, train=True).transform
    assert config["color_jitter"] > 0
    assert not any(isinstance(step, transforms.ColorJitter)
                   for step in with_rand_augment.transforms)
    ours = _build("off", config, tmp_path, monkeypatch, train=True, auto_augment=None).transform
    theirs = timm_data.create_transform(**{**authors_args, "auto_augment": None},
                                        is_training=True)
    assert any(isinstance(step, transforms.ColorJitter) for step in ours.transforms)
    _assert_same_steps(ours, theirs)
    for image in _images(64):
        for seed in SEEDS:
            assert torch.equal(_seeded(ours, image, seed), _seeded(theirs, image, seed))


@pytest.mark.parametrize("auto_augment", [None, "rand-m7-mstd0.5-inc1", "rand-m9-n3-t3a"])
def test_colour_jitter_follows_timm_rule(auto_augment, old_pillow):
    """timm: colour jitter with no RandAugment or with its 3-Augment op sets, else none."""
    args = dict(IMAGENET_ARGS, input_size=(3, 64, 64), auto_augment=auto_augment)
    ours = image_train_transform(64, args["mean"], args["std"], args["scale"], args["ratio"],
                                 auto_augment, args["color_jitter"], random_erasing=0.0)
    theirs = timm_data.create_transform(**args, is_training=True)
    jitter = [isinstance(step, transforms.ColorJitter) for step in ours.transforms]
    assert any(jitter) == (auto_augment is None or "3a" in auto_augment)
    _assert_same_steps(ours, theirs)
    for image in _images(64):
        for seed in SEEDS:
            assert torch.equal(_seeded(ours, image, seed), _seeded(theirs, image, seed))


def test_spikformer_imagenet_pipeline_with_random_erasing(tmp_path, old_pillow):
    authors_args, crop_pct = SPIKFORMER_IMAGENET
    ours = build_dataset("imagenet", write_image_folder(tmp_path), True, 224,
                         auto_augment=authors_args["auto_augment"], color_jitter=0.4,
                         random_erasing=authors_args["re_prob"], crop_scale_min=1.0,
                         crop_pct=crop_pct).transform
    theirs = timm_data.create_transform(**authors_args, is_training=True)
    _assert_same_steps(ours, theirs)
    erased = 0
    for image in _images(224):
        for seed in range(12):
            mine = _seeded(ours, image, seed)
            assert torch.equal(mine, _seeded(theirs, image, seed)), f"seed {seed}"
            erased += int((mine == 0).all(0).any())  # 'const': a box of zeros in all channels
    assert 0 < erased < 24  # probability 0.25 per image


def test_posterize_keeps_pillow_12_black_image_at_zero_bits():
    image = _images(32)[0]
    for bits in range(9):
        expected = np.asarray(_old_pillow_posterize(image, bits))
        assert np.array_equal(np.asarray(_posterize(image, bits)), expected), f"{bits} bits"
    assert not np.asarray(_posterize(image, 0)).any()  # black


@pytest.mark.parametrize("auto_augment", sorted({args["auto_augment"]
                                                 for args, _ in AUTHORS.values()}))
def test_recipe_strings_are_timm_rand_augment(auto_augment):
    check_auto_augment(auto_augment)
    timm_ops = rand_augment_transform(auto_augment, {}).ops
    # the 'increasing' set: Invert and SolarizeAdd in, no identity op; each op with p = 0.5
    names = [op.name for op in timm_ops]
    assert "Invert" in names and "SolarizeAdd" in names and len(names) == 15
    assert all(op.prob == 0.5 and op.magnitude_std in (0.4, 0.5) for op in timm_ops)


@pytest.mark.parametrize("bad", ["rand-m7-foo", "rand-m7.5", "randaugment-m7", "v0",
                                 "augmix-m5", "rand-m7-tfoo", "rand--m7", "rand-x3",
                                 "rand-mstdx"])
def test_unknown_augmentation_string_is_a_clear_error(bad, tmp_path):
    with pytest.raises(ValueError, match="expected a timm RandAugment string") as error:
        check_auto_augment(bad)
    assert repr(bad) in str(error.value)
    root = write_image_folder(tmp_path)
    for train in (True, False):  # the evaluation split checks the recipe too
        with pytest.raises(ValueError, match="rand-m7-mstd0.5-inc1"):
            build_dataset("imagenet", root, train, 32, auto_augment=bad)


def test_bad_jitter_and_erasing_values_are_errors():
    args = (32, (0.5,) * 3, (0.25,) * 3, (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="color_jitter must be a number >= 0, got -0.1"):
        image_train_transform(*args, color_jitter=-0.1)
    with pytest.raises(ValueError, match=r"random_erasing must be a number in \[0.0, 1\]"):
        image_train_transform(*args, random_erasing=1.5)
    with pytest.raises(ValueError, match="auto_augment must be a string or None"):
        image_train_transform(*args, auto_augment=7)


# --- seeding: every generator, any number of workers, resumed epochs ----------------------------

class _Draws(Dataset):
    """Items are one draw from each generator an augmentation may use."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        return (random.getrandbits(32), int(np.random.randint(0, 2**32, dtype=np.uint64)),
                int(torch.randint(0, 2**31, ())))


def test_seeded_dataset_seeds_and_restores_every_generator():
    dataset = SeededDataset(_Draws())
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    first = [dataset[(i, 10**12 + i)] for i in range(4)]
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    numpy_after = np.random.get_state()
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(numpy_after, states[2]))
    torch.manual_seed(99)  # other global states: the same items
    random.seed(99)
    np.random.seed(99)
    assert [dataset[(i, 10**12 + i)] for i in reversed(range(4))][::-1] == first
    python_draws, numpy_draws, _ = zip(*first)
    assert all(a != b for a, b in zip(python_draws, numpy_draws)), "independent streams"


def test_rand_augment_samples_do_not_depend_on_workers_or_resume(tmp_path):
    root = write_image_folder(tmp_path, per_class=4)
    dataset = build_dataset("imagenet", root, True, 32, auto_augment="rand-m9-n3-mstd0.5-inc1",
                            random_erasing=0.5)

    def epoch(num_workers: int, index: int, start: int = 0):
        loader = build_loader(dataset, batch_size=2, train=True, seed=7,
                              num_workers=num_workers)
        loader.sampler.set_epoch(index, start=start)
        return [images for images, _ in loader]

    single = epoch(0, 1)
    assert len(single) == 4
    assert all(torch.equal(a, b) for a, b in zip(single, epoch(2, 1)))
    assert all(torch.equal(a, b) for a, b in zip(single[1:], epoch(0, 1, start=2)))
    assert not torch.equal(torch.cat(single), torch.cat(epoch(0, 2)))


# --- event frames ---------------------------------------------------------------------------------

def test_event_frames_are_resized_like_the_authors():
    frames = torch.randint(0, 6, (3, 2, 16, 16)).float()  # [T, 2, H, W] event counts
    out = EventFrameTransform(train=False, img_size=8)(frames.numpy())
    assert out.shape == (3, 3, 8, 8)
    flat = frames.flatten(0, 1)  # [T * 2, H, W], as the authors' DVStransform resizes them
    expected = v2.Resize((8, 8), antialias=True)(flat).view(3, 2, 8, 8)
    assert torch.equal(out[:, :2], expected)
    authors = transforms.Resize((8, 8), antialias=True)(flat)  # torchvision's v1, theirs
    assert torch.equal(authors.view(3, 2, 8, 8), expected)
    assert torch.equal(out[:, 2], expected.sum(1))
    area = torch.nn.functional.interpolate(frames, size=(8, 8), mode="area")
    assert not torch.allclose(out[:, :2], area)  # bilinear antialiased, not area averaging
    same = EventFrameTransform(train=False, img_size=16)(frames)
    assert torch.equal(same[:, :2], frames)  # at the same size nothing is resampled


# --- Spikformer's CIFAR-10 pipeline: its own RandAugment ops and normalisation ------------------
# github.com/ZK-Zhou/spikformer cifar10/cifar10.yml (aa rand-m9-n1-mstd0.4-inc1, scale and ratio
# [1, 1], colour jitter 0, bicubic, reprob 0.25 'const', its std) through its
# cifar10/transforms_factory.py, which is timm's with cifar10/aa_snn.py's rand_augment_transform:
# timm's RandAugment over the five ops of aa_snn's _RAND_INCREASING_TRANSFORMS, hparams
# translate_const int(0.45 * 32), the mean pixel, bicubic.
SPIKFORMER_CIFAR_OPS = ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]
SPIKFORMER_CIFAR = dict(input_size=(3, 32, 32), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.5,
                        vflip=0.0, color_jitter=0.0, interpolation="bicubic",
                        auto_augment="rand-m9-n1-mstd0.4-inc1", mean=(0.4914, 0.4822, 0.4465),
                        std=(0.2470, 0.2435, 0.2616), re_prob=0.25, re_mode="const",
                        re_count=1)


def _spikformer_cifar_train():
    from timm.data.transforms import str_to_pil_interp

    transform = timm_data.create_transform(**SPIKFORMER_CIFAR, is_training=True)
    mean = SPIKFORMER_CIFAR["mean"]
    hparams = dict(translate_const=int(32 * 0.45),
                   img_mean=tuple(min(255, round(255 * value)) for value in mean),
                   interpolation=str_to_pil_interp("bicubic"))
    steps = transform.transforms
    index = next(i for i, step in enumerate(steps) if type(step).__name__ == "RandAugment")
    steps[index] = rand_augment_transform(SPIKFORMER_CIFAR["auto_augment"], hparams,
                                          transforms=SPIKFORMER_CIFAR_OPS)
    return transform


def test_spikformer_cifar10_recipe_pipeline_is_spikformer_s(tmp_path, monkeypatch):
    config = yaml.safe_load((CONFIGS / "spikformer_cifar10.yaml").read_text())
    assert config["auto_augment_ops"] == SPIKFORMER_CIFAR_OPS
    assert tuple(config["normalize_std"]) == SPIKFORMER_CIFAR["std"]
    assert config["random_erasing"] == SPIKFORMER_CIFAR["re_prob"]
    options = {key: config[key] for key in ("auto_augment", "auto_augment_ops", "color_jitter",
                                            "random_erasing", "crop_pct", "normalize_mean",
                                            "normalize_std")}
    root = write_cifar(tmp_path, "cifar10")
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    ours = build_dataset("cifar10", root, True, config["img_size"], **options).transform
    theirs = _spikformer_cifar_train()
    _assert_same_steps(ours, theirs)
    names = [op.name for op in ours.transforms[2].ops]
    assert names == SPIKFORMER_CIFAR_OPS and ours.transforms[2].num_layers == 1
    erased = 0
    for image in _images(32):
        for seed in range(24):
            mine = _seeded(ours, image, seed)
            assert torch.equal(mine, _seeded(theirs, image, seed)), f"seed {seed}"
            erased += int((mine == 0).all(0).any())
    assert 0 < erased < 24  # probability 0.25 per image
    evaluation = build_dataset("cifar10", root, False, 32, **options).transform
    reference = timm_data.create_transform((3, 32, 32), is_training=False,
                                           interpolation="bicubic", crop_pct=1.0,
                                           mean=SPIKFORMER_CIFAR["mean"],
                                           std=SPIKFORMER_CIFAR["std"])
    _assert_same_steps(evaluation, reference)
    for image in _images(32):
        assert torch.equal(evaluation(image), reference(image))


def test_bad_op_lists_and_normalisation_are_clear_errors(tmp_path, monkeypatch):
    root = write_cifar(tmp_path, "cifar10")
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    aa = "rand-m9-n1-mstd0.4-inc1"
    for train in (True, False):  # the test split checks the recipe too
        with pytest.raises(ValueError, match=r"unknown RandAugment op\(s\) \['Blur'\]"):
            build_dataset("cifar10", root, train, auto_augment=aa,
                          auto_augment_ops=["Rotate", "Blur"])
    with pytest.raises(ValueError, match="needs a RandAugment string"):
        build_dataset("cifar10", root, True, auto_augment=None, auto_augment_ops=["Rotate"])
    with pytest.raises(ValueError, match="non-empty list"):
        build_dataset("cifar10", root, True, auto_augment=aa, auto_augment_ops="Rotate")
    with pytest.raises(ValueError, match="normalize_std must be three positive numbers"):
        build_dataset("cifar10", root, True, normalize_std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="normalize_mean must be three numbers"):
        build_dataset("cifar10", root, True, normalize_mean=(0.5, 0.5))
