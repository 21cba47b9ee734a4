"""Direct, obviously-correct loop implementations of the layers (slow: tests use small sizes).

Each follows the textbook / PyTorch documentation formula one output element at a
time, written independently of the kernels (no im2col, no col2im, no shared helpers).
"""

from __future__ import annotations

import math

import numpy as np


def pair(value: object, n: int = 2) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: object = 1, padding: object = 0,
           dilation: object = 1, groups: int = 1) -> np.ndarray:
    """y[n, o, i, j] = b[o] + sum_{c, u, v} xpad[n, g*Cg + c, i*sh + u*dh, j*sw + v*dw] * w[o, c, u, v]."""
    n_, c_, h, wd = x.shape
    o_, cg, kh, kw = w.shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    if padding == "same":  # total d*(k-1); the odd element goes after
        top, left = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        bottom, right = dh * (kh - 1) - top, dw * (kw - 1) - left
    elif padding == "valid":
        top = bottom = left = right = 0
    else:
        (top, left) = pair(padding)
        bottom, right = top, left
    xp = np.zeros((n_, c_, h + top + bottom, wd + left + right), dtype=x.dtype)
    xp[:, :, top:top + h, left:left + wd] = x
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n_, o_, ho, wo), dtype=x.dtype)
    per_group = o_ // groups
    for n, o, i, j in np.ndindex(n_, o_, ho, wo):
        g = o // per_group
        acc = 0.0 if b is None else b[o]
        for c in range(cg):
            for u in range(kh):
                for v in range(kw):
                    acc += xp[n, g * cg + c, i * sh + u * dh, j * sw + v * dw] * w[o, c, u, v]
        out[n, o, i, j] = acc
    return out


