"""Layer kernels: bad input, dtypes, the max-pool index mechanism, batch-norm running statistics,
and that the layer proofs can fail."""

from __future__ import annotations

import numpy as np
import pytest

import symdl.kernels as K
from symdl.catalog.layers import LAYER_BY_NAME, LAYERS
from symdl.errors import OpInputError, OpParameterError
from symdl.proofs.layers import prove_instance, prove_layers, source_files
from symdl.kernels import _layers_runtime as _lr
from symdl.kernels._layers import norm  # where the norm closed forms look up their helpers
from symdl.sampling import draw_layer_arrays
from symdl.verify.layers import call

X = np.zeros((2, 3, 5, 5))
W = np.zeros((4, 3, 3, 3))

BAD = [
    (lambda: K.conv2d(X, np.zeros((4, 2, 3, 3))), r"conv2d: input has 3 channels but weight.shape\[1\] \* groups"
     r" = 2 \* 1 = 2 \(input \(2, 3, 5, 5\), weight \(4, 2, 3, 3\)\); they must be equal"),
    (lambda: K.conv2d(X, np.zeros((4, 3, 7, 3))), r"conv2d: the dilated kernel 7 .* larger than the padded input 5 "
     r"\(input \(2, 3, 5, 5\), weight \(4, 3, 7, 3\)\)"),
    (lambda: K.conv2d(X, W, dilation=3), r"conv2d: the dilated kernel 7"),
    (lambda: K.conv2d(X, np.zeros((4, 1, 3, 3)), groups=3), r"conv2d: groups=3 must divide out_channels \(4\)"),
    (lambda: K.conv2d(X, np.zeros((4, 1, 3, 3)), groups=2), r"conv2d: groups=2 must divide in_channels \(3\); "
     r"input \(2, 3, 5, 5\), weight \(4, 1, 3, 3\)"),
    (lambda: K.conv2d(X[0, 0], W), r"conv2d: input must be 3-D \(unbatched\) or 4-D \(batched\), "
     r"got shape \(5, 5\)"),
    (lambda: K.conv1d(X, W), r"conv1d: input must be 2-D \(unbatched\) or 3-D \(batched\), got shape \(2, 3, 5, 5\)"),
    (lambda: K.conv2d(X, W, stride=2, padding="same"), r"conv2d: padding='same' is not supported for strided"),
    (lambda: K.conv1d(X[:, :, 0], W[:, :, 0], stride=2, padding="same"), r"conv1d: padding='same'"),
    (lambda: K.conv2d(X, W, padding="full"), r"conv2d: padding must be an int, a tuple, 'same' or 'valid'"),
    (lambda: K.conv2d(X, W, np.zeros(3)), r"conv2d: bias must have shape \(4,\)"),
    (lambda: K.conv2d(X, W, stride=0), r"conv2d: stride must be >= 1"),
    (lambda: K.conv2d_vjp(np.zeros((2, 4, 2, 2)), X, W), r"conv2d: grad has shape \(2, 4, 2, 2\), but the output"),
    (lambda: K.conv_transpose2d(X, np.zeros((2, 3, 3, 3))), r"conv_transpose2d: input has 3 channels but "
     r"weight.shape\[0\] is 2"),
    (lambda: K.conv_transpose2d(X, W[:3], output_padding=1), r"conv_transpose2d: output_padding \(1, 1\) must be "
     r"smaller than stride"),
    (lambda: K.max_pool2d(X, kernel_size=7), r"max_pool2d: the window 7 .* larger than the padded input 5"),
    (lambda: K.max_pool2d(X, kernel_size=2, padding=2), r"max_pool2d: padding \(2, 2\) must be at most half"),
    (lambda: K.avg_pool2d(X, kernel_size=2, divisor_override=0), r"avg_pool2d: divisor_override must be a non-zero"),
    (lambda: K.max_pool2d_vjp(np.zeros((2, 3, 2, 2)), X, kernel_size=2, indices=np.full((2, 3, 2, 2), 25)),
     r"max_pool2d: indices must lie in \[0, 25\)"),
    # -1 (a window wholly in the padding) only exists for dilated windows; undilated, it used to
    # scatter the window's gradient into the previous plane's last element
    (lambda: K.max_pool2d_vjp(np.zeros((2, 3, 2, 2)), X, kernel_size=2, indices=np.full((2, 3, 2, 2), -1)),
     r"max_pool2d: indices must lie in \[0, 25\) \(flat positions in each input plane\)$"),
    (lambda: K.batch_norm(X, np.zeros(2), np.ones(2)), r"batch_norm: running_mean must have shape \(3,\)"),
    (lambda: K.batch_norm(X, None, None), r"batch_norm: running_mean and running_var are required when training"),
    (lambda: K.batch_norm(X[:1, :, :1, :1], None, None, training=True), r"batch_norm: expected more than 1 value"),
    (lambda: K.batch_norm(X, None, None, training=True, momentum=None), r"batch_norm: momentum must be"),
    (lambda: K.layer_norm(X, normalized_shape=(4,)), r"layer_norm: input \(2, 3, 5, 5\) must end with"),
    (lambda: K.layer_norm(X, np.ones(4), normalized_shape=(5,)), r"layer_norm: weight must have normalized_shape"),
    (lambda: K.group_norm(X, num_groups=2), r"group_norm: num_groups=2 must divide the 3 channels"),
    (lambda: K.linear(np.zeros((2, 3)), np.zeros((4, 5))), r"linear: input's last dim must equal weight.shape\[1\]"),
    (lambda: K.bilinear(np.zeros((2, 3)), np.zeros((3, 4)), np.zeros((5, 3, 4))), r"bilinear: need input1"),
    (lambda: K.dropout(X, np.full(X.shape, 0.5)), r"dropout: mask must hold only 0 and 1"),
    (lambda: K.dropout(X, np.ones(X.shape), p=1.5), r"dropout: p must be a probability in \[0, 1\]"),
    (lambda: K.flatten(X, start_dim=3, end_dim=1), r"flatten: start_dim 3 must not come after end_dim 1"),
    (lambda: K.adaptive_avg_pool2d(X, output_size=0), r"adaptive_avg_pool2d: output_size must be >= 1"),
]


