"""Image sources as in-memory tensors in [-1, 1].

Each dataset is declared in `catalog.py`; its `loader` says how it is read here: `digits` is
scikit-learn's bundled 8x8 handwritten digits (no download); `idx` (MNIST's format) datasets
are read from `data_root` as a flat directory of the four IDX files or torchvision's layout
(`idx.py`), `cifar` datasets in torchvision's own on-disk format; all are resized from 28x28
(or 32x32) to the configured size, as in the paper.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cl_sweeps.config import DataConfig
from cl_sweeps.data.catalog import DatasetInfo
from cl_sweeps.data.idx import IDX_MAGIC, DataError, find_idx_file, missing_idx_message, read_idx
from cl_sweeps.data.validation import held_out_index

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed: the train/test split never changes between trials


@dataclass
class ImageSet:
    """Images (N, C, H, W) float in [-1, 1] and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])

    def of_classes(self, classes: list[int]) -> ImageSet:
        mask = torch.isin(self.labels, torch.tensor(classes, dtype=self.labels.dtype))
        return self.subset(mask.nonzero().flatten())


@dataclass
class SourceData:
    """A dataset's train and test splits with its shape."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    channels: int
    image_size: int
    validation: ImageSet | None = None  # held out of train (data.validation_per_class)


def _to_unit_range(images: torch.Tensor, max_value: float, size: int) -> torch.Tensor:
    """Scale raw pixels to [-1, 1] and resize (bilinear) to size x size."""
    x = images.float() / max_value
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices into sklearn's digits of the fixed, stratified train and test splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    return train_test_split(
        np.arange(len(target)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=target,
    )


def _load_digits(info: DatasetInfo, size: int) -> tuple[ImageSet, ImageSet]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = digits_split()
    x = _to_unit_range(images, info.pixel_max, size)
    train = ImageSet(x[torch.from_numpy(train_idx)], labels[torch.from_numpy(train_idx)])
    test = ImageSet(x[torch.from_numpy(test_idx)], labels[torch.from_numpy(test_idx)])
    return train, test


def _load_idx(info: DatasetInfo, root: str, download: bool, size: int
              ) -> tuple[ImageSet, ImageSet]:
    """An MNIST-like dataset from its four IDX files: a flat directory (Debian's package, a
    cluster's shared copy) or torchvision's layout, gzipped or not; torchvision only downloads."""
    folder = info.torchvision_class or ""
    base = Path(root).expanduser()
    splits = []
    for train, split in ((True, "train"), (False, "t10k")):
        if download and find_idx_file(base, folder, split, "images") is None:
            _torchvision_split(info, root, download=True, train=train)  # fetches the files
        files = []
        for kind in IDX_MAGIC:
            path = find_idx_file(base, folder, split, kind)
            if path is None:
                raise DataError(missing_idx_message(base, folder, split, kind))
            files.append(path)
        images, labels = read_idx(files[0], "images"), read_idx(files[1], "labels")
        if len(labels) != len(images):
            raise DataError(f"data.dataset={info.name!r}: {files[1]} holds {len(labels)} labels "
                            f"for {len(images)} images in {files[0]}; the files do not belong "
                            "together")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        y = torch.from_numpy(labels.astype(np.int64))
        splits.append(ImageSet(_to_unit_range(x, info.pixel_max, size), y))
    return splits[0], splits[1]


def _check_cifar_files(cls: type, root: Path, train: bool) -> None:
    from torchvision.datasets.utils import check_integrity

    folder = root / cls.base_folder
    for name, md5 in cls.train_list if train else cls.test_list:
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{path}: missing ({cls.__name__}); put torchvision's files under "
                "data.data_root or set data.download=true"
            )
        if not check_integrity(str(path), md5):
            raise DataError(f"{path}: corrupt (its MD5 checksum is not {cls.__name__}'s)")


def _torchvision_split(info: DatasetInfo, root: str, download: bool, train: bool
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's raw images and labels through the dataset's torchvision class."""
    from torchvision import datasets

    cls = getattr(datasets, info.torchvision_class or "")
    try:
        ds = cls(root=str(Path(root).expanduser()), train=train, download=download)
        data = torch.as_tensor(np.asarray(ds.data))
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    except (RuntimeError, AssertionError, OSError, ValueError, EOFError, KeyError,
            pickle.UnpicklingError) as error:
        raise DataError(
            f"data.dataset={info.name!r}: could not load it from data.data_root={root!r} "
            f"({type(error).__name__}: {str(error)[:200]}); put torchvision's files there "
            "or set data.download=true"
        ) from None
    return data, labels


def _load_cifar(info: DatasetInfo, root: str, download: bool, size: int
                ) -> tuple[ImageSet, ImageSet]:
    from torchvision import datasets

    cls = getattr(datasets, info.torchvision_class or "")
    splits = []
    for train in (True, False):
        if not download:
            _check_cifar_files(cls, Path(root).expanduser(), train)
        data, labels = _torchvision_split(info, root, download, train)
        if len(labels) != len(data):
            raise DataError(f"data.dataset={info.name!r}: {len(labels)} labels for {len(data)} "
                            "images; the files do not belong together")
        images = data.permute(0, 3, 1, 2)
        splits.append(ImageSet(_to_unit_range(images, info.pixel_max, size), labels))
    return splits[0], splits[1]


def _cap_per_class(images: ImageSet, cap: int | None, seed: int) -> ImageSet:
    """Keep at most `cap` images per class (a seeded choice), for small quick runs."""
    if cap is None:
        return images
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in images.labels.unique().tolist():
        idx = (images.labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=generator)[:cap]].sort().values)
    return images.subset(torch.cat(keep).sort().values)


def hold_out(train: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train without the validation split, the validation split); see data/validation.py."""
    held = held_out_index(train.labels, per_class, seed)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[held] = False
    return train.subset(keep.nonzero().flatten()), train.subset(held)


def load_source(config: DataConfig) -> SourceData:
    """Load a dataset's splits as tensors in [-1, 1] at the configured image size."""
    size = config.resolved_image_size()
    if config.info.loader == "digits":
        train, test = _load_digits(config.info, size)
    else:
        load = _load_idx if config.info.loader == "idx" else _load_cifar
        train, test = load(config.info, config.data_root or "", config.download, size)
    train = _cap_per_class(train, config.max_train_per_class, DIGITS_SPLIT_SEED)
    test = _cap_per_class(test, config.max_test_per_class, DIGITS_SPLIT_SEED + 1)
    validation = None
    if config.validation_per_class is not None:
        train, validation = hold_out(train, config.validation_per_class, config.validation_seed)
    num_classes = config.info.num_classes
    largest = int(max(train.labels.max(), test.labels.max()))
    if largest >= num_classes:
        raise DataError(f"data.dataset={config.dataset!r}: label {largest} in the files, but the "
                        f"dataset has {num_classes} classes (data/catalog.py)")
    return SourceData(
        name=config.dataset,
        train=train,
        test=test,
        num_classes=num_classes,
        channels=train.images.shape[1],
        image_size=size,
        validation=validation,
    )
