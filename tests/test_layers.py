"""Layer kernels: every forward against a loop reference, every gradient against finite differences.

hypothesis draws shapes and hyper-parameters (stride 1-3, padding 0-2, 'same' and 'valid',
dilation 1-2, groups dividing the channels, odd and even sizes, batch 1); values are
standard normal (a realistic activation scale), extremes are pinned with ``@example``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symdl.kernels as K
from tests import layer_reference as ref

FD_STEP = 1e-6
FD_TOLERANCE = 1e-6
#: Convolution and pooling geometry is where backward passes go wrong: more examples there
#: (about 2 s in all, under either profile).
GEOMETRY = settings(max_examples=200)


def check_vjp(forward: Callable[..., np.ndarray], vjp: Callable[..., tuple], arrays: Sequence[np.ndarray | None],
              rng: np.random.Generator, skip: Sequence[int] = ()) -> None:
    """Each gradient the VJP returns against central differences along a random direction."""
    out = forward(*arrays)
    v = rng.standard_normal(out.shape)
    grads = vjp(v, *arrays)
    assert len(grads) == len(arrays)
    for index, array in enumerate(arrays):
        if array is None or index in skip:
            assert grads[index] is None
            continue
        assert grads[index].shape == array.shape
        u = rng.standard_normal(array.shape)
        plus = [a + FD_STEP * u if i == index else a for i, a in enumerate(arrays)]
        minus = [a - FD_STEP * u if i == index else a for i, a in enumerate(arrays)]
        numeric = float(np.sum(v * (forward(*plus) - forward(*minus)))) / (2 * FD_STEP)
        analytic = float(np.sum(grads[index] * u))
        assert abs(numeric - analytic) <= FD_TOLERANCE * max(1.0, abs(numeric)), (index, numeric, analytic)


def normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


# --------------------------------------------------------------------------- convolution
@st.composite
def conv_cases(draw: st.DrawFn, spatial: int = 2) -> dict:
    """Shapes and hyper-parameters of a conv call PyTorch accepts."""
    groups = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    padding = draw(st.sampled_from([0, 1, 2, "valid"] + (["same"] if stride == 1 else [])))
    totals = [d * (k - 1) if padding == "same" else 2 * (0 if padding == "valid" else padding)
              for k, d in zip(kernel, (dilation,) * spatial)]
    sizes = tuple(max(1, dilation * (k - 1) + 1 - t) + draw(st.integers(0, 4)) for k, t in zip(kernel, totals))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)), o=groups * draw(st.integers(1, 2)),
                kernel=kernel, sizes=sizes, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31)),
                params=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


def _conv_arrays(case: dict) -> tuple[np.random.Generator, list]:
    rng = np.random.default_rng(case["seed"])
    g = case["params"]["groups"]
    x = normal(rng, case["n"], case["c"], *case["sizes"])
    w = normal(rng, case["o"], case["c"] // g, *case["kernel"])
    return rng, [x, w, normal(rng, case["o"]) if case["bias"] else None]


def _conv2d_case(kernel: tuple[int, int], sizes: tuple[int, int], **params: object) -> dict:
    full = dict(stride=1, padding=0, dilation=1, groups=1) | params
    return dict(n=1, c=2 * full["groups"], o=full["groups"], kernel=kernel, sizes=sizes, bias=True, seed=0,
                params=full)


def _same_with_columns(op: str, arrays: list, params: dict, out: np.ndarray) -> None:
    """The forward's ``return_columns`` output is ``out``, and its VJP given those columns returns,
    bit for bit, what it returns building them again."""
    forward, vjp = getattr(K, op), getattr(K, f"{op}_vjp")
    with_columns, columns = forward(*arrays, **params, return_columns=True)
    np.testing.assert_array_equal(with_columns, out)
    g = np.random.default_rng(1).standard_normal(out.shape)
    for a, b in zip(vjp(g, *arrays, **params, columns=columns), vjp(g, *arrays, **params)):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


@given(conv_cases())
@example(_conv2d_case((1, 1), (1, 1)))                                   # 1x1 kernel on a 1x1 image
@example(_conv2d_case((3, 3), (1, 1), padding=1))                        # kernel larger than the image
@example(_conv2d_case((2, 2), (5, 4), padding="same", dilation=2))       # even kernel 'same': odd element after
@example(_conv2d_case((3, 2), (8, 7), stride=3, padding=2, dilation=2, groups=3))
@GEOMETRY
def test_conv2d_against_loop_and_finite_differences(case: dict) -> None:
    rng, arrays = _conv_arrays(case)
    params = case["params"]
    out = K.conv2d(*arrays, **params)
    np.testing.assert_allclose(out, ref.conv2d(*arrays, **params), rtol=1e-12, atol=1e-12)
    check_vjp(lambda *a: K.conv2d(*a, **params), lambda g, *a: K.conv2d_vjp(g, *a, **params), arrays, rng)
    _same_with_columns("conv2d", arrays, params, out)


@given(conv_cases(spatial=1))
@GEOMETRY
def test_conv1d_against_loop_and_finite_differences(case: dict) -> None:
    rng, arrays = _conv_arrays(case)
    params = case["params"]
    x, w, b = arrays
    expected = ref.conv2d(x[:, :, None, :], w[:, :, None, :], b, **{**params, "stride": (1, params["stride"]),
                          "dilation": (1, params["dilation"]),
                          "padding": params["padding"] if isinstance(params["padding"], str) else (0, params["padding"])})
    out = K.conv1d(*arrays, **params)
    np.testing.assert_allclose(out, expected[:, :, 0], rtol=1e-12, atol=1e-12)
    check_vjp(lambda *a: K.conv1d(*a, **params), lambda g, *a: K.conv1d_vjp(g, *a, **params), arrays, rng)
    _same_with_columns("conv1d", arrays, params, out)


@st.composite
def conv_transpose_cases(draw: st.DrawFn) -> dict:
    groups, stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.integers(0, 2))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    sizes = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    full = [(s - 1) * stride + dilation * (k - 1) + output_padding + 1 for s, k in zip(sizes, kernel)]
    padding = min(padding, *((f - 1) // 2 for f in full))  # a non-empty output
    return dict(groups=groups, kernel=kernel, sizes=sizes, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31)),
                n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)), og=draw(st.integers(1, 2)),
                params=dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                            dilation=dilation))


@given(conv_transpose_cases())
@GEOMETRY
def test_conv_transpose2d_against_loop_and_finite_differences(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    params = case["params"]
    x = normal(rng, case["n"], case["c"], *case["sizes"])
    w = normal(rng, case["c"], case["og"], *case["kernel"])
    arrays = [x, w, normal(rng, case["og"] * case["groups"]) if case["bias"] else None]
    np.testing.assert_allclose(K.conv_transpose2d(*arrays, **params), ref.conv_transpose2d(*arrays, **params),
                               rtol=1e-12, atol=1e-12)
    check_vjp(lambda *a: K.conv_transpose2d(*a, **params), lambda g, *a: K.conv_transpose2d_vjp(g, *a, **params),
              arrays, rng)


# --------------------------------------------------------------------------- pooling
@st.composite
def pool_cases(draw: st.DrawFn, dilation: bool = True) -> dict:
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.sampled_from([None, 1, 2, 3]))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = draw(st.integers(1, 2)) if dilation else 1
    sizes = tuple(max(1, dil * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 4)) for k, p in zip(kernel, padding))
    params = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if dilation:
        params["dilation"] = dil
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sizes), params=params,
                seed=draw(st.integers(0, 2**31)), ties=draw(st.booleans()))


@given(pool_cases())
@example(dict(shape=(1, 1, 4, 4), params=dict(kernel_size=(2, 2), stride=None, padding=(0, 0), ceil_mode=False,
                                                dilation=1), seed=0, ties=True))
@example(dict(shape=(1, 2, 5, 5), params=dict(kernel_size=(3, 3), stride=2, padding=(1, 1), ceil_mode=True,
                                                dilation=2), seed=1, ties=True))
@example(dict(shape=(1, 1, 8, 2), params=dict(kernel_size=(2, 2), stride=None, padding=(0, 0), ceil_mode=True,
                                                dilation=2), seed=2, ties=False))  # ceil_mode: window past the input
@GEOMETRY
def test_max_pool2d_against_loop_with_first_maximum_on_ties(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    params = case["params"]
    # ties: few distinct values, so windows share their maximum (PyTorch keeps the first)
    x = rng.integers(0, 3, case["shape"]).astype(np.float64) if case["ties"] else normal(rng, *case["shape"])
    out, index = K.max_pool2d(x, return_indices=True, **params)
    expected, expected_index = ref.max_pool2d(x, **params)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(index, expected_index)
    g = normal(rng, *out.shape)
    (scan,) = K.max_pool2d_vjp(g, x, **params)
    (scatter,) = K.max_pool2d_vjp(g, x, indices=index, **params)
    np.testing.assert_allclose(scan, ref.max_pool2d_grad(x, g, expected_index), rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(scan, scatter)
    if not case["ties"] and np.all(np.isfinite(out)):  # -inf: a window wholly in the padding
        check_vjp(lambda a: K.max_pool2d(a, **params), lambda g, a: K.max_pool2d_vjp(g, a, **params), [x], rng)


@given(pool_cases())
def test_max_pool1d_is_max_pool2d_on_one_row(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    params = {k: (v[1] if isinstance(v, tuple) else v) for k, v in case["params"].items()}
    x = normal(rng, *case["shape"][:2], case["shape"][3])
    out, index = K.max_pool1d(x, return_indices=True, **params)
    params2 = {**params, "kernel_size": (1, params["kernel_size"]), "padding": (0, params["padding"]),
               "stride": None if params["stride"] is None else (1, params["stride"]), "dilation": (1, params["dilation"])}
    expected, expected_index = ref.max_pool2d(x[:, :, None, :], **params2)
    np.testing.assert_array_equal(out, expected[:, :, 0])
    np.testing.assert_array_equal(index, expected_index[:, :, 0])
    if np.all(np.isfinite(out)):  # -inf: a window wholly in the padding
        check_vjp(lambda a: K.max_pool1d(a, **params), lambda g, a: K.max_pool1d_vjp(g, a, **params), [x], rng)


@given(pool_cases(dilation=False), st.booleans(), st.sampled_from([None, 1, 5]))
@GEOMETRY
def test_avg_pool2d_against_loop_and_finite_differences(case: dict, include_pad: bool, divisor: int | None) -> None:
    rng = np.random.default_rng(case["seed"])
    params = dict(case["params"], count_include_pad=include_pad, divisor_override=divisor)
    x = normal(rng, *case["shape"])
    np.testing.assert_allclose(K.avg_pool2d(x, **params), ref.avg_pool2d(x, **params), rtol=1e-13, atol=1e-14)
    check_vjp(lambda a: K.avg_pool2d(a, **params), lambda g, a: K.avg_pool2d_vjp(g, a, **params), [x], rng)


@given(pool_cases(dilation=False), st.booleans())
def test_avg_pool1d_is_avg_pool2d_on_one_row(case: dict, include_pad: bool) -> None:
    rng = np.random.default_rng(case["seed"])
    params = {k: (v[1] if isinstance(v, tuple) else v) for k, v in case["params"].items()}
    params["count_include_pad"] = include_pad
    x = normal(rng, *case["shape"][:2], case["shape"][3])
    params2 = {**params, "kernel_size": (1, params["kernel_size"]), "padding": (0, params["padding"]),
               "stride": None if params["stride"] is None else (1, params["stride"])}
    np.testing.assert_allclose(K.avg_pool1d(x, **params), ref.avg_pool2d(x[:, :, None, :], **params2)[:, :, 0],
                               rtol=1e-13, atol=1e-14)
    check_vjp(lambda a: K.avg_pool1d(a, **params), lambda g, a: K.avg_pool1d_vjp(g, a, **params), [x], rng)


@given(st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 2, 3, (2, 5), (None, 1), (7, 3)]),
       st.integers(0, 2**31))
def test_adaptive_avg_pool2d_against_loop(h: int, w: int, output_size: object, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = normal(rng, 1, 2, h, w)
    np.testing.assert_allclose(K.adaptive_avg_pool2d(x, output_size=output_size),
                               ref.adaptive_avg_pool2d(x, output_size), rtol=1e-13, atol=1e-14)
    check_vjp(lambda a: K.adaptive_avg_pool2d(a, output_size=output_size),
              lambda g, a: K.adaptive_avg_pool2d_vjp(g, a, output_size=output_size), [x], rng)


# --------------------------------------------------------------------------- linear maps
@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 4), st.integers(1, 4), st.booleans(),
       st.integers(0, 2**31))
def test_linear_and_bilinear_against_loops(lead: list[int], n_in: int, n_out: int, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w = normal(rng, *lead, n_in), normal(rng, n_out, n_in)
    b = normal(rng, n_out) if bias else None
    np.testing.assert_allclose(K.linear(x, w, b), ref.linear(x, w, b), rtol=1e-12, atol=1e-12)
    check_vjp(K.linear, K.linear_vjp, [x, w, b], rng)
    x2, w3 = normal(rng, *lead, n_out), normal(rng, 3, n_in, n_out)
    b3 = normal(rng, 3) if bias else None
    np.testing.assert_allclose(K.bilinear(x, x2, w3, b3), ref.bilinear(x, x2, w3, b3), rtol=1e-12, atol=1e-12)
    check_vjp(K.bilinear, K.bilinear_vjp, [x, x2, w3, b3], rng)


# --------------------------------------------------------------------------- normalisation
AFFINE = st.sampled_from([(True, True), (True, False), (False, True), (False, False)])


@given(st.integers(1, 3), st.integers(1, 3), st.lists(st.integers(1, 3), max_size=2), AFFINE, st.booleans(),
       st.integers(0, 2**31))
@example(1, 2, [1], (True, True), True, 0)  # two values per channel: the smallest training batch
def test_batch_norm_against_loop_and_finite_differences(n: int, c: int, spatial: list[int], affine: tuple,
                                                         training: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = normal(rng, n, c, *spatial)
    if training and x.size == c:
        x = normal(rng, n + 1, c, *spatial)  # PyTorch needs more than one value per channel
    mean, var = normal(rng, c), rng.random(c) + 0.5
    w, b = (normal(rng, c) if affine[0] else None), (normal(rng, c) if affine[1] else None)
    params = dict(training=training, eps=1e-3)
    expected = ref.batch_norm(x, mean, var, w, b, training, 1e-3)
    np.testing.assert_allclose(K.batch_norm(x, mean.copy(), var.copy(), w, b, **params), expected, rtol=1e-10,
                               atol=1e-12)
    check_vjp(lambda *a: K.batch_norm(*a, **params), lambda g, *a: K.batch_norm_vjp(g, *a, **params),
              [x, mean, var, w, b], rng, skip=(1, 2))


@given(st.integers(1, 3), st.sampled_from([(3,), (2, 3), (1, 2, 3)]), AFFINE, st.integers(0, 2**31))
def test_layer_norm_against_loop_and_finite_differences(n: int, shape: tuple, affine: tuple, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = normal(rng, n, 2, 1, 2, 3)
    w, b = (normal(rng, *shape) if affine[0] else None), (normal(rng, *shape) if affine[1] else None)
    np.testing.assert_allclose(K.layer_norm(x, w, b, normalized_shape=shape), ref.layer_norm(x, shape, w, b, 1e-5),
                               rtol=1e-10, atol=1e-12)
    check_vjp(lambda *a: K.layer_norm(*a, normalized_shape=shape),
              lambda g, *a: K.layer_norm_vjp(g, *a, normalized_shape=shape), [x, w, b], rng)


@given(st.integers(1, 2), st.sampled_from([(1, 2), (2, 2), (3, 6), (6, 6)]), st.lists(st.integers(1, 3), max_size=2),
       AFFINE, st.integers(0, 2**31))
def test_group_norm_against_loop_and_finite_differences(n: int, groups_channels: tuple, spatial: list[int],
                                                         affine: tuple, seed: int) -> None:
    groups, c = groups_channels
    rng = np.random.default_rng(seed)
    x = normal(rng, n, c, *spatial, 2)
    w, b = (normal(rng, c) if affine[0] else None), (normal(rng, c) if affine[1] else None)
    np.testing.assert_allclose(K.group_norm(x, w, b, num_groups=groups), ref.group_norm(x, groups, w, b, 1e-5),
                               rtol=1e-10, atol=1e-12)
    check_vjp(lambda *a: K.group_norm(*a, num_groups=groups), lambda g, *a: K.group_norm_vjp(g, *a, num_groups=groups),
              [x, w, b], rng)


# --------------------------------------------------------------------------- masks and reshapes
@given(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), st.booleans(), st.integers(0, 2**31))
def test_dropout_scales_kept_units_and_passes_the_mask_to_the_gradient(p: float, training: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = normal(rng, 3, 4)
    mask = rng.random(x.shape) >= p
    expected = (x * mask / (1 - p) if p < 1 else np.zeros_like(x)) if training else x
    np.testing.assert_allclose(K.dropout(x, mask, p=p, training=training), expected, rtol=1e-15)
    check_vjp(lambda *a: K.dropout(*a, p=p, training=training),
              lambda g, *a: K.dropout_vjp(g, *a, p=p, training=training), [x, mask.astype(float)], rng, skip=(1,))


@pytest.mark.parametrize(("start", "end", "shape"), [(1, -1, (2, 12)), (0, -1, (24,)), (1, 2, (2, 12, 1)),
                                                     (-2, -1, (2, 3, 4)), (2, 2, (2, 3, 4, 1))])
def test_flatten_merges_the_dims_and_its_gradient_restores_them(start: int, end: int, shape: tuple) -> None:
    x = np.arange(24.0).reshape(2, 3, 4, 1)
    out = K.flatten(x, start_dim=start, end_dim=end)
    assert out.shape == shape
    np.testing.assert_array_equal(out.ravel(), x.ravel())
    (grad,) = K.flatten_vjp(out * 2, x, start_dim=start, end_dim=end)
    np.testing.assert_array_equal(grad, x * 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_batched_layout_changes_copy_in_blocks_exactly(dtype: type) -> None:
    """Batches large enough for the blocked layout copies (``gather_last``: more than 16 samples, 1 KiB or
    more apart, a batch not a multiple of the block): conv2d and max_pool2d against the loop references,
    conv2d's input gradient by the adjoint identity <conv(x), g> = <x, conv_vjp(g)>."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((43, 16, 8, 8)).astype(dtype)  # 4 or 8 KiB per sample
    w = rng.standard_normal((6, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    out = K.conv2d(x, w, b, padding=1)
    np.testing.assert_allclose(out, ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                               padding=1), rtol=rtol, atol=rtol)
    g = rng.standard_normal(out.shape).astype(dtype)
    d_x, _, _ = K.conv2d_vjp(g, x, w, None, padding=1)
    inner = float(np.sum((out - b.reshape(1, -1, 1, 1)).astype(np.float64) * g))
    np.testing.assert_allclose(float(np.sum(x.astype(np.float64) * d_x)), inner, rtol=100 * rtol)
    planes = rng.standard_normal((43, 2, 16, 16)).astype(dtype)  # planes 1-2 KiB apart
    pooled, index = K.max_pool2d(planes, kernel_size=3, stride=2, padding=1, return_indices=True)
    expected, expected_index = ref.max_pool2d(planes, kernel_size=3, stride=2, padding=1)
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(index, expected_index)