@pytest.mark.parametrize(("call_it", "message"), BAD)
def test_bad_input_raises_a_value_error_naming_op_shapes_and_rule(call_it, message) -> None:
    with pytest.raises(ValueError, match=message):
        call_it()


def test_non_numeric_arrays_are_rejected_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="conv2d: input must be a real floating-point array"):
        K.conv2d(np.array([["a"]]), W)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layer_keeps_the_input_dtype(layer, dtype) -> None:
    instance = layer.instances[-1]
    arrays = draw_layer_arrays(layer, instance, np.random.default_rng(0), dtype)
    out = call(layer, instance, arrays)
    out = out[0] if isinstance(out, tuple) else out
    assert out.dtype == dtype
    grads = call(layer, instance, arrays, np.ones_like(out))
    assert all(g.dtype == dtype for g in grads if g is not None)
    assert [g is None for g in grads] == [a is None or not i.differentiable for a, i in zip(arrays, layer.inputs)]


@pytest.mark.parametrize("mask_dtype", [bool, np.int8, np.float64])
def test_dropout_gradient_keeps_float32_whatever_the_mask_dtype(mask_dtype) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = (np.arange(12).reshape(3, 4) % 3 != 0).astype(mask_dtype)
    out = K.dropout(x, mask, p=0.25)
    (grad, none) = K.dropout_vjp(np.ones_like(out), x, mask, p=0.25)
    assert out.dtype == grad.dtype == np.float32 and none is None
    np.testing.assert_array_equal(grad, mask.astype(np.float32) / np.float32(0.75))


