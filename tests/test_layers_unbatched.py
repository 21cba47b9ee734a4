"""Unbatched inputs to the conv and pool kernels, as torch.nn.functional takes them.

conv1d, max_pool1d and avg_pool1d take (C, L) besides (N, C, L); conv2d, conv_transpose2d,
max_pool2d, avg_pool2d and adaptive_avg_pool2d take (C, H, W) besides (N, C, H, W). The output,
the upstream gradient, the input gradient and max-pool's indices are then unbatched too; weight
and bias gradients do not change. The kernels run the batched program on N = 1, so an unbatched
call must give *exactly* the batched call on ``x[None]`` with the batch axis dropped.
hypothesis draws the shapes and hyper-parameters (the layer tests' strategies); fixed cases
compare with torch.nn.functional when torch is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symdl.kernels as K
from symdl import nn
from symdl.errors import OpInputError
from tests.test_layers import _conv_arrays, conv_cases, conv_transpose_cases, pool_cases

Arrays = Sequence[np.ndarray | None]


def _first(out: object) -> np.ndarray:
    """The output array of a forward (max-pool with ``return_indices`` returns (output, indices))."""
    return out[0] if isinstance(out, tuple) else out  # type: ignore[return-value]


def _assert_drops_n(unbatched: object, batched: object) -> None:
    """``unbatched`` is ``batched`` without its (length-1) batch axis, element for element."""
    pairs = zip(unbatched, batched) if isinstance(unbatched, tuple) else [(unbatched, batched)]
    for ours, theirs in pairs:
        assert theirs.shape[0] == 1 and ours.shape == theirs.shape[1:]
        np.testing.assert_array_equal(ours, theirs[0])


def check_unbatched(forward: Callable[..., object], vjp: Callable[..., tuple], arrays: Arrays,
                    rng: np.random.Generator) -> None:
    """``forward(*arrays)`` and ``vjp(g, *arrays)`` with ``arrays[0]`` unbatched against the same calls
    on ``arrays[0][None]`` and ``g[None]``: the output and the input gradient drop N, the other
    gradients (weight, bias) are the same."""
    x, *rest = arrays
    out = forward(x, *rest)
    _assert_drops_n(out, forward(x[None], *rest))
    g = rng.standard_normal(_first(out).shape)
    grads, batched = vjp(g, x, *rest), vjp(g[None], x[None], *rest)
    assert len(grads) == len(batched) == len(arrays)
    assert grads[0].shape == x.shape
    _assert_drops_n(grads[0], batched[0])
    for ours, theirs in zip(grads[1:], batched[1:]):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_array_equal(ours, theirs)


def _kernels(op: str, **params: object) -> tuple[Callable[..., object], Callable[..., tuple]]:
    """``op`` and ``op_vjp`` with ``params`` bound."""
    forward, vjp = getattr(K, op), getattr(K, f"{op}_vjp")
    return (lambda *a: forward(*a, **params)), (lambda g, *a: vjp(g, *a, **params))


def _one_row(params: dict) -> dict:
    """A 2-D pool case's parameters for the 1-D pool: the second (W) entry of each pair."""
    return {k: (v[1] if isinstance(v, tuple) else v) for k, v in params.items()}


# --------------------------------------------------------------------------- convolution
@given(conv_cases(spatial=1))
def test_conv1d_unbatched_is_the_batched_call_without_n(case: dict) -> None:
    rng, (x, w, b) = _conv_arrays(case)
    check_unbatched(*_kernels("conv1d", **case["params"]), [x[0], w, b], rng)


@given(conv_cases())
def test_conv2d_unbatched_is_the_batched_call_without_n(case: dict) -> None:
    rng, (x, w, b) = _conv_arrays(case)
    check_unbatched(*_kernels("conv2d", **case["params"]), [x[0], w, b], rng)


