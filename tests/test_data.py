"""Task streams: class-incremental splits without leakage, and torchvision on-disk loading."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_sweeps.config import ConfigError, DataConfig, TrialConfig, parse_trial_config
from cl_sweeps.data import build_task_stream, load_source, resolve_task_classes
from cl_sweeps.data.sources import DataError, digits_split


def test_digits_split_is_fixed_disjoint_and_complete():
    train_idx, test_idx = digits_split()
    again_train, again_test = digits_split()
    assert np.array_equal(train_idx, again_train) and np.array_equal(test_idx, again_test)
    assert not set(train_idx) & set(test_idx)
    assert len(train_idx) + len(test_idx) == 1797


def test_digits_images_are_scaled_and_resizable():
    source = load_source(DataConfig())
    assert source.train.images.shape[1:] == (1, 8, 8)
    assert source.train.images.min() >= -1 and source.train.images.max() <= 1
    assert source.train.images.min() == -1 and source.train.images.max() == 1
    resized = load_source(DataConfig(image_size=16))
    assert resized.train.images.shape[1:] == (1, 16, 16)
    assert len(resized.train) == len(source.train)


def test_default_stream_has_five_disjoint_two_class_tasks():
    config = DataConfig()
    stream = build_task_stream(config, load_source(config))
    assert stream.task_classes == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for split in (stream.train, stream.test):
        for classes, images in zip(stream.task_classes, split):
            assert set(images.labels.unique().tolist()) == set(classes)
    total_train = sum(len(t) for t in stream.train)
    assert total_train == len(load_source(config).train)  # every image in exactly one task


def test_class_order_permutation_and_explicit_tasks():
    assert resolve_task_classes(DataConfig(class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), 10)[0] == [
        9,
        8,
    ]
    seeded = resolve_task_classes(DataConfig(class_order_seed=42), 10)
    assert resolve_task_classes(DataConfig(class_order_seed=42), 10) == seeded
    assert sorted(c for task in seeded for c in task) == list(range(10))
    assert seeded != resolve_task_classes(DataConfig(), 10)
    explicit = resolve_task_classes(DataConfig(tasks=[[3], [1, 2], [0]]), 10)
    assert explicit == [[3], [1, 2], [0]]


def test_seen_test_covers_exactly_the_seen_tasks():
    config = DataConfig()
    stream = build_task_stream(config, load_source(config))
    seen = stream.seen_test(2)
    assert set(seen.labels.unique().tolist()) == {0, 1, 2, 3, 4, 5}


def _write_idx(path: Path, array: np.ndarray) -> None:
    """torchvision's MNIST raw format: big-endian magic, dims, then uint8 data."""
    magic = 0x0800 + array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, folder: str, n_train: int, n_test: int) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = np.arange(n) % 10
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        # torchvision also accepts the .gz it downloads; write them to mirror a real download
        with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write((raw / f"{prefix}-labels-idx1-ubyte").read_bytes())


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_format_loads_from_a_directory(tmp_path, dataset, folder):
    _write_mnist_like(tmp_path, folder, n_train=60, n_test=30)
    config = TrialConfig.model_validate(
        {"data": {"dataset": dataset, "data_root": str(tmp_path), "download": False}}
    ).data
    source = load_source(config)
    assert source.train.images.shape == (60, 1, 32, 32)  # 28x28 resized to 32x32 as in the paper
    assert source.test.images.shape == (30, 1, 32, 32)
    assert -1 <= source.train.images.min() and source.train.images.max() <= 1
    assert torch.equal(source.train.labels, torch.arange(60) % 10)
    stream = build_task_stream(config, source)
    assert [len(t) for t in stream.train] == [12] * 5


