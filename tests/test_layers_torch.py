"""Layer kernels against torch.nn.functional (skipped when torch is not installed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import symdl.kernels as K

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 7, 6))
X1 = RNG.standard_normal((2, 4, 9))


def _case(name: str, ours: str, theirs: Callable, arrays: list, params: dict, frozen: tuple[int, ...] = (),
          torch_call: Callable | None = None) -> object:
    return pytest.param(ours, theirs, arrays, params, frozen, torch_call, id=name)


CASES = [
    _case("conv2d", "conv2d", F.conv2d, [X, RNG.standard_normal((6, 2, 3, 2)), RNG.standard_normal(6)],
          dict(stride=2, padding=1, dilation=2, groups=2)),
    _case("conv2d-same-even", "conv2d", F.conv2d, [X, RNG.standard_normal((3, 4, 2, 2)), None],
          dict(padding="same", dilation=2)),
    _case("conv1d", "conv1d", F.conv1d, [X1, RNG.standard_normal((6, 2, 3)), RNG.standard_normal(6)],
          dict(stride=3, padding=2, groups=2)),
    _case("conv_transpose2d", "conv_transpose2d", F.conv_transpose2d,
          [X, RNG.standard_normal((4, 3, 3, 2)), RNG.standard_normal(6)],
          dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)),
    _case("max_pool2d", "max_pool2d", F.max_pool2d, [X], dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    _case("max_pool1d", "max_pool1d", F.max_pool1d, [X1], dict(kernel_size=2, dilation=2)),
    _case("max_pool2d-ceil-past-input", "max_pool2d", F.max_pool2d, [X[:, :, :, :2]],
          dict(kernel_size=2, dilation=2, ceil_mode=True)),
    _case("avg_pool2d", "avg_pool2d", F.avg_pool2d, [X],
          dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    _case("avg_pool1d", "avg_pool1d", F.avg_pool1d, [X1], dict(kernel_size=3, stride=2, padding=1)),
    _case("adaptive_avg_pool2d", "adaptive_avg_pool2d", F.adaptive_avg_pool2d, [X], dict(output_size=(3, 4))),
    _case("linear", "linear", F.linear, [RNG.standard_normal((3, 5)), RNG.standard_normal((4, 5)),
                                         RNG.standard_normal(4)], {}),
    _case("bilinear", "bilinear", F.bilinear, [RNG.standard_normal((3, 5)), RNG.standard_normal((3, 2)),
                                               RNG.standard_normal((4, 5, 2)), RNG.standard_normal(4)], {}),
    _case("batch_norm-train", "batch_norm", F.batch_norm, [X, np.zeros(4), np.ones(4), RNG.standard_normal(4),
                                                          RNG.standard_normal(4)],
          dict(training=True, momentum=0.2, eps=1e-3), frozen=(1, 2)),
    _case("batch_norm-eval", "batch_norm", F.batch_norm, [X, RNG.standard_normal(4), RNG.random(4) + 0.5,
                                                         RNG.standard_normal(4), None],
          dict(training=False), frozen=(1, 2)),
    _case("layer_norm", "layer_norm", None, [X, RNG.standard_normal((7, 6)), RNG.standard_normal((7, 6))],
          dict(normalized_shape=(7, 6)), torch_call=lambda x, w, b, normalized_shape: F.layer_norm(
              x, normalized_shape, w, b)),
    _case("group_norm", "group_norm", None, [X, RNG.standard_normal(4), RNG.standard_normal(4)],
          dict(num_groups=2), torch_call=lambda x, w, b, num_groups: F.group_norm(x, num_groups, w, b)),
]


@pytest.mark.parametrize(("ours", "theirs", "arrays", "params", "frozen", "torch_call"), CASES)
def test_forward_and_gradients_match_torch(ours, theirs, arrays, params, frozen, torch_call) -> None:
    tensors = [None if a is None else torch.tensor(a, requires_grad=i not in frozen) for i, a in enumerate(arrays)]
    out_t = (torch_call or theirs)(*tensors, **params)
    out = getattr(K, ours)(*[None if a is None else a.copy() for a in arrays], **params)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(out.shape)
    out_t.backward(torch.tensor(g))
    grads = getattr(K, f"{ours}_vjp")(g, *arrays, **params)
    for grad, tensor in zip(grads, tensors):
        if tensor is None or not tensor.requires_grad:
            assert grad is None
        else:
            np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_max_pool_indices_and_running_stats_match_torch() -> None:
    _, index = K.max_pool2d(X, kernel_size=(3, 2), stride=1, padding=1, dilation=2, return_indices=True)
    _, index_t = F.max_pool2d(torch.tensor(X), (3, 2), 1, 1, 2, return_indices=True)
    np.testing.assert_array_equal(index, index_t.numpy())
    mean, var = np.zeros(4), np.ones(4)
    mean_t, var_t = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    K.batch_norm(X, mean, var, training=True, momentum=0.3)
    F.batch_norm(torch.tensor(X), mean_t, var_t, training=True, momentum=0.3)
    np.testing.assert_allclose(mean, mean_t.numpy(), rtol=1e-13)
    np.testing.assert_allclose(var, var_t.numpy(), rtol=1e-13)
