"""The ImageNet stand-in: layout, pixels against PIL's resize of the source images, reuse,
clear errors, and that the ImageNet dataset reads it."""

import json

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import write_fashion_mnist

from srlib.data import build_dataset
from srlib.data.fashion_mnist import read_idx
from srlib.data.standin import MARKER, class_folder_names, write_standin_imagenet


@pytest.fixture
def source(tmp_path):
    # 40 train / 20 test images, labels 0..9 in turn: 4 and 2 of each class
    return write_fashion_mnist(tmp_path / "fmnist", n_train=40, n_test=20)


def test_layout_and_pixels(tmp_path, source):
    root = write_standin_imagenet(tmp_path / "standin", num_classes=3, train_per_class=4,
                                  val_per_class=2, img_size=40, source_root=source)
    folders = class_folder_names(3)
    assert folders == ["00_t-shirt_top", "01_trouser", "02_pullover"]
    for split, per_class in (("train", 4), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == folders
        for folder in folders:
            assert len(list((root / split / folder).glob("*.png"))) == per_class
    assert not list(tmp_path.glob(".standin.*")), "the temporary build folder is gone"

    # every training image of class 1 is a bicubic upscale of one source image of class 1
    images = read_idx(source / "train-images-idx3-ubyte.gz")  # [40, 28, 28]
    labels = read_idx(source / "train-labels-idx1-ubyte.gz")  # [40]
    expected = {Image.fromarray(images[i]).resize((40, 40), Image.Resampling.BICUBIC).tobytes()
                for i in np.flatnonzero(labels == 1)}
    for path in sorted((root / "train" / folders[1]).glob("*.png")):
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.size == (40, 40)
            rgb = np.asarray(image)  # [40, 40, 3]
        assert (rgb == rgb[..., :1]).all(), "three equal channels"
        assert rgb[..., 0].tobytes() in expected
    assert json.loads((root / MARKER).read_text())["img_size"] == 40


def test_imagenet_dataset_reads_it(tmp_path, source):
    root = write_standin_imagenet(tmp_path / "standin", num_classes=10, train_per_class=4,
                                  val_per_class=2, img_size=40, source_root=source)
    train = build_dataset("imagenet", root, True, 32, auto_augment="rand-m7-mstd0.5-inc1")
    val = build_dataset("imagenet", root, False, 32)
    assert len(train) == 40 and len(val) == 20
    assert train.classes == class_folder_names(10)
    x, label = val[3]
    assert x.shape == (3, 32, 32) and label == 1  # sorted folders keep Fashion-MNIST's labels


def test_reuse_and_errors(tmp_path, source):
    options = dict(num_classes=2, train_per_class=2, val_per_class=1, img_size=28,
                   source_root=source)
    root = write_standin_imagenet(tmp_path / "standin", **options)
    first = root / "train" / "00_t-shirt_top" / "0000.png"
    stamp = first.stat().st_mtime_ns
    assert write_standin_imagenet(root, **options) == root
    assert first.stat().st_mtime_ns == stamp, "same settings: the tree is reused, not rewritten"
    with pytest.raises(FileExistsError, match="not a stand-in made with"):
        write_standin_imagenet(root, **{**options, "img_size": 32})
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FileExistsError, match=MARKER):
        write_standin_imagenet(other, **options)
    with pytest.raises(ValueError, match="fewer than the 5 asked for"):
        write_standin_imagenet(tmp_path / "big", **{**options, "train_per_class": 5})
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big.*"))
    with pytest.raises(ValueError, match="img_size must be >= 28"):
        write_standin_imagenet(tmp_path / "small", **{**options, "img_size": 16})
    with pytest.raises(ValueError, match="num_classes must lie in 1..10"):
        write_standin_imagenet(tmp_path / "many", **{**options, "num_classes": 11})