def _write_flat_idx(root: Path, n_train: int, n_test: int, gzipped: bool) -> None:
    """The four IDX files side by side, as Debian's dataset-fashion-mnist package ships them."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28))),
                            ("labels-idx1-ubyte", (np.arange(n) * 3) % 10)):
            path = root / f"{prefix}-{kind}"
            _write_idx(path, array)
            if gzipped:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_files_load_from_a_flat_directory(tmp_path, gzipped):
    _write_flat_idx(tmp_path / "flat", n_train=40, n_test=20, gzipped=gzipped)
    _write_flat_idx(tmp_path / "reference", n_train=40, n_test=20, gzipped=False)
    config = TrialConfig.model_validate(
        {"data": {"dataset": "fashion_mnist", "data_root": str(tmp_path / "flat")}}
    ).data
    source = load_source(config)
    assert source.train.images.shape == (40, 1, 32, 32) and len(source.test) == 20
    assert torch.equal(source.train.labels, torch.from_numpy((np.arange(40) * 3) % 10))
    # the same pixels as torchvision's reader of the same (plain) bytes
    from torchvision.datasets.mnist import read_image_file

    raw = read_image_file(str(tmp_path / "reference" / "train-images-idx3-ubyte"))
    expected = torch.nn.functional.interpolate(raw.unsqueeze(1).float() / 255, size=(32, 32),
                                               mode="bilinear", align_corners=False) * 2 - 1
    assert torch.allclose(source.train.images, expected.clamp(-1, 1))


def test_a_missing_flat_idx_file_is_named(tmp_path):
    _write_flat_idx(tmp_path, n_train=20, n_test=10, gzipped=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    config = TrialConfig.model_validate(
        {"data": {"dataset": "mnist", "data_root": str(tmp_path)}}
    ).data
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: missing \(MNIST labels\), "
                                        r"and no t10k-labels-idx1-ubyte or t10k-labels-idx1-"
                                        r"ubyte.gz in "):
        load_source(config)


def test_a_truncated_idx_file_is_named(tmp_path):
    _write_flat_idx(tmp_path, n_train=20, n_test=10, gzipped=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    config = TrialConfig.model_validate(
        {"data": {"dataset": "mnist", "data_root": str(tmp_path)}}
    ).data
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: 15675 bytes of data, but its "
                                        r"header says \(20, 28, 28\)"):
        load_source(config)


def test_a_dataset_is_one_catalog_entry(tmp_path, monkeypatch):
    """Declaring KMNIST (MNIST's on-disk format, 16x16 by default) in the catalog is all it
    takes for a run file to validate against it and for its files to load."""
    from cl_sweeps.data import catalog

    kmnist = catalog.DatasetInfo("kmnist", 10, 16, "idx", "KMNIST")
    monkeypatch.setitem(catalog.DATASETS, "kmnist", kmnist)
    with pytest.raises(ConfigError, match=r"data.dataset.*'kmnist2'.*allowed: .*kmnist"):
        parse_trial_config({"data": {"dataset": "kmnist2", "data_root": "x"}})
    with pytest.raises(ConfigError, match="data.data_root is required"):
        parse_trial_config({"data": {"dataset": "kmnist"}})
    _write_mnist_like(tmp_path, "KMNIST", n_train=40, n_test=20)
    config = TrialConfig.model_validate(
        {"data": {"dataset": "kmnist", "data_root": str(tmp_path)}}
    ).data
    source = load_source(config)
    assert source.train.images.shape == (40, 1, 16, 16) and source.name == "kmnist"
    assert [len(t) for t in build_task_stream(config, source).train] == [8] * 5


def test_missing_torchvision_files_name_the_option(tmp_path):
    config = TrialConfig.model_validate(
        {"data": {"dataset": "fashion_mnist", "data_root": str(tmp_path)}}
    ).data
    with pytest.raises(DataError, match="FashionMNIST/raw/train-images-idx3-ubyte: missing"):
        load_source(config)


def test_class_outside_dataset_is_rejected_before_any_data():
    with pytest.raises(ConfigError, match=r"class 12 does not exist.*0\.\.9"):
        resolve_task_classes(DataConfig.model_construct(tasks=[[0, 12]], num_tasks=5), 10)
    with pytest.raises(ConfigError, match=r"^data: tasks\[0\] has class ids \[12\]; allowed: 0\.\.9"):
        parse_trial_config({"data": {"tasks": [[0, 12]]}})


@pytest.mark.parametrize(
    ("seed", "order"),
    [
        (42, [2, 6, 1, 8, 4, 5, 0, 9, 3, 7]),
        (69, [0, 2, 3, 5, 4, 1, 6, 9, 8, 7]),
        (1714, [7, 3, 8, 0, 1, 4, 6, 2, 9, 5]),
    ],
)
def test_paper_class_orders_are_pinned(seed, order):
    """The reference (Avalanche) seeds torch's global RNG and takes randperm of the class ids."""
    tasks = resolve_task_classes(DataConfig(class_order_seed=seed), 10)
    assert tasks == [order[i : i + 2] for i in range(0, 10, 2)]
    torch.manual_seed(seed)
    assert torch.randperm(10).tolist() == order


def test_flip_augmentation_is_on_for_cifar10_only_by_default():
    defaults = {
        name: DataConfig(dataset=name, data_root="x").resolved_augment()
        for name in ("digits", "mnist", "fashion_mnist", "cifar10")
    }
    assert defaults == {"digits": False, "mnist": False, "fashion_mnist": False, "cifar10": True}
    assert DataConfig(dataset="cifar10", augment=False).resolved_augment() is False
    assert DataConfig(augment=True).resolved_augment() is True


def test_random_hflip_flips_about_half_the_images_reproducibly():
    from cl_sweeps.data.augment import random_hflip
    from cl_sweeps.data.sources import ImageSet

    images = torch.randn(400, 3, 4, 4)
    batch = ImageSet(images, torch.arange(400))
    out = random_hflip(batch, torch.Generator().manual_seed(0))
    flipped = (out.images == images.flip(-1)).flatten(1).all(1)
    kept = (out.images == images).flatten(1).all(1)
    assert (flipped ^ kept).all() and 150 < int(flipped.sum()) < 250
    assert torch.equal(out.labels, batch.labels)
    again = random_hflip(batch, torch.Generator().manual_seed(0))
    assert torch.equal(again.images, out.images)