# --------------------------------------------------------------------------- max-pool indices
def test_max_pool_backward_scatters_with_the_given_indices_instead_of_rescanning() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    out, index = K.max_pool2d(x, kernel_size=3, stride=2, padding=1, return_indices=True)
    g = rng.standard_normal(out.shape)
    # with indices the input's values are not looked at: a different input gives the same gradient
    (with_index,) = K.max_pool2d_vjp(g, -x, kernel_size=3, stride=2, padding=1, indices=index)
    (rescan,) = K.max_pool2d_vjp(g, x, kernel_size=3, stride=2, padding=1)
    np.testing.assert_array_equal(with_index, rescan)
    (other,) = K.max_pool2d_vjp(g, -x, kernel_size=3, stride=2, padding=1)
    assert not np.array_equal(other, rescan)


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order() -> None:
    x = np.ones((1, 1, 2, 2))
    out, index = K.max_pool2d(x, kernel_size=2, return_indices=True)
    assert index.item() == 0
    (grad,) = K.max_pool2d_vjp(np.full(out.shape, 5.0), x, kernel_size=2)
    np.testing.assert_array_equal(grad, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_propagates_nan_like_pytorch() -> None:
    x = np.array([[[1.0, np.nan, 3.0, 2.0]]])
    out, index = K.max_pool1d(x, kernel_size=2, return_indices=True)
    assert np.isnan(out[0, 0, 0]) and index[0, 0, 0] == 1 and out[0, 0, 1] == 3.0


def test_max_pool_exact_cases_the_fast_scan_hands_over() -> None:
    """The one-pass arg-max cannot see NaNs (they compare false) or tell a padded -inf tap from a
    real one; those windows get PyTorch's index: the last NaN (its loop takes a value when it is
    greater or NaN), and the first real tap of an all -inf window (measured with torch 2.13)."""
    x = np.full((1, 2, 3, 3), -np.inf)
    x[0, 0, 2, 2] = 1.0  # channel 0: -inf everywhere but one corner; channel 1: all -inf ...
    x[0, 1, 0, 1] = x[0, 1, 1, 0] = np.nan  # ... but two NaNs
    out, index = K.max_pool2d(x, kernel_size=3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(out, [[[[-np.inf, -np.inf], [-np.inf, 1.0]], [[np.nan, np.nan], [np.nan, -np.inf]]]])
    np.testing.assert_array_equal(index, [[[[0, 1], [3, 8]], [[3, 1], [3, 4]]]])


# --------------------------------------------------------------------------- conv columns
CONV_COLUMN_CASES = [
    ("conv2d", (2, 4, 6, 5), (6, 2, 3, 2), dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)),
    ("conv2d", (3, 5, 5), (2, 3, 3, 3), dict(padding="same")),  # unbatched
    ("conv2d", (1, 2, 4, 4), (3, 2, 2, 2), dict(stride=2)),
    ("conv1d", (2, 4, 9), (6, 2, 3), dict(stride=2, padding=1, groups=2)),
]


@pytest.mark.parametrize(("op", "x_shape", "w_shape", "params"), CONV_COLUMN_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_backward_with_the_forwards_columns_equals_rebuilding_them(op: str, x_shape: tuple, w_shape: tuple,
                                                                        params: dict, dtype: type) -> None:
    """``return_columns=True`` returns the same output and the im2col columns; the VJP given them
    returns the very gradients it computes without them (it does not look at the input's values
    again for the weight gradient: a different input with the same columns gives the same one)."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1]))
    out, columns = getattr(K, op)(x, w, b, **params, return_columns=True)
    np.testing.assert_array_equal(out, getattr(K, op)(x, w, b, **params))
    assert columns.dtype == dtype and columns.shape[0] == params.get("groups", 1)
    g = rng.standard_normal(out.shape).astype(dtype)
    vjp = getattr(K, f"{op}_vjp")
    rebuilt = vjp(g, x, w, b, **params)
    saved = vjp(g, x, w, b, **params, columns=columns)
    for a, c in zip(rebuilt, saved):
        np.testing.assert_array_equal(a, c)
    other_input = vjp(g, -x, w, b, **params, columns=columns)
    np.testing.assert_array_equal(other_input[1], rebuilt[1])
    assert not np.array_equal(vjp(g, -x, w, b, **params)[1], rebuilt[1])


def test_conv_columns_are_the_callers_own_array() -> None:
    """Returned columns are not the kernels' scratch: a later call of any conv leaves them alone."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    _, columns = K.conv2d(x, w, padding=1, return_columns=True)
    kept = columns.copy()
    K.conv2d(-x, w, padding=1)
    K.conv2d_vjp(np.ones((2, 4, 5, 5)), 2 * x, w, padding=1)
    _, again = K.conv2d(3 * x, w, padding=1, return_columns=True)
    np.testing.assert_array_equal(columns, kept)
    assert not np.shares_memory(columns, again)


@pytest.mark.parametrize(("columns", "message"), [
    (np.zeros((1, 27, 49)), r"conv2d: columns must be the forward's return_columns: a float64 array of shape "
                            r"\(1, 27, 50\) .*; got float64 \(1, 27, 49\)"),
    (np.zeros((1, 27, 50), np.float32), r"got float32 \(1, 27, 50\)"),
    ([[0.0]], r"conv2d: columns must be .*; got list"),
    # chunks: each a whole number of samples (25 positions each), covering the batch of 2 exactly
    ((np.zeros((1, 27, 25)),), r"got float64 \(1, 27, 25\)$"),
    ((np.zeros((1, 27, 25)), np.zeros((1, 27, 25)), np.zeros((1, 27, 25))), r"tuple of such arrays"),
    ((np.zeros((1, 27, 30)), np.zeros((1, 27, 20))), r"got float64 \(1, 27, 30\), float64 \(1, 27, 20\)"),
    ((np.zeros((1, 27, 25)), np.zeros((1, 26, 25))), r"float64 \(1, 26, 25\)"),
    ((), r"got tuple"),
])
def test_conv_columns_that_do_not_fit_are_refused(columns: object, message: str) -> None:
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(OpInputError, match=message):
        K.conv2d_vjp(np.zeros((2, 4, 5, 5)), x, w, padding=1, columns=columns)
    with pytest.raises(OpParameterError, match="conv2d: return_columns must be True or False"):
        K.conv2d(x, w, padding=1, return_columns="yes")


# --------------------------------------------------------------------------- batch norm state
def test_batch_norm_training_updates_running_stats_in_place_and_the_vjp_does_not() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2, 2)) * 2 + 1
    mean, var = np.zeros(3), np.ones(3)
    K.batch_norm(x, mean, var, training=True, momentum=0.25)
    np.testing.assert_allclose(mean, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-14)
    np.testing.assert_allclose(var, 0.75 + 0.25 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-14)  # unbiased
    before = mean.copy(), var.copy()
    K.batch_norm_vjp(np.ones_like(x), x, mean, var, training=True, momentum=0.25)
    np.testing.assert_array_equal(mean, before[0])
    np.testing.assert_array_equal(var, before[1])