@given(conv_transpose_cases())
def test_conv_transpose2d_unbatched_is_the_batched_call_without_n(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    arrays = [rng.standard_normal((case["c"], *case["sizes"])),
              rng.standard_normal((case["c"], case["og"], *case["kernel"])),
              rng.standard_normal(case["og"] * case["groups"]) if case["bias"] else None]
    check_unbatched(*_kernels("conv_transpose2d", **case["params"]), arrays, rng)


# --------------------------------------------------------------------------- pooling
def _max_pool_kernels(op: str, params: dict) -> tuple[Callable[..., object], Callable[..., tuple]]:
    """The forward with ``return_indices=True`` and the VJP fed the indices of its own input's
    forward (unbatched indices for an unbatched input, as torch's saved indices)."""
    forward, vjp = getattr(K, op), getattr(K, f"{op}_vjp")

    def backward(g: np.ndarray, x: np.ndarray) -> tuple:
        return vjp(g, x, indices=forward(x, return_indices=True, **params)[1], **params)

    return (lambda x: forward(x, return_indices=True, **params)), backward


@given(pool_cases(), st.booleans())
def test_max_pool_unbatched_is_the_batched_call_without_n(case: dict, with_indices: bool) -> None:
    rng = np.random.default_rng(case["seed"])
    # ties: few distinct values, so the first-maximum rule and the indices are exercised
    x = rng.integers(0, 3, case["shape"][1:]).astype(np.float64) if case["ties"] else \
        rng.standard_normal(case["shape"][1:])
    for op, params, input_ in (("max_pool2d", case["params"], x), ("max_pool1d", _one_row(case["params"]), x[:, 0])):
        forward, vjp = _max_pool_kernels(op, params) if with_indices else _kernels(op, **params)
        check_unbatched(forward, vjp, [input_], rng)


@given(pool_cases(dilation=False), st.booleans(), st.sampled_from([None, 1, 5]))
def test_avg_pool_unbatched_is_the_batched_call_without_n(case: dict, include_pad: bool,
                                                           divisor: int | None) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"][1:])
    params = dict(case["params"], count_include_pad=include_pad)
    check_unbatched(*_kernels("avg_pool2d", divisor_override=divisor, **params), [x], rng)
    check_unbatched(*_kernels("avg_pool1d", **_one_row(params)), [x[:, 0]], rng)


@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7),
       st.sampled_from([1, 2, 3, (2, 5), (None, 1), (7, 3)]), st.integers(0, 2**31))
def test_adaptive_avg_pool2d_unbatched_is_the_batched_call_without_n(c: int, h: int, w: int, output_size: object,
                                                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    check_unbatched(*_kernels("adaptive_avg_pool2d", output_size=output_size), [rng.standard_normal((c, h, w))], rng)


# --------------------------------------------------------------------------- errors
RANK_ERRORS = [
    ("conv1d", [np.zeros(5), np.zeros((4, 1, 3))], {}, "2-D (unbatched) or 3-D (batched)", (5,)),
    ("conv1d", [np.zeros((2, 1, 1, 5)), np.zeros((4, 1, 3))], {}, "2-D (unbatched) or 3-D (batched)", (2, 1, 1, 5)),
    ("conv2d", [np.zeros((5, 5)), np.zeros((4, 1, 3, 3))], {}, "3-D (unbatched) or 4-D (batched)", (5, 5)),
    ("conv2d", [np.zeros((2, 1, 1, 5, 5)), np.zeros((4, 1, 3, 3))], {}, "3-D (unbatched) or 4-D (batched)",
     (2, 1, 1, 5, 5)),
    ("conv_transpose2d", [np.zeros((5, 5)), np.zeros((1, 4, 3, 3))], {}, "3-D (unbatched) or 4-D (batched)", (5, 5)),
    ("max_pool1d", [np.zeros(5)], {"kernel_size": 2}, "2-D (unbatched) or 3-D (batched)", (5,)),
    ("max_pool2d", [np.zeros((1, 1, 1, 5, 5))], {"kernel_size": 2}, "3-D (unbatched) or 4-D (batched)",
     (1, 1, 1, 5, 5)),
    ("avg_pool1d", [np.zeros((1, 1, 1, 5))], {"kernel_size": 2}, "2-D (unbatched) or 3-D (batched)", (1, 1, 1, 5)),
    ("avg_pool2d", [np.zeros((5, 5))], {"kernel_size": 2}, "3-D (unbatched) or 4-D (batched)", (5, 5)),
    ("adaptive_avg_pool2d", [np.zeros(5)], {"output_size": 1}, "3-D (unbatched) or 4-D (batched)", (5,)),
]


@pytest.mark.parametrize(("op", "arrays", "params", "ranks", "shape"), RANK_ERRORS,
                         ids=[f"{e[0]}-{len(e[4])}d" for e in RANK_ERRORS])
def test_a_wrong_rank_is_an_op_input_error_naming_op_ranks_and_shape(op: str, arrays: list, params: dict,
                                                                     ranks: str, shape: tuple) -> None:
    message = f"{op}: input must be {ranks}, got shape {shape}"
    with pytest.raises(OpInputError) as forward_error:
        getattr(K, op)(*arrays, **params)
    with pytest.raises(OpInputError) as vjp_error:
        getattr(K, f"{op}_vjp")(np.zeros(1), *arrays, **params)
    assert str(forward_error.value) == str(vjp_error.value) == message


def test_an_unbatched_call_wants_an_unbatched_grad_and_unbatched_indices() -> None:
    x, w = np.zeros((3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(OpInputError, match=r"conv2d: grad has shape \(1, 4, 3, 3\), but the output has shape "
                                           r"\(4, 3, 3\)"):
        K.conv2d_vjp(np.zeros((1, 4, 3, 3)), x, w)
    _, batched_index = K.max_pool2d(x[None], kernel_size=2, return_indices=True)
    with pytest.raises(OpInputError, match=r"max_pool2d: indices must be an integer array of the output's shape "
                                           r"\(3, 2, 2\), got int64 \(1, 3, 2, 2\)"):
        K.max_pool2d_vjp(np.zeros((3, 2, 2)), x, kernel_size=2, indices=batched_index)


# --------------------------------------------------------------------------- symdl.nn layers
@pytest.mark.parametrize("make", [lambda: nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64,
                                                    generator=np.random.default_rng(0)),
                                  lambda: nn.MaxPool2d(2, padding=1), lambda: nn.AvgPool2d(3, stride=2)],
                         ids=["Conv2d", "MaxPool2d", "AvgPool2d"])
def test_nn_layers_take_an_unbatched_input_like_torch_nn(make: Callable[[], nn.Module]) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 5))
    layer, reference = make(), make()
    out, batched = layer(x), reference(x[None])
    _assert_drops_n(out, batched)
    g = rng.standard_normal(out.shape)
    _assert_drops_n(layer.backward(g), reference.backward(g[None]))
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, reference.grads[name])


