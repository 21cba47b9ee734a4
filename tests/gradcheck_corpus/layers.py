"""CS231n-style layers: ``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads``, and a loss
returning ``(loss, dx)``. The ``*_wrong`` functions carry the kind of bug such code has (said in a comment)."""

from __future__ import annotations

import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_wrong(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.mean(dout, axis=0)  # averaged over the batch instead of summed
    return dx, dw, db


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out = np.maximum(0, a)
    return out, (fc_cache, a)


def affine_relu_backward(dout, cache):
    fc_cache, a = cache
    da = dout * (a > 0)
    return affine_backward(da, fc_cache)


def affine_relu_backward_wrong(dout, cache):
    fc_cache, a = cache
    da = dout * (a >= -1e-3)  # a "tolerant" mask: lets through gradient of units just below 0
    return affine_backward(da, fc_cache)


def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", np.zeros(x.shape[1], dtype=x.dtype))
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu  # forward writes the dict
    return gamma * xhat + beta, (xhat, gamma, var + eps)


def batchnorm_backward(dout, cache):
    xhat, gamma, v = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (n * np.sqrt(v))
    return dx, dgamma, dbeta


def batchnorm_backward_wrong(dout, cache):
    xhat, gamma, v = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0)) / (n * np.sqrt(v))  # the path through the variance is missing
    return dx, dgamma, dbeta


def softmax_loss(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def softmax_loss_wrong(x, y):
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]  # not divided by the batch size