def conv_transpose2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: object = 1, padding: object = 0,
                     output_padding: object = 0, groups: int = 1, dilation: object = 1) -> np.ndarray:
    """Each input pixel adds x[n, c, h, v] * w[c, o, :, :] into the output at (h*s + u*d - p, v*s + k*d - p)."""
    n_, c_, h_, w_ = x.shape
    _, og, kh, kw = w.shape
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    eh, ew = pair(output_padding)
    dh, dw = pair(dilation)
    ho = (h_ - 1) * sh - 2 * ph + dh * (kh - 1) + eh + 1
    wo = (w_ - 1) * sw - 2 * pw + dw * (kw - 1) + ew + 1
    out = np.zeros((n_, og * groups, ho, wo), dtype=x.dtype)
    cg = c_ // groups
    for n, c, h, v in np.ndindex(n_, c_, h_, w_):
        for o, u, k in np.ndindex(og, kh, kw):
            row, col = h * sh + u * dh - ph, v * sw + k * dw - pw
            if 0 <= row < ho and 0 <= col < wo:
                out[n, (c // cg) * og + o, row, col] += x[n, c, h, v] * w[c, o, u, k]
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (the last window must start inside input or left padding)."""
    span = d * (k - 1) + 1
    out = (math.ceil if ceil_mode else math.floor)((size + 2 * p - span) / s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x: np.ndarray, kernel_size: object, stride: object = None, padding: object = 0,
               dilation: object = 1, ceil_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima and the flat index (h * W + w) of the first maximum, scanning row-major."""
    n_, c_, h_, w_ = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    ho, wo = _pool_size(h_, kh, sh, ph, dh, ceil_mode), _pool_size(w_, kw, sw, pw, dw, ceil_mode)
    out = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    idx = np.zeros((n_, c_, ho, wo), dtype=np.int64)
    for n, c, i, j in np.ndindex(n_, c_, ho, wo):
        best, where = -math.inf, -1
        for u in range(kh):
            for v in range(kw):
                row, col = i * sh - ph + u * dh, j * sw - pw + v * dw
                if 0 <= row < h_ and 0 <= col < w_ and x[n, c, row, col] > best:
                    best, where = x[n, c, row, col], row * w_ + col
        out[n, c, i, j], idx[n, c, i, j] = best, where
    return out, idx


def max_pool2d_grad(x: np.ndarray, g: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each window's upstream gradient added at its arg-max."""
    out = np.zeros_like(x)
    n_, c_, _, w_ = x.shape
    for n, c, i, j in np.ndindex(*g.shape):
        if index[n, c, i, j] >= 0:  # -1: a window wholly in the padding
            out[n, c, index[n, c, i, j] // w_, index[n, c, i, j] % w_] += g[n, c, i, j]
    return out


def avg_pool2d(x: np.ndarray, kernel_size: object, stride: object = None, padding: object = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> np.ndarray:
    """PyTorch's avg_pool2d, written as its CPU loop: window clipped to input + padding for the
    count_include_pad divisor, to the input for the sum."""
    n_, c_, h_, w_ = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    ho, wo = _pool_size(h_, kh, sh, ph, 1, ceil_mode), _pool_size(w_, kw, sw, pw, 1, ceil_mode)
    out = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    for n, c, i, j in np.ndindex(n_, c_, ho, wo):
        h0, w0 = i * sh - ph, j * sw - pw
        h1, w1 = min(h0 + kh, h_ + ph), min(w0 + kw, w_ + pw)
        pool = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h_), min(w1, w_)
        total = x[n, c, h0:h1, w0:w1].sum()
        divisor = divisor_override or (pool if count_include_pad else (h1 - h0) * (w1 - w0))
        out[n, c, i, j] = total / divisor
    return out


def adaptive_avg_pool2d(x: np.ndarray, output_size: object) -> np.ndarray:
    """Output (i, j) averages rows floor(i H / Ho) .. ceil((i + 1) H / Ho) - 1 (likewise columns)."""
    ho, wo = pair(output_size)
    ho, wo = ho or x.shape[2], wo or x.shape[3]
    out = np.zeros((*x.shape[:2], ho, wo), dtype=x.dtype)
    h_, w_ = x.shape[2:]
    for i, j in np.ndindex(ho, wo):
        rows = slice(i * h_ // ho, math.ceil((i + 1) * h_ / ho))
        cols = slice(j * w_ // wo, math.ceil((j + 1) * w_ / wo))
        out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out


def _standardise(v: np.ndarray, eps: float) -> np.ndarray:
    return (v - v.mean()) / np.sqrt(v.var() + eps)


def batch_norm(x: np.ndarray, mean: np.ndarray | None, var: np.ndarray | None, w: np.ndarray | None,
               b: np.ndarray | None, training: bool, eps: float) -> np.ndarray:
    """Per channel c: standardise x[:, c] with its own statistics (training) or the running ones."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        v = x[:, c]
        y = _standardise(v, eps) if training else (v - mean[c]) / np.sqrt(var[c] + eps)
        out[:, c] = y * (1 if w is None else w[c]) + (0 if b is None else b[c])
    return out


def layer_norm(x: np.ndarray, normalized_shape: tuple[int, ...], w: np.ndarray | None, b: np.ndarray | None,
               eps: float) -> np.ndarray:
    """Each leading index: standardise the trailing block, then the elementwise affine map."""
    lead = x.shape[:x.ndim - len(normalized_shape)]
    out = np.empty_like(x)
    for index in np.ndindex(*lead):
        out[index] = _standardise(x[index], eps) * (1 if w is None else w) + (0 if b is None else b)
    return out


def group_norm(x: np.ndarray, num_groups: int, w: np.ndarray | None, b: np.ndarray | None, eps: float) -> np.ndarray:
    """Each (sample, group of C / G channels): standardise, then the per-channel affine map."""
    out = np.empty_like(x)
    size = x.shape[1] // num_groups
    for n, g in np.ndindex(x.shape[0], num_groups):
        block = slice(g * size, (g + 1) * size)
        out[n, block] = _standardise(x[n, block], eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return out * (1 if w is None else w.reshape(shape)) + (0 if b is None else b.reshape(shape))


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """y[..., o] = sum_i x[..., i] w[o, i] + b[o]."""
    out = np.zeros((*x.shape[:-1], w.shape[0]))
    for index in np.ndindex(*x.shape[:-1]):
        for o in range(w.shape[0]):
            out[(*index, o)] = sum(x[(*index, i)] * w[o, i] for i in range(w.shape[1])) + (0 if b is None else b[o])
    return out


def bilinear(x1: np.ndarray, x2: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """y[..., k] = x1[...] @ w[k] @ x2[...] + b[k]."""
    out = np.zeros((*x1.shape[:-1], w.shape[0]))
    for index in np.ndindex(*x1.shape[:-1]):
        for k in range(w.shape[0]):
            out[(*index, k)] = x1[index] @ w[k] @ x2[index] + (0 if b is None else b[k])
    return out
