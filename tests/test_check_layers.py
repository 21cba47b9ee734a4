"""symdl.check.check_layer and check_cache_layer on layers written the way course and library code writes
them: lazily created parameters, gradients accumulated with +=, caches, running statistics that forward
updates, a bn_param dict written in place. Which backward is right and which is wrong is established with
PyTorch's autograd, independently of the checker."""

from __future__ import annotations

import numpy as np
import pytest

from symdl.check import GradcheckInputError, check_cache_layer, check_layer

torch = pytest.importorskip("torch")  # the independent ground truth (the optional export extra)

MODES = ("full", "fast", "complex", "richardson")
RNG = np.random.default_rng(20)


# ---------------------------------------------------------------- an object with params/grads dicts
class Dense:
    """Parameters created at the first forward; backward accumulates into grads (+=)."""

    def __init__(self, n_out: int, seed: int = 0) -> None:
        self.n_out, self.seed, self.params, self.grads = n_out, seed, {}, {}

    def forward(self, x):
        if not self.params:
            rng = np.random.default_rng(self.seed)
            self.params = {"W": rng.standard_normal((x.shape[-1], self.n_out)), "b": rng.standard_normal(self.n_out)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.x = x
        return np.tanh(x @ self.params["W"] + self.params["b"])

    def backward(self, dout):
        z = self.x @ self.params["W"] + self.params["b"]
        dz = dout * (1 - np.tanh(z) ** 2)
        self.grads["W"] += self.x.T @ dz
        self.grads["b"] += dz.sum(axis=0)
        return dz @ self.params["W"].T


class DenseBiasNotSummed(Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] = self.grads["b"] / self.x.shape[0]  # the bias gradient averaged over the batch
        return dx


class BatchNorm:
    """Training-mode batch norm that updates running statistics in forward (as every library does)."""

    def __init__(self, features: int) -> None:
        self.params = {"gamma": np.linspace(0.5, 1.5, features), "beta": np.linspace(-0.2, 0.2, features)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.running_mean, self.running_var, self.eps = np.zeros(features), np.ones(features), 1e-5

    def forward(self, x):
        mean, var = x.mean(axis=0), x.var(axis=0)
        self.running_mean = 0.9 * self.running_mean + 0.1 * mean
        self.running_var = 0.9 * self.running_var + 0.1 * var
        self.xhat, self.std = (x - mean) / np.sqrt(var + self.eps), np.sqrt(var + self.eps)
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout):
        n = dout.shape[0]
        self.grads["gamma"] += (dout * self.xhat).sum(axis=0)
        self.grads["beta"] += dout.sum(axis=0)
        dxhat = dout * self.params["gamma"]
        return (n * dxhat - dxhat.sum(axis=0) - self.xhat * (dxhat * self.xhat).sum(axis=0)) / (n * self.std)


class BatchNormMissingTerm(BatchNorm):
    def backward(self, dout):
        n = dout.shape[0]
        self.grads["gamma"] += (dout * self.xhat).sum(axis=0)
        self.grads["beta"] += dout.sum(axis=0)
        dxhat = dout * self.params["gamma"]
        return (n * dxhat - dxhat.sum(axis=0)) / (n * self.std)  # the term through the variance is missing


def torch_vjp(forward_torch, v: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = forward_torch(*tensors)
    out.backward(torch.tensor(v, dtype=torch.float64))
    return [t.grad.numpy() for t in tensors]


def layer_vjp(layer, x: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    layer.forward(x)
    for g in layer.grads.values():
        g[...] = 0
    dx = layer.backward(v)
    return [dx, *(layer.grads[k] for k in layer.params)]


@pytest.mark.parametrize(("right", "wrong", "forward_torch"), [
    (Dense, DenseBiasNotSummed, lambda x, w, b: torch.tanh(x @ w + b)),
    (BatchNorm, BatchNormMissingTerm, lambda x, g, b: g * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False)
                                                                                       + 1e-5) + b),
], ids=["dense", "batchnorm"])
def test_object_layers_right_pass_and_wrong_fail_in_every_mode(right, wrong, forward_torch) -> None:
    x = RNG.standard_normal((5, 3))
    v = RNG.standard_normal((5, 3 if right is BatchNorm else 4))
    make = (lambda cls: cls(3)) if right is BatchNorm else (lambda cls: cls(4))
    # ground truth: PyTorch agrees with the right backward and not with the wrong one
    reference = make(right)
    reference.forward(x)
    truth = torch_vjp(forward_torch, v, x, *reference.params.values())
    for cls, agrees in ((right, True), (wrong, False)):
        layer = make(cls)
        got = layer_vjp(layer, x, v)
        close = all(np.allclose(g, t, rtol=1e-9, atol=1e-12) for g, t in zip(got, truth))
        assert close == agrees, cls.__name__
    for mode in MODES:
        report = check_layer(make(right), x, mode=mode)
        assert report.passed, report.to_text()
        assert [r.name for r in report.inputs] == ["x", *reference.params]
        bad = check_layer(make(wrong), x, mode=mode)
        assert not bad.passed, (mode, bad.to_text())


def test_state_is_restored_gradients_zeroed_and_lazy_parameters_created() -> None:
    x = RNG.standard_normal((6, 3))
    layer = BatchNorm(3)
    report = check_layer(layer, x)
    assert report.passed and report.vjp_calls > 1  # several backward calls: accumulation would double them
    once = BatchNorm(3)
    once.forward(x)
    assert np.array_equal(layer.running_mean, once.running_mean)  # the check left the layer as after one forward
    dense = Dense(2)
    assert not dense.params
    assert check_layer(dense, x).passed and set(dense.params) == {"W", "b"}


def test_layer_without_parameters_or_methods_is_bad_input() -> None:
    class NoBackward:
        params: dict = {}

        def forward(self, x):
            return x

    with pytest.raises(GradcheckInputError, match="no method 'backward'"):
        check_layer(NoBackward(), np.ones((2, 2)))


# ---------------------------------------------------------------- CS231n-style forward/backward with a cache
def affine_relu_forward(x, w, b):
    a = x @ w + b
    return np.maximum(a, 0), (x, w, a)


def affine_relu_backward(dout, cache):
    x, w, a = cache
    da = dout * (a > 0)
    return da @ w.T, x.T @ da, da.sum(axis=0)


def affine_relu_backward_wrong(dout, cache):
    x, w, a = cache
    da = dout * (a > 0)
    return da @ w, x.T @ da, da.sum(axis=0)  # w instead of w.T: square weights make the shapes fit


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param.get("mode", "train")
    mean, var = x.mean(axis=0), x.var(axis=0)
    momentum, eps = bn_param.get("momentum", 0.9), bn_param.get("eps", 1e-5)
    bn_param["running_mean"] = momentum * bn_param.get("running_mean", np.zeros_like(mean)) + (1 - momentum) * mean
    assert mode == "train"
    xhat = (x - mean) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, np.sqrt(var + eps))


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (n * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def test_cache_layers_right_pass_and_wrong_fail_in_every_mode() -> None:
    x, w, b = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 3)), RNG.standard_normal(3) + 0.5
    v = RNG.standard_normal((4, 3))
    truth = torch_vjp(lambda x, w, b: torch.relu(x @ w + b), v, x, w, b)
    assert all(np.allclose(g, t) for g, t in zip(affine_relu_backward(v, affine_relu_forward(x, w, b)[1]), truth))
    assert not np.allclose(affine_relu_backward_wrong(v, affine_relu_forward(x, w, b)[1])[0], truth[0])
    for mode in MODES:
        report = check_cache_layer(affine_relu_forward, affine_relu_backward, x, w, b, mode=mode)
        assert report.passed and [r.name for r in report.inputs] == ["x", "w", "b"], report.to_text()
        bad = check_cache_layer(affine_relu_forward, affine_relu_backward_wrong, x, w, b, mode=mode)
        assert not bad.passed and not bad.inputs[0].passed


def test_cache_layer_with_a_param_dict_that_forward_writes() -> None:
    x, gamma, beta = RNG.standard_normal((5, 3)), RNG.uniform(0.5, 1.5, 3), RNG.standard_normal(3)
    bn_param = {"mode": "train"}
    report = check_cache_layer(batchnorm_forward, batchnorm_backward, x, gamma, beta, extra=[bn_param])
    assert report.passed, report.to_text()
    assert bn_param == {"mode": "train"}  # deep-copied for every call: the caller's dict is untouched
    assert [r.name for r in report.inputs] == ["x", "gamma", "beta"]
