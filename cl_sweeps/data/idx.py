"""MNIST's IDX files, read without torchvision: found in a flat directory or torchvision's layout,
gzipped or not.

Debian's `dataset-fashion-mnist` package and many offline clusters keep the four files of
Fashion-MNIST (or MNIST) side by side, gzipped, in one directory; torchvision expects them under
`<root>/<Class>/raw/`. Both are accepted, so no download and no copying are needed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cl_sweeps.errors import UsageError


class DataError(UsageError):
    """A dataset file is missing, corrupt or inconsistent; the message names the file."""


IDX_MAGIC = {"images": 2051, "labels": 2049}  # MNIST's IDX headers: ubyte, 3 or 1 dimensions
_FILE_STEM = {"images": "images-idx3-ubyte", "labels": "labels-idx1-ubyte"}


def idx_file_name(split: str, kind: str) -> str:
    """`train-images-idx3-ubyte` and its siblings (split: train or t10k; kind: images, labels)."""
    return f"{split}-{_FILE_STEM[kind]}"


def find_idx_file(root: Path, torchvision_folder: str, split: str, kind: str) -> Path | None:
    """The file `<split>-<kind>` in `root` (flat) or `root/<torchvision_folder>/raw`, plain or
    `.gz`, in that order; None when none of the four exists."""
    name = idx_file_name(split, kind)
    for folder in (root, root / torchvision_folder / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def missing_idx_message(root: Path, torchvision_folder: str, split: str, kind: str) -> str:
    """Why a file was not found, naming it and both places looked in."""
    name = idx_file_name(split, kind)
    return (
        f"{root / torchvision_folder / 'raw' / name}: missing ({torchvision_folder} {kind}), and "
        f"no {name} or {name}.gz in {root}; put the four IDX files (gzipped or not) in "
        "data.data_root, torchvision's files under it, or set data.download=true"
    )


def read_idx(path: Path, kind: str) -> np.ndarray:
    """The uint8 array stored in an IDX file (gzipped when its name ends in .gz).

    The header is checked against MNIST's (`IDX_MAGIC[kind]`) and the payload against the
    header's dimensions, so a corrupt or truncated file is named instead of misread.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != IDX_MAGIC[kind]:
        raise DataError(
            f"{path}: not an IDX {kind} file (magic number {magic}, expected {IDX_MAGIC[kind]}); "
            "the file is corrupt or not an MNIST-like dataset's"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: {len(raw) - header} bytes of data, but its header says {dims} "
            f"({expected} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
