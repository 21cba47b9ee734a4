"""symdl.data: built-in datasets, user .npz files, deterministic splits and batches."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symdl import data


def test_digits_shapes_range_and_split() -> None:
    dataset = data.load_digits()
    assert dataset.x_train.shape == (1438, 1, 8, 8) and dataset.x_test.shape == (359, 1, 8, 8)
    assert dataset.num_classes == 10 and dataset.input_shape == (1, 8, 8)
    assert abs(dataset.x_train.mean()) < 1e-12 and abs(dataset.x_train.std() - 1) < 1e-12  # standardised
    assert len(np.unique(dataset.x_train)) == 17  # the 17 grey levels survive
    assert set(np.unique(dataset.y_test)) == set(range(10))
    again = data.load_digits()
    assert np.array_equal(dataset.x_train, again.x_train) and np.array_equal(dataset.y_test, again.y_test)


def test_split_is_a_disjoint_cover_independent_of_global_state() -> None:
    x = np.arange(50, dtype=np.float64)[:, None]
    y = np.arange(50) % 5
    np.random.seed(123)
    first = data.split(x, y, "toy")
    np.random.seed(456)
    second = data.split(x, y, "toy")
    assert np.array_equal(first.x_test, second.x_test)
    assert len(first.y_test) == 10
    assert sorted(np.concatenate([first.x_train, first.x_test])[:, 0]) == list(range(50))


def test_mnist1d_leaves_global_generators_and_working_directory_alone(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    random.seed(7)
    np.random.seed(7)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    dataset = data.load_mnist1d(num_samples=200)
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    assert os.listdir(tmp_path) == []
    assert dataset.x_train.shape == (160, 1, 1, 40) and dataset.x_test.shape == (40, 1, 1, 40)
    assert dataset.num_classes == 10
    assert np.array_equal(dataset.x_train, data.load_mnist1d(num_samples=200).x_train)  # procedural, seeded


def test_npz_with_explicit_split_and_with_x_y(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((30, 5, 5)).astype(np.float32)
    labels = np.arange(30) % 3
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=images[:20], y_train=labels[:20], x_test=images[20:], y_test=labels[20:])
    dataset = data.load(str(path))
    assert dataset.x_train.shape == (20, 1, 5, 5)  # a channel axis is added to (N, H, W)
    assert np.array_equal(dataset.x_test[:, 0], images[20:]) and dataset.num_classes == 3
    np.savez(path, x=images.reshape(30, -1), y=labels)
    dataset = data.load(str(path))
    assert dataset.x_train.shape == (24, 25) and dataset.x_test.shape == (6, 25)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((4, 2)), "y": np.zeros(4)}, "integer class labels"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 0])}, "negative class label"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3, int)}, "same number of examples"),
    ({"x": np.full((5, 2), np.nan), "y": np.zeros(5, int)}, "NaN"),
    ({"inputs": np.zeros((4, 2))}, "expected arrays x_train"),
    ({"x": np.array([["a", "b"]] * 5), "y": np.zeros(5, int)}, "real array"),
])
def test_bad_npz_names_the_rule(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message):
        data.load(str(path))


def test_missing_unreadable_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="no such file"):
        data.load(str(tmp_path / "absent.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable"):
        data.load(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "objects.npz", x=np.array([{}, {}], dtype=object), y=np.zeros(2, int))
    with pytest.raises(data.DataError, match="not a readable"):
        data.load(str(tmp_path / "objects.npz"))
    with pytest.raises(data.DataError, match="unknown dataset 'mnist'"):
        data.load("mnist")


def test_batches_cover_every_example_once_in_a_seeded_order() -> None:
    first = data.batches(70, 32, np.random.default_rng(3))
    assert [len(b) for b in first] == [32, 32, 6]
    assert sorted(np.concatenate(first)) == list(range(70))
    second = data.batches(70, 32, np.random.default_rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(np.concatenate(data.batches(70, 32, None)), np.arange(70))


@settings(max_examples=40)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 100), seed=st.integers(0, 2**32 - 1))
def test_batches_property(n: int, batch_size: int, seed: int) -> None:
    parts = data.batches(n, batch_size, np.random.default_rng(seed))
    assert all(len(p) == batch_size for p in parts[:-1]) and 1 <= len(parts[-1]) <= batch_size
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
