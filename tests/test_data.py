"""srlib.data: dataset readers on tiny trees in the real layouts, errors, samplers, transforms."""

import gzip

import numpy as np
import pytest
import torch
import torchvision
from tiny_datasets import (class_images, write_cifar, write_dvs_frames, write_fashion_mnist,
                           write_image_folder)

from srlib.data import (ResumableSampler, ShardSampler, build_dataset, build_loader,
                        dataset_info, mixup_cutmix)
from srlib.data.dvs import class_split
from srlib.data.fashion_mnist import read_idx
from srlib.data.transforms import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, EventFrameTransform,
                                   SeededDataset, sample_seed)


# --- Fashion-MNIST ---------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_and_pads(tmp_path, gz):
    write_fashion_mnist(tmp_path, n_train=20, n_test=10, gz=gz)
    test = build_dataset("fashion-mnist", tmp_path, train=False, img_size=32)
    assert len(test) == 10 and len(build_dataset("fashion-mnist", tmp_path, train=True)) == 20
    raw = class_images(np.arange(10) % 10, 28, seed=1)  # what the writer put in t10k
    image, label = test[3]
    assert image.shape == (1, 32, 32) and label == 3
    expected = (torch.from_numpy(raw[3]).float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    torch.testing.assert_close(image[0, 2:30, 2:30], expected)  # centred, normalised
    background = -FASHION_MNIST_MEAN / FASHION_MNIST_STD
    assert torch.all(image[0, :2] == background) and torch.all(image[0, :, 30:] == background)


def test_fashion_mnist_augmentation_is_a_shift_or_flip_of_the_image(tmp_path):
    write_fashion_mnist(tmp_path, n_train=10, n_test=10)
    train = build_dataset("fashion-mnist", tmp_path, train=True, img_size=32)
    plain = build_dataset("fashion-mnist", tmp_path, train=True, img_size=32, augment=False)
    reference = torch.nn.functional.pad(plain[4][0], (2, 2, 2, 2),
                                        value=-FASHION_MNIST_MEAN / FASHION_MNIST_STD)  # 36x36
    for seed in range(8):
        torch.manual_seed(seed)
        image = train[4][0]
        windows = [reference[:, i:i + 32, j:j + 32] for i in range(5) for j in range(5)]
        assert any(torch.equal(image, w) or torch.equal(image, w.flip(-1)) for w in windows)


@pytest.mark.parametrize("train", [True, False])
def test_fashion_mnist_batches_equal_item_by_item_loading(tmp_path, train):
    # without augmentation a batch is transformed in one call: the same bits as one image at a
    # time, and the training loader hands plain indices (no seeds) to the batched path
    write_fashion_mnist(tmp_path, n_train=40, n_test=30)
    dataset = build_dataset("fashion-mnist", tmp_path, train=train, img_size=32, augment=False)
    assert dataset.random is False
    loader = build_loader(dataset, 8, train=train, seed=5)
    if train:
        loader.sampler.set_epoch(1)
        assert all(isinstance(index, int) for index in loader.sampler)
    order = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == (5 if train else 4)
    for k, (images, labels) in enumerate(batches):
        indices = order[8 * k:8 * k + 8]
        assert torch.equal(images, torch.stack([dataset[i][0] for i in indices]))
        assert torch.equal(labels, torch.tensor([dataset[i][1] for i in indices]))
        assert images.shape[1:] == (1, 32, 32) and images.is_contiguous()


def test_fashion_mnist_with_augmentation_stays_seeded_item_by_item(tmp_path):
    write_fashion_mnist(tmp_path, n_train=16, n_test=10)
    dataset = build_dataset("fashion-mnist", tmp_path, train=True, img_size=32)
    assert dataset.random is True
    loader = build_loader(dataset, 8, train=True, seed=5)
    loader.sampler.set_epoch(0)
    keys = list(loader.sampler)
    assert all(isinstance(key, tuple) for key in keys)  # (index, seed): per-sample seeds
    first, again = list(loader), list(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    seeded = SeededDataset(dataset)
    assert torch.equal(first[0][0], torch.stack([seeded[key][0] for key in keys[:8]]))
    with pytest.raises(ValueError, match="per image"):
        dataset.transform.batch(dataset.images[:4])
    with pytest.raises(ValueError, match=r"\[B, 28, 28\]"):
        build_dataset("fashion-mnist", tmp_path, train=False).transform.batch(
            dataset.images[0])


def test_fashion_mnist_missing_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("fashion-mnist", tmp_path / "nowhere")
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "nowhere") in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message


def test_malformed_idx_files_are_reported(tmp_path):
    write_fashion_mnist(tmp_path, n_train=10, n_test=10, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])  # truncated
    with pytest.raises(ValueError, match="truncated"):
        build_dataset("fashion-mnist", tmp_path)
    path.write_bytes(b"\x00\x00\x09\x99" + bytes(20))
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(bad_gz)


