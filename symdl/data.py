"""Datasets for the trainer: scikit-learn's digits, MNIST-1D, and user arrays (.npz).

Every loader returns a :class:`Dataset`: float64 inputs shaped ``(N, C, H, W)``
(or ``(N, features)`` for flat user arrays), int64 labels in ``0..C-1``, and a
train/test split that depends on nothing but the data, so that runs with
different seeds are scored on the same test set.

* ``digits``: ``sklearn.datasets.load_digits`` (bundled with scikit-learn, no
  download): 1,797 images of 8x8 pixels in 0..16, shaped ``(N, 1, 8, 8)``,
  standardised with the training set's mean and standard deviation; 20% held
  out by a fixed permutation.
* ``mnist1d``: the ``mnist1d`` package's procedural ``make_dataset`` (no
  download, nothing written): 5,000 signals of length 40, shaped
  ``(N, 1, 1, 40)`` so the 2-D layers apply; its own 80/20 split. It reseeds
  Python's and NumPy's global generators, so we save and restore both.
* ``path.npz``: arrays ``x_train, y_train, x_test, y_test``, or ``x, y`` split
  like digits; used as given (not standardised).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from symdl.errors import SymdlError
from symdl.files import UnreadableFileError, read_npz

#: Share of the examples held out for testing where the source has no split.
TEST_FRACTION = 0.2
#: Seed of the fixed permutation that splits such sources (independent of the training seed).
SPLIT_SEED = 0
#: Most classes a dataset may have (labels 0..MAX_CLASSES-1): the model's last layer has one output per class,
#: so a stray label of 1e9 would otherwise ask for gigabytes of weights.
MAX_CLASSES = 10_000


class DataError(SymdlError, ValueError):
    """A dataset name, file or array is unusable; the message says which rule it breaks."""


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of a classification problem."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch axis."""
        return tuple(self.x_train.shape[1:])


