"""Batch parallelism (``symdl.kernels.set_num_threads``): a split batch gives the one-thread results.

Every test forces the split (the size threshold set to one nanosecond), so small hypothesis-drawn
geometry runs through the chunked code: per-chunk outputs written into the right rows, per-chunk
weight and bias sums added, the forward's per-chunk columns carried to the backward.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import warnings
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symdl.kernels as K
from symdl.catalog.layers import LAYER_BY_NAME
from symdl.proofs.layers import prove_instance
from symdl.errors import OpParameterError
from symdl.kernels import _parallel
from tests.test_layers import GEOMETRY, _conv_arrays, conv_cases, pool_cases

EPS = np.finfo(np.float64).eps


@contextlib.contextmanager
def split_batches() -> Iterator[None]:
    """Three threads, and every batch of more than one sample split (the size threshold set to one
    nanosecond); one thread again after."""
    threshold = _parallel.MIN_CHUNK_NANOSECONDS
    _parallel.MIN_CHUNK_NANOSECONDS = 1
    K.set_num_threads(3)
    try:
        yield
    finally:
        _parallel.MIN_CHUNK_NANOSECONDS = threshold
        K.set_num_threads(1)


def assert_within_rounding(split_result: np.ndarray | None, one: np.ndarray | None, magnitude: np.ndarray | None,
                           terms: int) -> None:
    """Two float64 evaluations of the same sums of ``terms`` products, grouped differently, differ by
    at most 2 * gamma_terms * (the sums of the products' magnitudes): the standard bound."""
    assert (split_result is None) == (one is None)
    if one is None:
        return
    assert split_result.shape == one.shape and split_result.dtype == one.dtype
    gamma = terms * EPS / (1 - terms * EPS)
    assert np.all(np.abs(split_result - one) <= 2 * gamma * magnitude)


def test_set_num_threads_checks_its_argument() -> None:
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(OpParameterError, match="set_num_threads: threads must be an int >= 1"):
            K.set_num_threads(bad)  # type: ignore[arg-type]
    assert K.get_num_threads() == 1
    K.set_num_threads(np.int64(2))
    try:
        assert K.get_num_threads() == 2 and type(K.get_num_threads()) is int
    finally:
        K.set_num_threads(1)


def test_chunks_cover_the_batch_once_per_thread_when_the_work_pays() -> None:
    K.set_num_threads(3)
    try:
        big = 10 * _parallel.MIN_CHUNK_NANOSECONDS
        assert _parallel.chunks(10, big, np.dtype(np.float64)) == [(0, 3), (3, 6), (6, 10)]
        assert _parallel.chunks(2, big, np.dtype(np.float32)) == [(0, 1), (1, 2)]          # a sample per chunk at most
        assert _parallel.chunks(10, 2 * _parallel.MIN_CHUNK_NANOSECONDS, np.dtype(np.float64)) == [(0, 5), (5, 10)]
        assert _parallel.chunks(10, _parallel.MIN_CHUNK_NANOSECONDS, np.dtype(np.float64)) == [(0, 10)]
        assert _parallel.chunks(10, big, np.dtype(object)) == [(0, 10)]                  # SymPy arrays: never split
    finally:
        K.set_num_threads(1)
    assert _parallel.chunks(10, big, np.dtype(np.float64)) == [(0, 10)]


def test_run_returns_results_in_order_and_raises_after_every_task_ended() -> None:
    K.set_num_threads(2)
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.05)
        finished.set()
        return "slow"

    def broken() -> str:
        raise ArithmeticError("chunk failed")

    try:
        assert _parallel.run([lambda: 1, lambda: 2]) == [1, 2]
        with pytest.raises(ArithmeticError, match="chunk failed"):
            _parallel.run([slow, broken])
        assert finished.is_set()  # the failing last task did not leave the other one running
    finally:
        K.set_num_threads(1)


