"""Which datasets exist and what each one implies, known without torch.

One `DatasetInfo` per dataset in `DATASETS` is the whole declaration: the config layer reads it
to validate class ids, task counts, the default image size and whether `data_root` is needed;
evaluation reads its `auto` feature space and classifier; `sources.py` loads the images through
its `loader`. Adding a torchvision dataset in MNIST's or CIFAR's on-disk format is one entry
here (and its README row under "Data").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loader = Literal["digits", "idx", "cifar"]  # how sources.py reads the files


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's declaration (see the module docstring)."""

    name: str
    num_classes: int
    image_size: int  # default side after resizing (the paper's 32 for torchvision datasets)
    loader: Loader
    torchvision_class: str | None = None  # torchvision.datasets.<class> for idx/cifar loaders
    pixel_max: float = 255.0  # raw pixel value that maps to 1.0
    fid_features: Literal["classifier", "inception"] = "inception"  # evaluation's `auto`
    classifier_arch: Literal["small_cnn", "resnet18"] = "resnet18"  # evaluation's `auto`
    augment: bool = False  # data.augment=null: random horizontal flips (the paper: CIFAR only)
    # held out of the training set to pick the resnet18 classifier's best epoch, as the paper's
    # train_kld_classifier.py: 10,000 of Fashion-MNIST's 60,000, 5,000 of CIFAR-10's 50,000
    classifier_val_fraction: float = 0.1
    # training images of its smallest class in the standard files (digits: our fixed split),
    # so that data.validation_per_class is checked before any data is read
    min_train_per_class: int = 0

    def __post_init__(self) -> None:
        if self.loader != "digits" and not self.torchvision_class:
            raise ValueError(f"dataset {self.name!r}: loader {self.loader!r} needs the "
                             "torchvision_class that reads its files")

    @property
    def needs_data_root(self) -> bool:
        """Read from files under data.data_root (everything but the embedded digits)."""
        return self.loader != "digits"


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # scikit-learn's bundled 8x8 digits: Inception features are meaningless at 8x8.
        DatasetInfo("digits", 10, 8, "digits", pixel_max=16.0, fid_features="classifier",
                    classifier_arch="small_cnn", min_train_per_class=139),  # class 8
        DatasetInfo("mnist", 10, 32, "idx", "MNIST", min_train_per_class=5421),  # class 5
        DatasetInfo("fashion_mnist", 10, 32, "idx", "FashionMNIST", classifier_val_fraction=1 / 6,
                    min_train_per_class=6000),
        DatasetInfo("cifar10", 10, 32, "cifar", "CIFAR10", augment=True,
                    min_train_per_class=5000),
    )
}


def validation_split_problem(
    info: DatasetInfo, per_class: int | None, max_train_per_class: int | None
) -> str | None:
    """Why `data.validation_per_class` cannot be held out (every class must keep a training
    image), or None: known from the catalog, so a run or sweep fails before any compute."""
    if per_class is None or not info.min_train_per_class:
        return None
    available = info.min_train_per_class
    why = f"the smallest class of {info.name} has {available} training images"
    if max_train_per_class is not None and max_train_per_class < available:
        available = max_train_per_class
        why = f"max_train_per_class={available} keeps {available} training images per class"
    if per_class < available:
        return None
    return (f"validation_per_class={per_class} would leave a class without training images "
            f"({why}); allowed: at most {available - 1}")


def dataset_names() -> list[str]:
    """Names accepted by `data.dataset`."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The declaration of dataset `name`; ValueError naming the allowed ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}"
        ) from None
