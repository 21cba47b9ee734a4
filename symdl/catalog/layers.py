"""Layer entries: convolution, pooling, linear, normalisation, dropout, flatten.

Each entry's ``definition`` is the layer's index formula written out over
explicit arrays (object arrays of SymPy symbols): one output element at a
time, a plain sum over the indices the formula names, zero outside the input
(padding). Nothing here calls the kernels' runtime, so the proof in
:mod:`symdl.proofs.layers` compares two independent programs.

PyTorch's names, argument order, defaults and NCHW layout throughout.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from symdl.catalog.layer_spec import Instance, Layer, LayerInput, LayerParam

Arrays = Mapping[str, Any]
Params = Mapping[str, Any]


# --------------------------------------------------------------------------- index helpers
def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _element(x: np.ndarray, index: Sequence[int]) -> Any:
    """x at ``index``, or 0 where the spatial index falls in the padding."""
    spatial = index[2:]
    if all(0 <= i < size for i, size in zip(spatial, x.shape[2:])):
        return x[tuple(index)]
    return 0


def _output(shape: Sequence[int], value: Any) -> np.ndarray:
    """An object array of ``shape`` whose element at each index is ``value(index)``."""
    out = np.empty(tuple(shape), dtype=object)
    for index in np.ndindex(*out.shape):
        out[index] = value(index)
    return out


def _conv_padding(padding: Any, kernel: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """Padding before each spatial dim; 'same' puts the smaller half first (PyTorch)."""
    if padding == "valid":
        return [0] * len(kernel)
    if padding == "same":
        return [d * (k - 1) // 2 for k, d in zip(kernel, dilation)]
    return list(_tuple(padding, len(kernel)))


# --------------------------------------------------------------------------- definitions
def conv_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,o,\mathbf p} = b_o + \sum_{c<C/G} \sum_{\mathbf k} x_{n,\, gC/G + c,\,
    \mathbf s \mathbf p + \mathbf d \mathbf k - \text{pad}}\, w_{o,c,\mathbf k}` with g = o // (O/G)."""
    x, w, b = a["input"], a["weight"], a["bias"]
    spatial = x.ndim - 2
    stride, dilation = _tuple(p.get("stride", 1), spatial), _tuple(p.get("dilation", 1), spatial)
    groups = p.get("groups", 1)
    kernel = w.shape[2:]
    before = _conv_padding(p.get("padding", 0), kernel, dilation)
    total = [d * (k - 1) for k, d in zip(kernel, dilation)] if p.get("padding") == "same" else [2 * q for q in before]
    sizes = [(x.shape[2 + i] + total[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(spatial)]
    per_group_in, per_group_out = x.shape[1] // groups, w.shape[0] // groups

    def value(index: tuple[int, ...]) -> Any:
        n, o, *pos = index
        acc = b[o] if b is not None else 0
        for c in range(per_group_in):
            for k in itertools.product(*(range(s) for s in kernel)):
                where = [pos[i] * stride[i] + k[i] * dilation[i] - before[i] for i in range(spatial)]
                acc += _element(x, (n, (o // per_group_out) * per_group_in + c, *where)) * w[(o, c, *k)]
        return acc

    return _output((x.shape[0], w.shape[0], *sizes), value)


def conv_transpose_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,o,\mathbf q} = b_o + \sum_{c \in g(o)} \sum_{\mathbf h, \mathbf k:\ \mathbf s \mathbf h
    + \mathbf d \mathbf k - \text{pad} = \mathbf q} x_{n,c,\mathbf h}\, w_{c,\, o - gO/G,\, \mathbf k}`:
    every input pixel scatters the kernel, scaled, into the output."""
    x, w, b = a["input"], a["weight"], a["bias"]
    stride, dilation = _tuple(p.get("stride", 1), 2), _tuple(p.get("dilation", 1), 2)
    pad, extra = _tuple(p.get("padding", 0), 2), _tuple(p.get("output_padding", 0), 2)
    groups = p.get("groups", 1)
    per_in, per_out = w.shape[0] // groups, w.shape[1]
    sizes = [(x.shape[2 + i] - 1) * stride[i] - 2 * pad[i] + dilation[i] * (w.shape[2 + i] - 1) + extra[i] + 1
             for i in range(2)]
    out = np.zeros((x.shape[0], per_out * groups, *sizes), dtype=object)
    for n, c, h, v in np.ndindex(*x.shape):
        for o, i, j in np.ndindex(*w.shape[1:]):
            row, col = h * stride[0] + i * dilation[0] - pad[0], v * stride[1] + j * dilation[1] - pad[1]
            if 0 <= row < sizes[0] and 0 <= col < sizes[1]:
                out[n, (c // per_in) * per_out + o, row, col] += x[n, c, h, v] * w[c, o, i, j]
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _pool_windows(x: np.ndarray, p: Params) -> tuple[list[int], list[list[tuple[list[int], int]]]]:
    """Output sizes and, per spatial dim and output position, the input indices the window
    covers inside the input and its size clipped to input + padding (PyTorch's rules)."""
    spatial = x.ndim - 2
    kernel = _tuple(p["kernel_size"], spatial)
    stride = kernel if p.get("stride") is None else _tuple(p["stride"], spatial)
    pad, dilation = _tuple(p.get("padding", 0), spatial), _tuple(p.get("dilation", 1), spatial)
    sizes, windows = [], []
    for i in range(spatial):
        size, span = x.shape[2 + i], dilation[i] * (kernel[i] - 1) + 1
        rounding = math.ceil if p.get("ceil_mode", False) else math.floor
        out = rounding((size + 2 * pad[i] - span) / stride[i]) + 1
        if p.get("ceil_mode", False) and (out - 1) * stride[i] >= size + pad[i]:
            out -= 1
        sizes.append(out)
        dim = []
        for o in range(out):
            start = o * stride[i] - pad[i]
            taps = [start + k * dilation[i] for k in range(kernel[i])]
            dim.append(([t for t in taps if 0 <= t < size], min(start + span, size + pad[i]) - start))
        windows.append(dim)
    return sizes, windows


def max_pool_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,c,\mathbf p} = \max_{\mathbf k} x_{n,c,\mathbf s \mathbf p + \mathbf d \mathbf k - \text{pad}}`
    over the window's elements inside the input (padding is :math:`-\infty`)."""
    x = a["input"]
    sizes, windows = _pool_windows(x, p)

    def value(index: tuple[int, ...]) -> Any:
        taps = itertools.product(*(windows[i][index[2 + i]][0] for i in range(len(sizes))))
        return sp.Max(*(x[(*index[:2], *t)] for t in taps), evaluate=False)  # evaluated at the points

    return _output((*x.shape[:2], *sizes), value)


def avg_pool_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,c,\mathbf p} = \frac{1}{D_{\mathbf p}} \sum_{\mathbf k} x_{n,c,\mathbf s \mathbf p + \mathbf k
    - \text{pad}}` (zero padding) with :math:`D` = ``divisor_override``, else the window's size within
    input + padding (``count_include_pad``) or its count of input elements."""
    x = a["input"]
    sizes, windows = _pool_windows(x, p)

    def value(index: tuple[int, ...]) -> Any:
        dims = [windows[i][index[2 + i]] for i in range(len(sizes))]
        total = sum(x[(*index[:2], *t)] for t in itertools.product(*(d[0] for d in dims)))
        if p.get("divisor_override") is not None:
            divisor = p["divisor_override"]
        elif p.get("count_include_pad", True):
            divisor = math.prod(d[1] for d in dims)
        else:
            divisor = math.prod(len(d[0]) for d in dims)
        return total / sp.Integer(divisor)

    return _output((*x.shape[:2], *sizes), value)


def adaptive_avg_pool_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,c,i,j}` = the mean of :math:`x_{n,c,h,w}` over
    :math:`\lfloor iH/H_o \rfloor \le h < \lceil (i+1)H/H_o \rceil` and likewise w."""
    x = a["input"]
    out = _tuple(p["output_size"], 2)

    def window(i: int, size: int, count: int) -> range:
        return range((i * size) // count, -(-(i + 1) * size // count))

    def value(index: tuple[int, ...]) -> Any:
        rows, cols = window(index[2], x.shape[2], out[0]), window(index[3], x.shape[3], out[1])
        return sum(x[index[0], index[1], h, v] for h in rows for v in cols) / sp.Integer(len(rows) * len(cols))

    return _output((*x.shape[:2], *out), value)


def linear_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{\dots,o} = b_o + \sum_i x_{\dots,i} w_{o,i}`."""
    x, w, b = a["input"], a["weight"], a["bias"]

    def value(index: tuple[int, ...]) -> Any:
        *lead, o = index
        return (b[o] if b is not None else 0) + sum(x[(*lead, i)] * w[o, i] for i in range(w.shape[1]))

    return _output((*x.shape[:-1], w.shape[0]), value)


def bilinear_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{\dots,k} = b_k + \sum_{i,j} x^{(1)}_{\dots,i} w_{k,i,j} x^{(2)}_{\dots,j}`."""
    x1, x2, w, b = a["input1"], a["input2"], a["weight"], a["bias"]

    def value(index: tuple[int, ...]) -> Any:
        *lead, k = index
        return (b[k] if b is not None else 0) + sum(
            x1[(*lead, i)] * w[k, i, j] * x2[(*lead, j)] for i in range(w.shape[1]) for j in range(w.shape[2]))

    return _output((*x1.shape[:-1], w.shape[0]), value)


def _standardise(values: list[Any], eps: Any) -> list[Any]:
    r""":math:`(v - \mu)/\sqrt{\sigma^2 + \epsilon}` with the mean and biased variance of ``values``."""
    count = len(values)
    mean = sum(values) / sp.Integer(count)
    var = sum((v - mean) ** 2 for v in values) / sp.Integer(count)
    return [(v - mean) / sp.sqrt(var + sp.nsimplify(eps)) for v in values]


def _normalise(x: np.ndarray, group: Any, eps: Any) -> np.ndarray:
    """x standardised over the sets of indices that ``group(index)`` maps to one key."""
    members: dict[Any, list[tuple[int, ...]]] = {}
    for index in np.ndindex(*x.shape):
        members.setdefault(group(index), []).append(index)
    out = np.empty(x.shape, dtype=object)
    for indices in members.values():
        for index, value in zip(indices, _standardise([x[i] for i in indices], eps)):
            out[index] = value
    return out


def _affine(xhat: np.ndarray, weight: Any, bias: Any, param_index: Any) -> np.ndarray:
    return _output(xhat.shape, lambda i: xhat[i] * (1 if weight is None else weight[param_index(i)])
                   + (0 if bias is None else bias[param_index(i)]))


def batch_norm_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,c,\dots} = \gamma_c \frac{x_{n,c,\dots} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c`,
    :math:`\mu_c, \sigma^2_c` the mean and biased variance over (n, ...) (training) or the running
    statistics (eval)."""
    x, eps = a["input"], p.get("eps", 1e-5)
    if p.get("training", False):
        xhat = _normalise(x, lambda i: i[1], eps)
    else:
        mean, var = a["running_mean"], a["running_var"]
        xhat = _output(x.shape, lambda i: (x[i] - mean[i[1]]) / sp.sqrt(var[i[1]] + sp.nsimplify(eps)))
    return _affine(xhat, a["weight"], a["bias"], lambda i: i[1])


def layer_norm_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y = \gamma \odot (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta`, statistics over the
    trailing ``normalized_shape`` dims of each sample."""
    x = a["input"]
    shape = _tuple(p["normalized_shape"], 1)
    lead = x.ndim - len(shape)
    xhat = _normalise(x, lambda i: i[:lead], p.get("eps", 1e-5))
    return _affine(xhat, a["weight"], a["bias"], lambda i: i[lead:])


def group_norm_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y_{n,c,\dots} = \gamma_c (x - \mu_{n,g})/\sqrt{\sigma^2_{n,g} + \epsilon} + \beta_c`,
    statistics over the channels of group g = c // (C/G) and all positions of sample n."""
    x = a["input"]
    per_group = x.shape[1] // p["num_groups"]
    xhat = _normalise(x, lambda i: (i[0], i[1] // per_group), p.get("eps", 1e-5))
    return _affine(xhat, a["weight"], a["bias"], lambda i: i[1])


def dropout_definition(a: Arrays, p: Params) -> np.ndarray:
    r""":math:`y = x \odot m / (1 - p)` (training; 0 when p = 1), :math:`y = x` (eval)."""
    x, mask, rate = a["input"], a["mask"], sp.nsimplify(p.get("p", 0.5))
    if not p.get("training", True):
        return x.copy()
    scale = 0 if rate == 1 else 1 / (1 - rate)
    return _output(x.shape, lambda i: x[i] * mask[i] * scale)


def flatten_definition(a: Arrays, p: Params) -> np.ndarray:
    """:math:`y` holds x's elements in C order with dims start_dim..end_dim merged."""
    x = a["input"]
    start, end = p.get("start_dim", 1) % x.ndim, p.get("end_dim", -1) % x.ndim
    return np.array(list(x.flat), dtype=object).reshape(*x.shape[:start], -1, *x.shape[end + 1:])


# --------------------------------------------------------------------------- proof grids
def _grid(shapes: Any, **axes: Sequence[Any]) -> tuple[Instance, ...]:
    """One instance per combination of the parameter values; ``shapes(params)`` gives the shapes
    (None to skip a combination that PyTorch rejects)."""
    out = []
    for values in itertools.product(*axes.values()):
        params = dict(zip(axes, values))
        chosen = shapes(params)
        if chosen is not None:
            out.append(Instance(shapes=chosen, params=params))
    return tuple(out)


def _conv2d_shapes(p: Params) -> dict[str, Any] | None:
    if p["padding"] == "same" and p["stride"] != 1:
        return None
    kernel = (3, 2) if p["dilation"] == 1 else (2, 2)
    return {"input": (1, 2, 4, 4), "weight": (2, 2 // p["groups"], *kernel), "bias": (2,)}


CONV2D_GRID = _grid(_conv2d_shapes, stride=(1, 2), padding=(1, "same", (1, 0)), dilation=(1, 2), groups=(1, 2))
CONV1D_GRID = _grid(
    lambda p: None if p["padding"] == "same" and p["stride"] != 1 else
    {"input": (1, 2, 6), "weight": (2, 2 // p["groups"], 3), "bias": None if p["stride"] == 3 else (2,)},
    stride=(1, 3), padding=(2, "same", "valid"), dilation=(1, 2), groups=(1, 2))
CONV_TRANSPOSE_GRID = _grid(
    lambda p: None if p["output_padding"] >= max(p["stride"], p["dilation"]) else
    {"input": (1, 2, 2, 2), "weight": (2, 2 // p["groups"], 2, 3), "bias": (2,)},
    stride=(1, 2), padding=(0, 1), output_padding=(0, 1), dilation=(1, 2), groups=(1, 2))
POOL2D_PARAMS = dict(kernel_size=(2, (3, 2)), stride=(None, 1), padding=(0, 1), ceil_mode=(False, True))
MAX_POOL2D_GRID = _grid(lambda p: {"input": (1, 1, 5, 5)}, dilation=(1, 2), **POOL2D_PARAMS)
AVG_POOL2D_GRID = _grid(lambda p: {"input": (1, 1, 5, 4)}, count_include_pad=(True, False), **POOL2D_PARAMS) + _grid(
    lambda p: {"input": (1, 1, 4, 5)}, kernel_size=(2,), stride=(1,), divisor_override=(3,))
POOL1D_PARAMS = dict(kernel_size=(2, 3), stride=(None, 2), padding=(0, 1), ceil_mode=(False, True))
MAX_POOL1D_GRID = _grid(lambda p: {"input": (1, 1, 7)}, dilation=(1, 2), **POOL1D_PARAMS)
AVG_POOL1D_GRID = _grid(lambda p: {"input": (1, 2, 7)}, count_include_pad=(True, False), **POOL1D_PARAMS)
ADAPTIVE_GRID = _grid(lambda p: {"input": (1, 2, 5, 7)}, output_size=(1, 2, 3, (2, 3), (5, 4), (4, 7)))
EPS = Fraction(1, 8)  # exact, so the proofs compare rational expressions
NORM_AFFINE = ((True, True), (True, False), (False, False))
BATCH_NORM_GRID = _grid(
    lambda p: {"input": (2, 2, 2), "running_mean": (2,), "running_var": (2,),
               "weight": (2,) if p["affine"][0] else None, "bias": (2,) if p["affine"][1] else None},
    training=(True, False), affine=NORM_AFFINE, eps=(EPS,))
LAYER_NORM_GRID = _grid(
    lambda p: {"input": (2, 2, 2), "weight": p["normalized_shape"] if p["affine"][0] else None,
               "bias": p["normalized_shape"] if p["affine"][1] else None},
    normalized_shape=((2,), (2, 2)), affine=NORM_AFFINE, eps=(EPS,))
GROUP_NORM_GRID = _grid(
    lambda p: {"input": (1, 4, 1), "weight": (4,) if p["affine"][0] else None, "bias": (4,) if p["affine"][1] else None},
    num_groups=(1, 2), affine=NORM_AFFINE, eps=(EPS,))


# --------------------------------------------------------------------------- entries
X = LayerInput("input")
WEIGHT = LayerInput("weight")
BIAS = LayerInput("bias", "optional")
OPT_WEIGHT = LayerInput("weight", "optional")
SIZE = "int | tuple[int, ...]"
#: The VJP's ``input_grad=False`` skips the input's gradient (returned as None): a first layer's input
#: is data, whose gradient nobody reads (autograd skips an input that does not require grad the same way).
INPUT_GRAD = LayerParam("input_grad", True, "bool", where="backward")
#: The forward's im2col columns, handed to the VJP so that it does not build them again (as max-pool's
#: indices; autograd keeps what a backward needs the same way).
CONV_COLUMNS = (LayerParam("return_columns", False, "bool", where="forward"),
                LayerParam("columns", None, "ArrayLike | None", where="backward"))
CONV_PARAMS = (LayerParam("stride", 1, SIZE), LayerParam("padding", 0, "int | tuple[int, ...] | str"),
               LayerParam("dilation", 1, SIZE), LayerParam("groups", 1), INPUT_GRAD, *CONV_COLUMNS)
CONV_COLUMNS_NOTE = ("Backward: pass ``columns`` from ``return_columns=True`` (the forward then returns "
                     "``(output, columns)``; columns: the im2col matrix of the padded input, (groups, C/groups * "
                     "kernel size, output positions), or a tuple of one such array per batch chunk when the forward "
                     "split its batch over threads) to skip rebuilding it; without it the VJP builds it again.")
WINDOW = (LayerParam("kernel_size", None, SIZE, required=True), LayerParam("stride", None, f"{SIZE} | None"),
          LayerParam("padding", 0, SIZE))
MAX_POOL_PARAMS = (*WINDOW, LayerParam("dilation", 1, SIZE), LayerParam("ceil_mode", False, "bool"),
                   LayerParam("return_indices", False, "bool", where="forward"),
                   LayerParam("indices", None, "ArrayLike | None", where="backward"))
AVG_POOL_PARAMS = (*WINDOW, LayerParam("ceil_mode", False, "bool"), LayerParam("count_include_pad", True, "bool"))
CONV_MATH = (
    r"y_{n,o,\mathbf p} = b_o + \sum_{c < C/G} \sum_{\mathbf k} x_{n,\, g C/G + c,\, \mathbf s \mathbf p"
    r" + \mathbf d \mathbf k - \mathrm{pad}}\; w_{o,c,\mathbf k}, \quad g = \lfloor o / (O/G) \rfloor",
    r"\bar x = \text{col2im}(W_g^\top \bar y) \text{ (the full convolution of } \bar y \text{ dilated by the"
    r" stride with the flipped kernel)}",
    r"\bar w_{o,c,\mathbf k} = \sum_{n,\mathbf p} \bar y_{n,o,\mathbf p}\, x_{n, gC/G + c, \mathbf s \mathbf p"
    r" + \mathbf d \mathbf k - \mathrm{pad}} \text{ (a correlation of input and upstream gradient)}",
    r"\bar b_o = \sum_{n,\mathbf p} \bar y_{n,o,\mathbf p}",
)
NORM_MATH = (
    r"\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \quad y = \gamma \hat x + \beta",
    r"\bar x = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} \Big(\bar y - \overline{\bar y}"
    r" - \hat x\, \overline{\bar y \hat x}\Big) \text{ (means over the statistics' set)}",
    r"\bar\gamma = \sum \bar y \hat x, \quad \bar\beta = \sum \bar y",
)
#: Magnitudes where forward and VJP must stay finite: sums of a few such values still fit.
NORM_EXTREMES = ((1e30, "float32"), (1e300, "float64"))  # variances overflow: the scaled path
POOL_EXTREMES = ((1e36, "float32"), (1e306, "float64"))
MAX_POOL_NOTE = ("Kinks (PyTorch's subgradient): the gradient of each window goes to its first maximum "
                 "(row-major) on ties; a NaN counts as the maximum (the last NaN of a window, as PyTorch's loop).",
                 "Backward: pass ``indices`` from ``return_indices=True`` to scatter the upstream gradient "
                 "directly (no rescan of the windows); without it the windows are scanned again.")

LAYERS: tuple[Layer, ...] = (
    Layer("linear", "Affine map y = x W^T + b over the last dim", (X, WEIGHT, BIAS), (INPUT_GRAD,), linear_definition,
          "linear_plan", "linear_forward", "linear_backward",
          _grid(lambda p: {"input": p["shape"], "weight": (3, p["shape"][-1]), "bias": (3,) if p["bias"] else None},
                shape=((2,), (2, 2), (2, 1, 3)), bias=(True, False)),
          (r"y_{\dots,o} = b_o + \sum_i x_{\dots,i} w_{o,i}",
           r"\bar x = \bar y W, \quad \bar W = \sum_{\dots} \bar y^\top x, \quad \bar b = \sum_{\dots} \bar y")),
    Layer("bilinear", "Bilinear map y_k = x1^T W_k x2 + b_k",
          (LayerInput("input1"), LayerInput("input2"), WEIGHT, BIAS), (), bilinear_definition,
          "bilinear_plan", "bilinear_forward", "bilinear_backward",
          _grid(lambda p: {"input1": (*p["lead"], 2), "input2": (*p["lead"], 3), "weight": (2, 2, 3),
                           "bias": (2,) if p["bias"] else None}, lead=((2,), (1, 2)), bias=(True, False)),
          (r"y_{\dots,k} = b_k + \sum_{i,j} x^{(1)}_{\dots,i} w_{k,i,j} x^{(2)}_{\dots,j}",
           r"\bar x^{(1)}_i = \sum_{k,j} \bar y_k w_{k,i,j} x^{(2)}_j, \quad"
           r" \bar x^{(2)}_j = \sum_{k,i} \bar y_k x^{(1)}_i w_{k,i,j}",
           r"\bar w_{k,i,j} = \sum_{\dots} \bar y_k x^{(1)}_i x^{(2)}_j, \quad \bar b = \sum_{\dots} \bar y")),
    Layer("conv1d", "1-D convolution (cross-correlation) over (N, C, L) or unbatched (C, L)", (X, WEIGHT, BIAS),
          CONV_PARAMS,
          conv_definition, "conv_plan", "conv_forward", "conv_backward", CONV1D_GRID, CONV_MATH,
          plan_args={"spatial": 1}, notes=(CONV_COLUMNS_NOTE,), returns="Any"),
    Layer("conv2d", "2-D convolution (cross-correlation) over (N, C, H, W) or unbatched (C, H, W)",
          (X, WEIGHT, BIAS), CONV_PARAMS,
          conv_definition, "conv_plan", "conv_forward", "conv_backward", CONV2D_GRID, CONV_MATH,
          plan_args={"spatial": 2}, returns="Any",
          notes=("padding='same' pads d (k - 1) // 2 before and the rest after (PyTorch); it needs stride 1.",
                 CONV_COLUMNS_NOTE)),
    Layer("conv_transpose2d", "2-D transposed convolution over (N, C, H, W) or unbatched (C, H, W), the adjoint "
          "of conv2d's input map", (X, WEIGHT, BIAS),
          (LayerParam("stride", 1, SIZE), LayerParam("padding", 0, SIZE), LayerParam("output_padding", 0, SIZE),
           LayerParam("groups", 1), LayerParam("dilation", 1, SIZE)),
          conv_transpose_definition, "conv_transpose_plan", "conv_transpose_forward", "conv_transpose_backward",
          CONV_TRANSPOSE_GRID,
          (r"y_{n,o,\mathbf q} = b_o + \sum_{c \in g(o)} \sum_{\mathbf h, \mathbf k:\ \mathbf s \mathbf h"
           r" + \mathbf d \mathbf k - \mathrm{pad} = \mathbf q} x_{n,c,\mathbf h}\, w_{c,\, o - gO/G,\, \mathbf k}",
           r"\bar x = \text{conv2d}(\bar y, w) \text{ (same stride, padding, dilation, groups)}, \quad"
           r" \bar w = x_g \cdot \text{im2col}(\bar y)^\top, \quad \bar b = \sum \bar y")),
    Layer("max_pool1d", "1-D max pooling over (N, C, L) or unbatched (C, L)", (X,),
          MAX_POOL_PARAMS,
          max_pool_definition, "pool_plan", "max_pool_forward", "max_pool_backward", MAX_POOL1D_GRID,
          (r"y_{n,c,p} = \max_k x_{n,c,\, s p + d k - \mathrm{pad}}",
           r"\bar x_{n,c,q} = \sum_{p:\ \arg\max_p = q} \bar y_{n,c,p}"),
          plan_args={"spatial": 1}, proof="points", notes=MAX_POOL_NOTE, returns="Any",
          extremes=POOL_EXTREMES),
    Layer("max_pool2d", "2-D max pooling over (N, C, H, W) or unbatched (C, H, W)", (X,),
          MAX_POOL_PARAMS,
          max_pool_definition, "pool_plan", "max_pool_forward", "max_pool_backward", MAX_POOL2D_GRID,
          (r"y_{n,c,\mathbf p} = \max_{\mathbf k} x_{n,c,\, \mathbf s \mathbf p + \mathbf d \mathbf k - \mathrm{pad}}",
           r"\bar x_{n,c,\mathbf q} = \sum_{\mathbf p:\ \arg\max_{\mathbf p} = \mathbf q} \bar y_{n,c,\mathbf p}"),
          plan_args={"spatial": 2}, proof="points", notes=MAX_POOL_NOTE, returns="Any",
          extremes=POOL_EXTREMES),
    Layer("avg_pool1d", "1-D average pooling over (N, C, L) or unbatched (C, L)", (X,),
          AVG_POOL_PARAMS,
          avg_pool_definition, "pool_plan", "avg_pool_forward", "avg_pool_backward", AVG_POOL1D_GRID,
          (r"y_{n,c,p} = \frac{1}{D_p} \sum_k x_{n,c,\, s p + k - \mathrm{pad}}",
           r"\bar x_{n,c,q} = \sum_{p, k:\ s p + k - \mathrm{pad} = q} \bar y_{n,c,p} / D_p"),
          plan_args={"spatial": 1, "average": True},
          extremes=POOL_EXTREMES),
    Layer("avg_pool2d", "2-D average pooling over (N, C, H, W) or unbatched (C, H, W)", (X,),
          (*AVG_POOL_PARAMS, LayerParam("divisor_override", None, "int | None")),
          avg_pool_definition, "pool_plan", "avg_pool_forward", "avg_pool_backward", AVG_POOL2D_GRID,
          (r"y_{n,c,\mathbf p} = \frac{1}{D_{\mathbf p}} \sum_{\mathbf k} x_{n,c,\, \mathbf s \mathbf p + \mathbf k"
           r" - \mathrm{pad}}",
           r"\bar x_{n,c,\mathbf q} = \sum_{\mathbf p, \mathbf k:\ \mathbf s \mathbf p + \mathbf k - \mathrm{pad}"
           r" = \mathbf q} \bar y_{n,c,\mathbf p} / D_{\mathbf p}"),
          plan_args={"spatial": 2, "average": True},
          notes=("D is divisor_override, else the window's size within input + padding (count_include_pad) "
                 "or its number of input elements.",),
          extremes=POOL_EXTREMES),
    Layer("adaptive_avg_pool2d", "2-D adaptive average pooling of (N, C, H, W) or unbatched (C, H, W) to a fixed "
          "output size", (X,),
          (LayerParam("output_size", None, "int | tuple[int | None, int | None]", required=True),),
          adaptive_avg_pool_definition, "adaptive_avg_pool_plan", "adaptive_avg_pool_forward",
          "adaptive_avg_pool_backward", ADAPTIVE_GRID,
          (r"y = (R\, x\, C^\top) / A, \quad R_{i,h} = [\lfloor iH/H_o \rfloor \le h < \lceil (i+1)H/H_o \rceil]",
           r"\bar x = R^\top (\bar y / A)\, C"),
          extremes=POOL_EXTREMES),
    Layer("batch_norm", "Batch normalisation over (N, C, *)",
          (X, LayerInput("running_mean", "nullable", False),
           LayerInput("running_var", "nullable", False, role="positive"),
           OPT_WEIGHT, BIAS),
          (LayerParam("training", False, "bool"), LayerParam("momentum", 0.1, "float"),
           LayerParam("eps", 1e-5, "float")),
          batch_norm_definition, "batch_norm_plan", "batch_norm_forward", "batch_norm_backward", BATCH_NORM_GRID,
          NORM_MATH + (r"\text{eval: } \bar x = \gamma \bar y / \sqrt{\sigma^2_{\text{running}} + \epsilon}",),
          notes=("Training updates running_mean and running_var in place (unbiased variance, as PyTorch); "
                 "the VJP recomputes the batch statistics and never updates them.",
                 "Numerics: statistics of inputs near the float maximum are taken of x / max|x| and scaled back."),
          extremes=NORM_EXTREMES),
    Layer("layer_norm", "Layer normalisation over the trailing normalized_shape dims", (X, OPT_WEIGHT, BIAS),
          (LayerParam("normalized_shape", None, "int | tuple[int, ...]", required=True),
           LayerParam("eps", 1e-5, "float")),
          layer_norm_definition, "layer_norm_plan", "norm_forward", "norm_backward", LAYER_NORM_GRID, NORM_MATH,
          notes=("Differs from torch's positional order on purpose: array inputs come first, "
                 "``normalized_shape`` is keyword-only (``layer_norm(x, w, b, normalized_shape=...)``).",),
          extremes=NORM_EXTREMES),
    Layer("group_norm", "Group normalisation over (N, C, *) in num_groups channel groups", (X, OPT_WEIGHT, BIAS),
          (LayerParam("num_groups", None, "int", required=True), LayerParam("eps", 1e-5, "float")),
          group_norm_definition, "group_norm_plan", "norm_forward", "norm_backward", GROUP_NORM_GRID, NORM_MATH,
          notes=("``num_groups`` is keyword-only and the array inputs come first (torch: "
                 "``group_norm(input, num_groups, weight, bias, eps)``).",),
          extremes=NORM_EXTREMES),
    Layer("dropout", "Dropout with an explicit 0/1 mask", (X, LayerInput("mask", differentiable=False, role="mask")),
          (LayerParam("p", 0.5, "float"), LayerParam("training", True, "bool")),
          dropout_definition, "dropout_plan", "dropout_forward", "dropout_backward",
          _grid(lambda p: {"input": (2, 3), "mask": (2, 3)}, p=(0.0, 0.5, 0.75, 1.0), training=(True, False)),
          (r"y = x \odot m / (1 - p) \text{ (training)}, \quad y = x \text{ (eval)}",
           r"\bar x = \bar y \odot m / (1 - p) \text{ (training)}, \quad \bar x = \bar y \text{ (eval)}"),
          notes=("The caller draws the mask (e.g. ``rng.random(x.shape) >= p``), so runs are reproducible "
                 "and the VJP uses the same mask.",),
          extremes=POOL_EXTREMES),
    Layer("flatten", "Merge dims start_dim..end_dim into one", (X,),
          (LayerParam("start_dim", 1), LayerParam("end_dim", -1)),
          flatten_definition, "flatten_plan", "flatten_forward", "flatten_backward",
          _grid(lambda p: {"input": (2, 1, 3, 2)}, start_dim=(0, 1, -2), end_dim=(-1, 2)),
          (r"y = \text{reshape}(x)", r"\bar x = \text{reshape}(\bar y) \text{ to x's shape}"),
          extremes=POOL_EXTREMES),
)

#: The layers by name.
LAYER_BY_NAME: dict[str, Layer] = {layer.name: layer for layer in LAYERS}