@given(conv_cases(), st.integers(2, 5), st.sampled_from(["conv2d", "conv1d"]))
@GEOMETRY
def test_split_convolution_equals_one_thread_to_rounding(case: dict, batch: int, op: str) -> None:
    if op == "conv1d":
        case = {**case, "kernel": case["kernel"][1:], "sizes": case["sizes"][1:]}
    rng, arrays = _conv_arrays({**case, "n": batch})
    forward, vjp, params = getattr(K, op), getattr(K, f"{op}_vjp"), case["params"]
    x, w, b = arrays
    magnitudes = [np.abs(x), np.abs(w), None if b is None else np.abs(b)]

    with split_batches():
        out, columns = forward(*arrays, **params, return_columns=True)
    assert type(columns) is tuple and len(columns) == min(3, batch)  # one per chunk: the split did happen
    expected, expected_columns = forward(*arrays, **params, return_columns=True)
    assert_within_rounding(out, expected, forward(*magnitudes, **params), w[0].size + 1)
    # each chunk's columns are its samples' (G, rows, Ho * Wo, n): together, the whole batch's
    groups, rows, positions = expected_columns.shape
    pixels = positions // batch
    np.testing.assert_array_equal(np.concatenate([c.reshape(groups, rows, pixels, -1) for c in columns], axis=-1),
                                  expected_columns.reshape(groups, rows, pixels, batch))

    g = rng.standard_normal(out.shape)
    with split_batches():
        grads = vjp(g, *arrays, **params)
        with_columns = vjp(g, *arrays, **params, columns=columns)
    carried = vjp(g, *arrays, **params, columns=columns)  # the columns' chunking, on one thread
    expected_grads = vjp(g, *arrays, **params)
    grad_magnitudes = vjp(np.abs(g), *magnitudes, **params)
    terms = max(out[0, 0].size * batch, w.shape[0] * w[0, 0].size) + 1
    for split_grad, kept, same_chunks, one, magnitude in zip(grads, with_columns, carried, expected_grads,
                                                             grad_magnitudes):
        assert_within_rounding(split_grad, one, magnitude, terms)
        if one is not None:  # the same chunks in the same order: the same bits, whatever the thread count
            np.testing.assert_array_equal(kept, split_grad)
            np.testing.assert_array_equal(same_chunks, split_grad)


@given(pool_cases(), st.integers(2, 5))
@GEOMETRY
def test_split_max_pool_equals_one_thread_bit_for_bit(case: dict, batch: int) -> None:
    rng = np.random.default_rng(case["seed"])
    shape, params = (batch, *case["shape"][1:]), case["params"]
    x = rng.integers(0, 3, shape).astype(np.float64) if case["ties"] else rng.standard_normal(shape)
    with split_batches():
        out, index = K.max_pool2d(x, return_indices=True, **params)
    expected, expected_index = K.max_pool2d(x, return_indices=True, **params)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(index, expected_index)
    g = rng.standard_normal(out.shape)
    (expected_grad,) = K.max_pool2d_vjp(g, x, **params)
    for indices in (None, index):  # rescanning each chunk, or scattering from the forward's indices
        with split_batches():
            (grad,) = K.max_pool2d_vjp(g, x, indices=indices, **params)
        np.testing.assert_array_equal(grad, expected_grad)


@given(st.integers(2, 5), st.integers(1, 3), st.lists(st.integers(1, 4), min_size=0, max_size=2), st.booleans(),
       st.integers(0, 2**16))
