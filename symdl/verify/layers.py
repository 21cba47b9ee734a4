"""The layers' section of ``symdl verify`` (registered in ``symdl.verify.SECTIONS``): one row per layer.

* **proof**: :func:`symdl.proofs.layers.prove_layers`: the kernel programs equal the
  index-level definition and SymPy's derivative of it on every instance of the
  layer's grid (cached by a hash of the sources).
* **fd**: the float64 VJP kernel against central differences of the forward
  kernel, along random directions, on instances of the grid with random values.
* **fwd ulp / grad ulp**: the float64 kernels against the definition (the
  loop reference) and SymPy's derivative evaluated *exactly* at the same
  float64 point (rational arithmetic, square roots to 30 digits), normwise:
  in units in the last place of the largest exact value of the array.
* **finite**: forward and VJP with the first input at the layer's extreme
  magnitudes, float32 and float64: no floating-point warning, finite results,
  the input's dtype kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy as sp

import symdl.kernels as kernels
from symdl.catalog.layer_spec import Instance, Layer
from symdl.catalog.layers import LAYER_BY_NAME, LAYERS
from symdl.proofs.layers import layer_params, prove_layers, symbol_arrays, sympy_vjp
from symdl.sampling import draw_layer_arrays
from symdl.verify.reference import ulp_error
from symdl.verify.row import VerifyRow, directional_error, finite_and_typed

#: Normwise ulp bounds (float64 sums of a few dozen terms, the three-term norm formula).
FORWARD_ULP_BOUND = 8.0
GRAD_ULP_BOUND = 16.0
#: Grid instances used for the finite-difference check.
FD_INSTANCES = 4


def names() -> list[str]:
    """The layers' row names."""
    return [layer.name for layer in LAYERS]


def call(layer: Layer, instance: Instance, arrays: Sequence[np.ndarray | None], grad: np.ndarray | None = None) -> Any:
    """The generated kernel (VJP when ``grad`` is given) on copies of ``arrays``."""
    copies = [None if a is None else a.copy() for a in arrays]
    if grad is None:
        return getattr(kernels, layer.name)(*copies, **layer_params(layer, instance, "forward"))
    return getattr(kernels, f"{layer.name}_vjp")(grad, *copies, **layer_params(layer, instance, "backward"))


def _spread(items: Sequence[Instance], count: int) -> list[Instance]:
    step = max(1, len(items) // count)
    return list(items[::step][:count])


def finite_difference_error(layer: Layer, seed: int = 0) -> float:
    """Max relative error of the VJP against central differences (float64)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for instance in _spread(layer.instances, FD_INSTANCES):
        arrays = draw_layer_arrays(layer, instance, rng)
        out = call(layer, instance, arrays)
        v = rng.standard_normal(np.shape(out))
        grads = call(layer, instance, arrays, v)
        for index, item in enumerate(layer.inputs):
            if not item.differentiable or arrays[index] is None:
                continue
            error = directional_error(lambda *a: call(layer, instance, a), arrays, index, v, grads[index], rng, 1e-6)
            worst = float(np.maximum(worst, error))
    return worst


def _exact(values: np.ndarray) -> np.ndarray:
    return np.array([float(sp.N(v, 30)) for v in values.flat]).reshape(values.shape)


def _normwise(computed: np.ndarray, exact: np.ndarray) -> float:
    scale = np.full(exact.shape, np.max(np.abs(exact)) if exact.size else 0.0)
    return ulp_error(computed, exact, scale)


def ulp_errors(layer: Layer, seed: int = 1) -> tuple[float, float]:
    """Normwise ulp errors of the float64 forward and VJP against the exact definition and
    SymPy's derivative at the same point (the first instance of the grid)."""
    rng = np.random.default_rng(seed)
    instance = layer.instances[0]
    arrays = draw_layer_arrays(layer, instance, rng)
    symbols = symbol_arrays(layer, instance, rng)
    point: dict[sp.Symbol, sp.Expr] = {}
    for item, array, values in zip(layer.inputs, symbols.values(), arrays):
        if array is not None and item.role != "mask":
            point.update((s, sp.Rational(float(v))) for s, v in zip(array.flat, values.flat))
        elif array is not None:
            symbols[item.name] = values.astype(int).astype(object)
    output = layer.definition(symbols, layer_params(layer, instance))
    g_values = rng.standard_normal(output.shape)
    g = np.array([sp.Rational(float(v)) for v in g_values.flat], dtype=object).reshape(output.shape)
    exact_out = _exact(np.vectorize(lambda e: sp.sympify(e).xreplace(point), otypes=[object])(output))
    forward = _normwise(np.asarray(call(layer, instance, arrays)), exact_out)
    grads = sympy_vjp(layer, symbols, output, g, at=point)
    computed = call(layer, instance, arrays, g_values)
    worst = 0.0
    for item, value in zip(layer.inputs, computed):
        if item.name in grads:
            worst = float(np.maximum(worst, _normwise(value, _exact(grads[item.name]))))  # NaN propagates
    return forward, worst


def finite_at_extremes(layer: Layer, seed: int = 2) -> tuple[bool, str]:
    """Forward and VJP at the layer's extreme magnitudes stay finite, warning-free, in dtype."""
    instance = layer.instances[0]
    for magnitude, dtype_name in layer.extremes:
        dtype = np.dtype(dtype_name)
        arrays = draw_layer_arrays(layer, instance, np.random.default_rng(seed), dtype, magnitude)

        def run() -> list[np.ndarray]:  # called at once, in this iteration
            out = call(layer, instance, arrays)
            out = out[0] if isinstance(out, tuple) else out
            return [out, *(g for g in call(layer, instance, arrays, np.ones_like(out)) if g is not None)]

        holds, detail = finite_and_typed(run, dtype, f"{dtype_name} at {magnitude:g}")
        if not holds:
            return False, detail
    return True, ""


def verify(chosen: Sequence[str], *, use_cache: bool = True,
           on_done: Callable[[], None] = lambda: None) -> list[VerifyRow]:
    """One row per chosen layer."""
    proofs = prove_layers(chosen, use_cache=use_cache)
    rows = []
    for name in chosen:
        layer, proof = LAYER_BY_NAME[name], proofs[name]
        forward_ulp, grad_ulp = ulp_errors(layer)
        finite, detail = finite_at_extremes(layer)
        rows.append(VerifyRow(
            op=name, variant="", proof=proof.method(), proofs_hold=proof.holds,
            fd_error=finite_difference_error(layer), forward_ulp=forward_ulp, grad_ulp=grad_ulp,
            forward_ulp_bound=FORWARD_ULP_BOUND, grad_ulp_bound=GRAD_ULP_BOUND, finite=finite,
            detail="; ".join([*(f"proof failed: {f}" for f in proof.failures), *([detail] if detail else [])]),
        ))
        on_done()
    return rows