def test_norms_stay_finite_where_the_variance_overflows_float32() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 3, 4)) * 1e30).astype(np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = K.batch_norm(x, None, None, training=True)
        (grad, *_) = K.batch_norm_vjp(np.ones_like(x), x, None, None, training=True)
    expected = K.batch_norm(x.astype(np.float64), None, None, training=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(grad)) and out.dtype == grad.dtype == np.float32


# --------------------------------------------------------------------------- the proofs
def test_every_layer_is_proven_on_its_grid() -> None:
    proofs = prove_layers([layer.name for layer in LAYERS])
    assert all(p.holds for p in proofs.values()), {n: p.failures for n, p in proofs.items() if not p.holds}
    assert all(p.instances >= 4 for p in proofs.values())


def test_the_proof_fails_for_an_unflipped_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plausible bug (input gradient correlating instead of convolving) must be caught."""
    right = _lr.conv_backward

    def wrong_backward(grad, arrays, plan):
        d_x, d_w, d_b = right(grad, arrays, plan)
        return d_x[..., ::-1], d_w, d_b

    monkeypatch.setattr(_lr, "conv_backward", wrong_backward)
    layer = LAYER_BY_NAME["conv2d"]
    failures = prove_instance(layer, layer.instances[0])
    assert failures and "d_input differs" in failures[0]


def test_the_proof_fails_for_the_two_term_norm_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping the mean(g * xhat) term of the three-term formula must be caught."""
    monkeypatch.setattr(norm, "normalize_vjp", lambda d, xhat, rstd, axes: rstd * (d - d.mean(axis=axes, keepdims=True)))
    layer = LAYER_BY_NAME["layer_norm"]
    assert any("d_input differs" in f for f in prove_instance(layer, layer.instances[0]))


def test_the_proof_fails_for_batch_norm_with_the_unbiased_variance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Normalising with the running update's (unbiased) variance must be caught."""
    biased = norm._batch_moments

    def unbiased(x, axes, eps, bounds, grad=None):
        centred, mean, var, _, sum_g = biased(x, axes, eps, bounds, grad)
        count = x.size // x.shape[1]
        var = var * count / (count - 1)
        return centred, mean, var, _lr.rsqrt(var + eps), sum_g

    monkeypatch.setattr(norm, "_batch_moments", unbiased)
    layer = LAYER_BY_NAME["batch_norm"]
    training = next(i for i in layer.instances if i.params["training"])
    failures = prove_instance(layer, training)
    assert any("forward differs" in f for f in failures) and any("d_input differs" in f for f in failures)


def test_the_max_pool_proof_fails_for_a_misrouted_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    right = _lr.max_pool_backward

    def routed_to_the_wrong_window(grad, arrays, plan):
        (d_x,) = right(grad, arrays, plan)
        return (np.roll(d_x, 1),)

    monkeypatch.setattr(_lr, "max_pool_backward", routed_to_the_wrong_window)
    layer = LAYER_BY_NAME["max_pool2d"]
    assert prove_instance(layer, layer.instances[0])


EMPTY_BATCH = [
    ("conv2d", [np.zeros((0, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.ones(4)], {"padding": 1}),
    ("conv1d", [np.zeros((0, 3, 5)), np.ones((4, 3, 3)), None], {"stride": 2}),
    ("conv_transpose2d", [np.zeros((0, 3, 5, 5)), np.ones((3, 4, 3, 3)), np.ones(4)], {"stride": 2}),
    ("max_pool2d", [np.zeros((0, 3, 5, 5))], {"kernel_size": 2}),
    ("avg_pool2d", [np.zeros((0, 3, 5, 5))], {"kernel_size": 3, "padding": 1}),
    ("group_norm", [np.zeros((0, 4, 2)), np.ones(4), np.ones(4)], {"num_groups": 2}),
    ("layer_norm", [np.zeros((0, 3)), None, None], {"normalized_shape": 3}),
    ("linear", [np.zeros((0, 3)), np.ones((4, 3)), np.ones(4)], {}),
]


@pytest.mark.parametrize(("name", "arrays", "params"), EMPTY_BATCH, ids=[e[0] for e in EMPTY_BATCH])
def test_an_empty_batch_gives_empty_outputs_and_zero_parameter_gradients(name, arrays, params) -> None:
    with np.errstate(all="raise"):
        out = getattr(K, name)(*arrays, **params)
        grads = getattr(K, f"{name}_vjp")(np.zeros(out.shape), *arrays, **params)
    assert out.shape[0] == 0
    for grad, array in zip(grads, arrays):
        assert (grad is None) == (array is None)
        if grad is not None:
            assert grad.shape == array.shape and not np.any(grad)


@pytest.mark.parametrize("batch", [1, 3])
def test_results_are_fresh_arrays_not_the_kernels_reused_buffers(batch: int) -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((batch, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    first = K.conv2d(x, w, padding=1)
    grads = K.conv2d_vjp(np.ones_like(first), x, w, padding=1)
    kept = [first.copy(), *(g.copy() for g in grads if g is not None)]
    K.conv2d(2 * x, -w, padding=1)
    K.conv2d_vjp(-np.ones_like(first), 3 * x, w, padding=1)
    K.conv_transpose2d(x, np.ones((2, 3, 3, 3)))
    for before, after in zip(kept, [first, *(g for g in grads if g is not None)]):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(("op", "shapes", "params"), [
    ("linear", ((5, 4), (3, 4), (3,)), {}),
    ("conv1d", ((2, 4, 9), (6, 2, 3), (6,)), dict(stride=2, padding=1, groups=2)),
    ("conv2d", ((2, 3, 6, 5), (4, 3, 3, 3), (4,)), dict(padding="same", dilation=2)),
])
def test_input_grad_false_skips_only_the_input_gradient(op: str, shapes: tuple, params: dict) -> None:
    """A first layer's input is data: ``input_grad=False`` returns None for it and the very same
    weight and bias gradients; anything but a bool is refused."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    out = getattr(K, op)(*arrays, **params)
    grad = rng.standard_normal(out.shape)
    vjp = getattr(K, f"{op}_vjp")
    full, skipped = vjp(grad, *arrays, **params), vjp(grad, *arrays, **params, input_grad=False)
    assert full[0] is not None and skipped[0] is None
    for a, b in zip(full[1:], skipped[1:]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(OpParameterError, match=f"{op}: input_grad must be True or False"):
        vjp(grad, *arrays, **params, input_grad=0)


@pytest.mark.parametrize(("good", "bad", "message"), [
    (lambda: K.max_pool2d(X, kernel_size=2), lambda: K.max_pool2d(X, kernel_size=2.0), r"max_pool2d: kernel_size"),
    (lambda: K.max_pool2d(X, kernel_size=2, return_indices=True),
     lambda: K.max_pool2d(X, kernel_size=2, return_indices=1), r"max_pool2d: return_indices must be True or False"),
    (lambda: K.conv2d(X, W, padding=1), lambda: K.conv2d(X, W, padding=True), r"conv2d: padding"),
    (lambda: K.linear_vjp(np.zeros((2, 3, 5, 2)), X, np.zeros((2, 5)), input_grad=True),
     lambda: K.linear_vjp(np.zeros((2, 3, 5, 2)), X, np.zeros((2, 5)), input_grad=1),
     r"linear: input_grad must be True or False"),
])
def test_a_remembered_plan_never_excuses_a_bad_call(good, bad, message) -> None:  # noqa: ANN001
    """Plans are remembered by shape and options; an option equal to a good one but of another type
    (2.0 for 2, 1 for True) must still be refused, every time."""
    good()
    for _ in range(2):
        with pytest.raises(OpParameterError, match=message):
            bad()
    good()


def test_cached_layer_proofs_are_keyed_by_every_runtime_module() -> None:
    """A proof is cached under a hash of the code it ran: every module of the layer runtime."""
    names = {path.name for path in source_files()}
    assert {"conv.py", "pool.py", "linear.py", "norm.py", "shape.py", "common.py", "_layers_runtime.py"} <= names


@pytest.mark.parametrize("layout", ["contiguous", "strided", "object"])
def test_strided_view_is_as_strideds_read_only_view(layout: str) -> None:
    """im2col's window view, built directly on a contiguous base: the same elements as
    ``as_strided``, sharing the base's memory, and read-only (the windows overlap)."""
    from symdl.kernels._layers.common import strided_view

    base = np.arange(60.0).reshape(3, 4, 5)
    base = {"contiguous": base, "strided": base[:, :, ::2], "object": base.astype(object)}[layout]
    s0, s1, s2 = base.strides
    shape, strides = (base.shape[0], 2, 2, base.shape[2] - 1), (s0, s1, s1, s2)
    view = strided_view(base, shape, strides)
    assert np.array_equal(view, np.lib.stride_tricks.as_strided(base, shape, strides))
    assert not view.flags.writeable and (layout == "object" or np.shares_memory(view, base))