def test_split_batch_norm_equals_one_thread_to_rounding(batch: int, channels: int, spatial: list[int], affine: bool,
                                                         seed: int) -> None:
    """Training batch norm's statistics from per-chunk partial sums: the forward, the running statistics
    and every gradient agree with one thread's to rounding (the sums are grouped differently)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, *spatial)) * 3 + 1
    w, b = (rng.standard_normal(channels), rng.standard_normal(channels)) if affine else (None, None)
    g = rng.standard_normal(x.shape)
    results = {}
    for label, context in (("split", split_batches), ("one", contextlib.nullcontext)):
        running = [np.zeros(channels), np.ones(channels)]
        with context():
            out = K.batch_norm(x, *running, w, b, training=True)
            grads = K.batch_norm_vjp(g, x, None, None, w, b, training=True)
        results[label] = [out, *running, *(a for a in grads if a is not None)]
    for split, one in zip(results["split"], results["one"]):
        np.testing.assert_allclose(split, one, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(one).max()))


# --------------------------------------------------------------------------- the chunked programs, proven
def _two_chunks(batch: int, nanoseconds: int, dtype: np.dtype) -> list[tuple[int, int]]:
    """Every batch split after its first sample, object arrays too (the proofs' symbols)."""
    return [(0, 1), (1, batch)]


@pytest.mark.parametrize("name", ["conv1d", "conv2d", "max_pool1d", "max_pool2d", "batch_norm"])
def test_the_chunked_programs_are_proven_like_the_whole_batch(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The layer proofs (SymPy's derivative of the index-level definition, compared exactly) on
    batches of 3 split into chunks of 1 and 2: the per-chunk rows, the sums across chunks and
    the carried columns are right for any values, not only for the drawn ones."""
    monkeypatch.setattr(_parallel, "chunks", _two_chunks)
    layer = LAYER_BY_NAME[name]
    for instance in layer.instances[::4]:
        shape = instance.shapes["input"]
        batched = dataclasses.replace(instance, shapes={**instance.shapes, "input": (3, *shape[1:])})
        assert prove_instance(layer, batched) == [], batched.label()


@pytest.mark.parametrize(("name", "caught"), [("conv2d", "d_weight differs"), ("batch_norm", "forward differs")])
def test_the_chunked_proof_catches_a_chunk_sum_left_out(monkeypatch: pytest.MonkeyPatch, name: str, caught: str) -> None:
    monkeypatch.setattr(_parallel, "chunks", _two_chunks)
    real_run = _parallel.run
    monkeypatch.setattr(_parallel, "run", lambda tasks: real_run(tasks)[:1] * len(tasks))  # every chunk's sums = the first's
    layer = LAYER_BY_NAME[name]
    instance = next(i for i in layer.instances if i.params.get("training", True))
    batched = dataclasses.replace(instance, shapes={**instance.shapes, "input": (3, *instance.shapes["input"][1:])})
    assert any(caught in failure for failure in prove_instance(layer, batched))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_splits_batches_on_its_own_pool() -> None:
    """The parent's pool threads do not exist in a forked child: handing them a task would hang."""
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6))
    with split_batches():
        K.set_num_threads(2)  # a pool of one thread: the child's hand-off would find no worker
        expected = K.max_pool2d(x, kernel_size=2)  # starts the parent's pool
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child: one split call, its result to the parent through the pipe
            try:
                os.write(write, np.ascontiguousarray(K.max_pool2d(x, kernel_size=2)).tobytes())
            finally:
                os._exit(0)
        os.close(write)
        deadline = time.monotonic() + 30
        while os.waitpid(child, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(child, 9)
                pytest.fail("the forked child's split call did not finish")
            time.sleep(0.01)
        with os.fdopen(read, "rb") as pipe:
            result = np.frombuffer(pipe.read(), dtype=expected.dtype).reshape(expected.shape)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("draw", [lambda rng, shape: rng.uniform(1, 3, shape) * 1e38,  # the sums of x overflow
                                  lambda rng, shape: rng.standard_normal(shape) * 1e20],  # only the squares do
                         ids=["sums overflow", "squares overflow"])
def test_split_batch_norm_near_the_float32_maximum_stays_finite_without_warnings(draw) -> None:
    """Sums that overflow send the statistics to the scaled whole-batch path; the chunks' passes
    run on pool threads, where the caller's np.errstate does not reach, so they set their own."""
    x = draw(np.random.default_rng(0), (4, 3, 5, 5)).astype(np.float32)
    with split_batches(), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = K.batch_norm(x, None, None, None, None, training=True)
        (d_x, *_) = K.batch_norm_vjp(np.ones_like(x), x, None, None, None, None, training=True)
    expected = K.batch_norm(x.astype(np.float64), None, None, None, None, training=True)
    assert out.dtype == np.float32 and np.all(np.isfinite(out)) and np.all(np.isfinite(d_x))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