def split(x: np.ndarray, y: np.ndarray, name: str, test_fraction: float = TEST_FRACTION) -> Dataset:
    """Hold out ``test_fraction`` of the examples, chosen by a permutation seeded with :data:`SPLIT_SEED`."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return checked(name, x[train], y[train], x[test], y[test])


def checked(name: str, x_train: object, y_train: object, x_test: object, y_test: object) -> Dataset:
    """A :class:`Dataset` after checking dtypes, lengths and labels.

    Raises:
        DataError: naming the array and the rule it breaks.
    """
    arrays = {"x_train": np.asarray(x_train), "y_train": np.asarray(y_train),
              "x_test": np.asarray(x_test), "y_test": np.asarray(y_test)}
    for key in ("x_train", "x_test"):
        if arrays[key].dtype.kind not in "fiub" or arrays[key].ndim < 2:
            raise DataError(f"{name}: {key} must be a real array of shape (N, ...), "
                            f"got dtype {arrays[key].dtype} and shape {arrays[key].shape}")
        if 0 in arrays[key].shape[1:]:
            raise DataError(f"{name}: {key} examples have no features (shape {arrays[key].shape})")
        if not np.isfinite(arrays[key]).all():
            raise DataError(f"{name}: {key} holds NaN or infinite values")
    for key in ("y_train", "y_test"):
        if arrays[key].dtype.kind not in "iu" or arrays[key].ndim != 1:
            raise DataError(f"{name}: {key} must be a 1-D array of integer class labels, "
                            f"got dtype {arrays[key].dtype} and shape {arrays[key].shape}")
        if arrays[key].size and arrays[key].min() < 0:
            raise DataError(f"{name}: {key} holds a negative class label {arrays[key].min()}")
        if arrays[key].size and arrays[key].max() >= MAX_CLASSES:
            raise DataError(f"{name}: {key} holds the class label {arrays[key].max()}; labels must be 0 to "
                            f"{MAX_CLASSES - 1} (at most {MAX_CLASSES} classes)")
    for part in ("train", "test"):
        if len(arrays[f"x_{part}"]) != len(arrays[f"y_{part}"]) or len(arrays[f"y_{part}"]) == 0:
            raise DataError(f"{name}: x_{part} and y_{part} must hold the same, non-zero number of examples, "
                            f"got {len(arrays[f'x_{part}'])} and {len(arrays[f'y_{part}'])}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{name}: x_train and x_test examples differ in shape: "
                        f"{arrays['x_train'].shape[1:]} and {arrays['x_test'].shape[1:]}")
    return Dataset(name, arrays["x_train"].astype(np.float64), arrays["y_train"].astype(np.int64),
                   arrays["x_test"].astype(np.float64), arrays["y_test"].astype(np.int64),
                   num_classes=int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1)


def standardized(dataset: Dataset) -> Dataset:
    """Inputs shifted and scaled by the training set's mean and standard deviation (one scalar
    each, as torchvision's ``Normalize``), so the first layer sees zero-mean, unit-variance data."""
    mean, std = dataset.x_train.mean(), dataset.x_train.std()
    return replace(dataset, x_train=(dataset.x_train - mean) / std, x_test=(dataset.x_test - mean) / std)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (pixels 0..16), standardised, shaped (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return standardized(split(bunch.images[:, None].astype(np.float64), bunch.target, "digits"))


@contextlib.contextmanager
def global_random_state_kept() -> Iterator[None]:
    """Restore Python's and NumPy's global random generators on exit (for code that reseeds them)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def load_mnist1d(num_samples: int = 5000) -> Dataset:
    """MNIST-1D (Greydanus 2020) built by ``mnist1d.data.make_dataset`` with its default
    arguments (seed 42), shaped (N, 1, 1, 40); the package's own 80/20 split.

    ``make_dataset`` writes no file (``get_dataset`` would, into the working
    directory) but reseeds the global generators, which we restore.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:  # a declared dependency, but say what to do if it is missing
        raise DataError(f"mnist1d: the mnist1d package is not installed ({error}); pip install mnist1d") from None
    args = get_dataset_args()
    args.num_samples = num_samples
    with global_random_state_kept():
        data = make_dataset(args)
    return checked("mnist1d", data["x"][:, None, None, :], data["y"], data["x_test"][:, None, None, :],
                   data["y_test"])


def load_npz(path: Path) -> Dataset:
    """User arrays from ``path``: ``x_train, y_train, x_test, y_test``, or ``x, y`` (split here).

    Inputs of shape (N, H, W) get a channel axis: (N, 1, H, W).
    """
    name = str(path)
    try:
        arrays = read_npz(path)  # missing, not a zip, truncated (BadZipFile), pickled objects, too large
    except UnreadableFileError as error:
        raise DataError(str(error)) from None
    add_channel = {"x", "x_train", "x_test"}
    arrays = {key: value[:, None] if key in add_channel and value.ndim == 3 else value for key, value in arrays.items()}
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return checked(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    if {"x", "y"} <= arrays.keys():
        x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
        if x.ndim == 0 or y.ndim == 0:
            raise DataError(f"{name}: x and y must be arrays of examples, got shapes {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{name}: x and y must hold the same number of examples, got {len(x)} and {len(y)}")
        return split(x, y, name)
    raise DataError(f"{name}: expected arrays x_train, y_train, x_test, y_test (or x, y); found "
                    f"{', '.join(sorted(arrays)) or 'none'}")


#: Built-in datasets by name; anything ending in ``.npz`` is a user file.
DATASETS: dict[str, Callable[[], Dataset]] = {"digits": load_digits, "mnist1d": load_mnist1d}


def load(name: str) -> Dataset:
    """The dataset called ``name`` (see :data:`DATASETS`) or the ``.npz`` file at that path."""
    if name in DATASETS:
        return DATASETS[name]()
    if name.endswith(".npz"):
        return load_npz(Path(name))
    raise DataError(f"unknown dataset {name!r}; choose {', '.join(DATASETS)} or a path ending in .npz")


def batches(n: int, batch_size: int, generator: np.random.Generator | None) -> list[np.ndarray]:
    """Index arrays of consecutive batches over ``n`` examples (the last may be short),
    in an order shuffled by ``generator`` (None: in order), as ``DataLoader(shuffle=...)``."""
    order = np.arange(n) if generator is None else generator.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]
