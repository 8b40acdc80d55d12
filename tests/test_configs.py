"""Every recipe in configs/ parses, and builds its model and data pipeline (on a tiny tree in
the dataset's real layout where the data is absent); the batches fit the model's input."""

from pathlib import Path

import pytest
import torch
import torchvision
from tiny_datasets import write_cifar, write_dvs_frames, write_fashion_mnist, write_image_folder

import srlib
from srlib.checkpoint import atomic_save
from srlib.data import dataset_info
from srlib.train import Trainer, load_config
from srlib.train.config import read_recipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
PAPER_RUNS = {"default", "imagenet_ti", "imagenet_s", "imagenet_m", "imagenet_l", "cifar10",
              "cifar100", "transfer_cifar10", "transfer_cifar100", "cifar10dvs",
              "dvs128gesture"}
SPIKFORMER_RUNS = {"spikformer_8_384", "spikformer_8_512", "spikformer_cifar10"}


def test_every_paper_run_has_a_recipe():
    assert PAPER_RUNS | SPIKFORMER_RUNS <= {path.stem for path in RECIPES}


@pytest.fixture(scope="module")
def imagenet_s_checkpoint(tmp_path_factory):
    """An ImageNet-shaped SpikingResformer-S checkpoint (1000 classes) for the transfers."""
    path = tmp_path_factory.mktemp("pretrained") / "s.pth"
    atomic_save({"model": srlib.create_model("spikingresformer_s").state_dict()}, path)
    return path


def tiny_tree(dataset: str, root: Path, T: int) -> Path:
    if dataset == "fashion-mnist":
        return write_fashion_mnist(root, n_train=8, n_test=4)
    if dataset == "imagenet":
        return write_image_folder(root, per_class=2)
    if dataset in ("cifar10", "cifar100"):
        return write_cifar(root, dataset, n_train=10, n_test=4)
    return write_dvs_frames(root, dataset, T, per_class=10 if dataset == "cifar10dvs" else 1)


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.stem for path in RECIPES])
def test_recipe_builds_model_and_data(recipe, tmp_path, monkeypatch, imagenet_s_checkpoint):
    assert read_recipe(recipe).get("name") == recipe.stem or recipe.stem == "default"
    assert recipe.read_text().startswith("#"), "every recipe starts with a comment"
    config = load_config(recipe)
    info = dataset_info(config.dataset)
    # the tiny CIFAR files cannot match the real archive's MD5 sums; the reader is unchanged
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    overrides = dict(data_root=str(tiny_tree(config.dataset, tmp_path / "data", config.T)),
                     output_dir=str(tmp_path / "runs"), batch_size=2, workers=0,
                     device="cpu", progress=False, tensorboard=False,
                     amp="none" if config.amp == "fp16" else config.amp)  # fp16 is CUDA-only
    if config.pretrained:
        assert config.pretrained_ignore == ("classifier.",)
        overrides["pretrained"] = str(imagenet_s_checkpoint)
    trainer = Trainer(load_config(recipe, **overrides))
    model = trainer.model
    assert model.config.num_classes == (config.num_classes or info.num_classes)
    assert model.config.in_channels == info.in_channels
    if config.pretrained:  # the backbone came from the checkpoint, the classifier is new
        source = torch.load(imagenet_s_checkpoint, weights_only=True)["model"]
        assert torch.equal(model.prologue[0].weight, source["prologue.0.weight"])
        assert model.classifier.weight.shape[0] != source["classifier.weight"].shape[0]
    trainer.train_loader.sampler.set_epoch(0)
    images, labels = next(iter(trainer.train_loader))
    size = config.img_size or info.img_size
    if info.sequence:
        assert images.shape == (config.T, 2, info.in_channels, size, size)  # time-major
    else:
        assert images.shape == (2, info.in_channels, size, size)
    assert model.to_time_major(images).shape[:2] == (config.T, 2)  # fits the model's input
    assert labels.dtype == torch.int64 and labels.max() < model.config.num_classes
    test_images, _ = next(iter(trainer.test_loader))
    assert test_images.shape[-2:] == (size, size)