# --------------------------------------------------------------------------- torch.nn.functional
RNG = np.random.default_rng(0)
X3 = RNG.standard_normal((4, 7, 6))
X2 = RNG.standard_normal((4, 9))
TORCH_CASES = [
    pytest.param("conv2d", [X3, RNG.standard_normal((6, 2, 3, 2)), RNG.standard_normal(6)],
                 dict(stride=2, padding=1, dilation=2, groups=2), id="conv2d"),
    pytest.param("conv2d", [X3, RNG.standard_normal((3, 4, 2, 2)), None], dict(padding="same", dilation=2),
                 id="conv2d-same-even"),
    pytest.param("conv1d", [X2, RNG.standard_normal((6, 2, 3)), RNG.standard_normal(6)],
                 dict(stride=3, padding=2, groups=2), id="conv1d"),
    pytest.param("conv_transpose2d", [X3, RNG.standard_normal((4, 3, 3, 2)), RNG.standard_normal(6)],
                 dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1), id="conv_transpose2d"),
    pytest.param("max_pool2d", [X3], dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="max_pool2d"),
    pytest.param("max_pool1d", [X2], dict(kernel_size=2, dilation=2), id="max_pool1d"),
    pytest.param("avg_pool2d", [X3], dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True,
                                          count_include_pad=False), id="avg_pool2d"),
    pytest.param("avg_pool1d", [X2], dict(kernel_size=3, stride=2, padding=1), id="avg_pool1d"),
    pytest.param("adaptive_avg_pool2d", [X3], dict(output_size=(3, 4)), id="adaptive_avg_pool2d"),
]


@pytest.mark.parametrize(("op", "arrays", "params"), TORCH_CASES)
def test_unbatched_forward_and_gradients_match_torch(op: str, arrays: list, params: dict) -> None:
    torch = pytest.importorskip("torch")
    tensors = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out_t = getattr(torch.nn.functional, op)(*tensors, **params)
    out = getattr(K, op)(*arrays, **params)
    assert out.shape == tuple(out_t.shape) and out.ndim == arrays[0].ndim
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(out.shape)
    out_t.backward(torch.tensor(g))
    for grad, tensor in zip(getattr(K, f"{op}_vjp")(g, *arrays, **params), tensors):
        assert (grad is None) == (tensor is None)
        if grad is not None:
            assert grad.shape == tuple(tensor.shape)
            np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("op", "x"), [("max_pool2d", X3), ("max_pool1d", X2)])
def test_unbatched_max_pool_indices_match_torch(op: str, x: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    params = dict(kernel_size=3, stride=1, padding=1, dilation=2)
    _, index = getattr(K, op)(x, return_indices=True, **params)
    _, index_t = getattr(torch.nn.functional, op)(torch.tensor(x), return_indices=True, **params)
    np.testing.assert_array_equal(index, index_t.numpy())