# --- ImageNet-style folders ------------------------------------------------------------------

def test_imagenet_folder_transforms_and_classes(tmp_path):
    write_image_folder(tmp_path)
    train = build_dataset("imagenet", tmp_path, train=True, img_size=32)
    val = build_dataset("imagenet", tmp_path, train=False, img_size=32)
    assert train.classes == ["cat", "dog"] and len(train) == len(val) == 6
    image, label = val[4]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
    torch.manual_seed(0)
    assert train[0][0].shape == (3, 32, 32)
    assert torch.equal(val[0][0], val[0][0])  # eval transform is deterministic


def test_imagenet_missing_split_names_layout(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("imagenet", tmp_path)
    assert "val/" in str(error.value) and "image-net.org" in str(error.value)


def test_corrupt_image_is_named_or_skipped(tmp_path):
    write_image_folder(tmp_path, corrupt=True)
    train = build_dataset("imagenet", tmp_path, train=True, img_size=32)
    broken = [i for i, (path, _) in enumerate(train.samples) if path.endswith("broken.png")]
    with pytest.raises(OSError, match="broken.png"):
        train[broken[0]]
    with pytest.warns(UserWarning, match="broken.png"):
        kept = build_dataset("imagenet", tmp_path, train=True, img_size=32, skip_corrupt=True)
    assert len(kept) == len(train) - 1
    assert all(kept[i][0].shape == (3, 32, 32) for i in range(len(kept)))


# --- CIFAR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_torchvision_layout(tmp_path, monkeypatch, name):
    write_cifar(tmp_path, name)
    # the tiny files cannot match the MD5 sums of the real archive; the reader is unchanged
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    test = build_dataset(name, tmp_path, train=False, img_size=32)
    image, label = test[3]
    assert len(test) == 10 and image.shape == (3, 32, 32) and label == 3
    assert build_dataset(name, tmp_path, train=True, img_size=64)[0][0].shape == (3, 64, 64)


def test_cifar_missing_says_layout_and_download(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-py" in str(error.value) and "--download" in str(error.value)


# --- event frames ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,classes", [("dvs128gesture", 11), ("cifar10dvs", 10)])
def test_dvs_frames_are_time_major_after_loading(tmp_path, name, classes):
    T, per_class = 4, (10 if name == "cifar10dvs" else 2)
    write_dvs_frames(tmp_path, name, T, per_class=per_class)
    train = build_dataset(name, tmp_path, train=True, img_size=8, T=T)
    test = build_dataset(name, tmp_path, train=False, img_size=8, T=T)
    if name == "cifar10dvs":  # one folder, split 9:1 inside every class
        assert (len(train), len(test)) == (9 * classes, classes)
    else:  # SpikingJelly's train/ and test/ folders
        assert (len(train), len(test)) == (per_class * classes, per_class * classes)
    frames, _ = test[0]
    assert frames.shape == (T, 3, 8, 8)
    torch.testing.assert_close(frames[:, 2], frames[:, 0] + frames[:, 1])
    loader = build_loader(train, batch_size=3, train=True, sequence=True)
    loader.sampler.set_epoch(0)
    images, labels = next(iter(loader))
    assert images.shape == (T, 3, 3, 8, 8) and labels.shape == (3,)


def test_dvs_missing_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("dvs128gesture", tmp_path, T=16)
    message = str(error.value)
    assert "download" in message and "frames_number_16_split_by_number" in message


def test_class_split_is_nine_to_one_per_class():
    targets = [0] * 10 + [1] * 20
    train, test = class_split(targets, True), class_split(targets, False)
    assert train == list(range(9)) + list(range(10, 28)) and test == [9, 28, 29]


def test_event_frame_transform_keeps_time_steps_aligned():
    frames = torch.zeros(5, 2, 16, 16)
    frames[:, 0, 4, 4] = 1.0  # the same event at every step
    torch.manual_seed(0)
    out = EventFrameTransform(train=True, img_size=16)(frames)
    assert out.shape == (5, 3, 16, 16)
    assert all(torch.equal(out[t], out[0]) for t in range(5))  # one transform for all steps


# --- samplers, seeding, mixing ---------------------------------------------------------------

def test_resumable_sampler_order_start_and_shards():
    data = list(range(50))
    sampler = ResumableSampler(data, seed=3, with_seeds=False)
    sampler.set_epoch(2)
    full = list(sampler)
    assert sorted(full) == data and full != list(ResumableSampler(data, seed=4,
                                                                  with_seeds=False))
    sampler.set_epoch(2, start=17)
    assert list(sampler) == full[17:] and len(sampler) == 33
    shards = [ResumableSampler(data, seed=3, with_seeds=False, num_replicas=2, rank=r)
              for r in range(2)]
    for shard in shards:
        shard.set_epoch(2)
    assert sorted(list(shards[0]) + list(shards[1])) == data  # a partition
    seeded = ResumableSampler(data, seed=3)
    seeded.set_epoch(2)
    assert list(seeded) == [(i, sample_seed(3, 2, i)) for i in full]


def test_shard_sampler_covers_every_item_once():
    shards = [list(ShardSampler(range(11), num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def test_seeded_dataset_is_reproducible_and_leaves_global_rng_alone(tmp_path):
    write_fashion_mnist(tmp_path, n_train=10, n_test=10)
    dataset = SeededDataset(build_dataset("fashion-mnist", tmp_path, train=True))
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = [dataset[(i, 1000 + i)][0] for i in range(10)]
    assert torch.equal(torch.get_rng_state(), state)
    again = [dataset[(i, 1000 + i)][0] for i in reversed(range(10))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_mixup_gives_soft_labels():
    torch.manual_seed(0)
    mix = mixup_cutmix(10, mixup_alpha=0.5, cutmix_alpha=1.0)
    images, targets = mix(torch.randn(6, 1, 8, 8), torch.arange(6))
    assert images.shape == (6, 1, 8, 8) and targets.shape == (6, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert mixup_cutmix(10) is None


def test_dataset_info_and_unknown_names():
    assert dataset_info("fashion-mnist").in_channels == 1
    assert dataset_info("dvs128gesture").sequence
    with pytest.raises(ValueError, match="expected one of"):
        build_dataset("mnist")
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("fashion-mnist", T=4)


def test_gzip_reader_matches_plain(tmp_path):
    write_fashion_mnist(tmp_path / "a", n_train=10, n_test=10, gz=True)
    write_fashion_mnist(tmp_path / "b", n_train=10, n_test=10, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a" / "t10k-images-idx3-ubyte.gz"),
                          read_idx(tmp_path / "b" / "t10k-images-idx3-ubyte"))
    with gzip.open(tmp_path / "a" / "t10k-labels-idx1-ubyte.gz") as file:
        assert file.read(4) == b"\x00\x00\x08\x01"