def test_the_default_recipe_is_trainconfig_s_defaults():
    """One source of truth for the main job: configs/default.yaml lists every field of
    TrainConfig with exactly its default value."""
    import dataclasses

    from srlib.train import TrainConfig

    values = read_recipe(CONFIGS / "default.yaml")
    assert list(values) == [field.name for field in dataclasses.fields(TrainConfig)]
    assert load_config(CONFIGS / "default.yaml") == TrainConfig() == load_config()


def test_recipes_ship_with_the_package_and_load_by_name():
    from srlib.train.config import list_recipes

    assert list_recipes() == [path.stem for path in RECIPES]
    assert load_config("imagenet_ti") == load_config(CONFIGS / "imagenet_ti.yaml")
    assert load_config("imagenet_ti.yaml").model == "spikingresformer_ti"
    with pytest.raises(FileNotFoundError, match="shipped: cifar10, cifar100"):
        load_config("imagenet_tiny")


def test_paper_recipes_use_the_authors_seed_and_effective_dvs_loss():
    """The authors seed every run with 12450 (Spikformer's timm script with 42); their DVS
    configs set mixup, which picks a soft-target loss on one-hot labels without mixing
    anything: no label smoothing acts."""
    for recipe in RECIPES:
        if recipe.stem == "default":
            continue
        config = load_config(recipe)
        assert config.seed == (42 if recipe.stem in SPIKFORMER_RUNS else 12450), recipe.stem
        if dataset_info(config.dataset).sequence:
            assert config.label_smoothing == 0.0 and config.mixup == config.cutmix == 0.0, \
                recipe.stem


# Spikformer's public recipes (github.com/ZK-Zhou/spikformer imagenet/imagenet.yml and
# cifar10/cifar10.yml, trained by its timm train.py: seed 42, the scheduler's 10 cooldown epochs
# added to `epochs`), value by value
SPIKFORMER_PUBLIC = {
    "imagenet": dict(img_size=224, batch_size=24, lr=5e-4, min_lr=1e-5, weight_decay=5e-2,
                     cosine_epochs=300, cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-6,
                     mixup=0.8, cutmix=1.0, mixup_switch_prob=0.5, label_smoothing=0.1,
                     auto_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25, crop_pct=1.0,
                     crop_scale_min=1.0, amp="fp16"),
    "cifar10": dict(img_size=32, T=4, batch_size=128, lr=5e-4, min_lr=1e-5, weight_decay=6e-2,
                    cosine_epochs=300, cooldown_epochs=10, warmup_epochs=20, warmup_lr=1e-5,
                    mixup=0.5, cutmix=0.0, mixup_off_epoch=200, label_smoothing=0.1,
                    auto_augment="rand-m9-n1-mstd0.4-inc1", random_erasing=0.25, crop_pct=1.0,
                    normalize_mean=(0.4914, 0.4822, 0.4465),
                    normalize_std=(0.2470, 0.2435, 0.2616), color_jitter=0.0, amp="fp16"),
}


@pytest.mark.parametrize("recipe", sorted(SPIKFORMER_RUNS))
def test_spikformer_recipes_are_its_public_configs(recipe):
    config = load_config(recipe)
    public = SPIKFORMER_PUBLIC[config.dataset]
    for key, value in public.items():
        ours = (config.epochs - config.cooldown_epochs if key == "cosine_epochs"
                else getattr(config, key))
        assert ours == value, (recipe, key, ours, value)
    assert (config.schedule_unit, config.seed, config.eval_amp) == ("epoch", 42, True)


def test_paper_recipes_schedule_per_epoch_and_the_main_job_per_step():
    """The paper recipes reproduce the authors' timm cosine, one lr per epoch; the main job
    keeps srlib's per-step cosine (tests/test_train.py checks both against their formulas)."""
    for recipe in RECIPES:
        config = load_config(recipe)
        assert config.schedule_unit == ("step" if recipe.stem == "default" else "epoch"), \
            recipe.stem
        assert config.eval_amp == (recipe.stem in SPIKFORMER_RUNS), recipe.stem
