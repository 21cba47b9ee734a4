"""Prove each layer's kernel programs equal to SymPy's derivative of its index-level definition.

For one instance (small shapes and fixed hyper-parameters, from the layer's
grid in :mod:`symdl.catalog.layers`):

1. every array input becomes an object array of fresh symbols (a dropout mask
   gets 0/1 values) and the upstream gradient ``g`` another one, shaped like
   the output;
2. the definition gives the output ``y``; SymPy differentiates
   :math:`\\sum g \\odot y` with respect to every symbol of every differentiable
   input: that is the vector-Jacobian product, element by element;
3. the kernel's own plan, forward and backward programs
   (:mod:`symdl.kernels._layers`, the code the generated kernels run)
   are run on the same symbol arrays;
4. each kernel output is compared with the definition, each kernel gradient
   with SymPy's: the difference must expand to exactly 0. Square roots of a
   variance are first rewritten over one canonical (expanded) radicand, so
   normalisation layers compare as polynomials in :math:`1/\\sqrt{\\sigma^2+\\epsilon}`.

Max-pooling is piecewise: its definition uses ``Max`` and SymPy's derivative
is a product of Heavisides. It is compared at integer-valued inputs without
ties (a random permutation per point), where that derivative is 0 or 1 and the
kernel must route each window's gradient to the single maximum exactly.
PyTorch's tie rule (the first maximum) is not SymPy's (Heaviside(0) = 1/2) and
is checked in the tests against PyTorch and a loop reference.

General sizes are beyond SymPy (the sums' lengths are shape-dependent), so the
claim is per instance; ``symdl verify`` reports how many.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from symdl.catalog.layer_spec import Instance, Layer
from symdl.catalog.layers import LAYER_BY_NAME
from symdl.kernels import _layers, _layers_runtime as _lr
from symdl.proofs import cache

POINTS_PER_INSTANCE = 1


@dataclass(frozen=True)
class LayerProof:
    """The outcome of proving one layer on its grid."""

    layer: str
    instances: int
    points: int                  # evaluation points (``points`` proofs), else 0
    grid: tuple[str, ...]        # the hyper-parameters the grid varies
    failures: tuple[str, ...]

    @property
    def holds(self) -> bool:
        """True when every instance agreed."""
        return not self.failures

    def method(self) -> str:
        """The proof method for the verify table."""
        axes = " x ".join(self.grid) or "shapes"
        if self.points:
            return (f"exact at {self.points} integer points on {self.instances} instances ({axes}); "
                    "ties: first maximum (tested)")
        return f"symbolic on {self.instances} instances ({axes})"


# --------------------------------------------------------------------------- instances
def layer_params(layer: Layer, instance: Instance, where: str = "forward") -> dict[str, Any]:
    """The instance's hyper-parameters that the layer's ``where`` kernel takes."""
    names = {p.name for p in layer.params_for(where)}
    return {k: v for k, v in instance.params.items() if k in names}


def symbol_arrays(layer: Layer, instance: Instance, rng: np.random.Generator) -> dict[str, np.ndarray | None]:
    """Object arrays of fresh symbols per input (0/1 values for masks; None when omitted)."""
    arrays: dict[str, np.ndarray | None] = {}
    for item in layer.inputs:
        shape = instance.shapes.get(item.name)
        if shape is None:
            arrays[item.name] = None
        elif item.role == "mask":
            arrays[item.name] = rng.integers(0, 2, size=shape).astype(object)
        else:
            size = int(np.prod(shape))
            arrays[item.name] = np.array(sp.symbols(f"{item.name}_0:{size}", real=True),
                                         dtype=object).reshape(shape)
    return arrays


def _upstream(shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    return np.array(sp.symbols(f"g_0:{size}", real=True), dtype=object).reshape(shape)


def sympy_vjp(layer: Layer, arrays: Mapping[str, Any], output: np.ndarray, g: np.ndarray,
              at: Mapping[sp.Symbol, sp.Expr] | None = None) -> dict[str, np.ndarray]:
    r"""SymPy's vector-Jacobian product :math:`\partial (\sum_p g_p y_p) / \partial s` for every symbol
    s of every differentiable input present, taken term by term: :math:`\sum_p g_p\, \partial y_p /
    \partial s` over the outputs whose expression contains s (the others contribute 0).

    With ``at`` (values for every input symbol), the derivative at that point: each
    :math:`y_p` restricted to the line through the point along s (the other symbols
    replaced by their values), differentiated, then evaluated at the point. A partial
    derivative only sees that line, and ``Max`` of one symbol and constants differentiates
    far faster than ``Max`` of many symbols.
    """
    wanted = {s: item.name for item in layer.inputs if item.differentiable and arrays[item.name] is not None
              for s in arrays[item.name].flat}
    terms: dict[sp.Symbol, list[sp.Expr]] = {s: [] for s in wanted}
    for gp, yp in zip(g.flat, output.flat):
        for symbol in sp.sympify(yp).free_symbols & wanted.keys():
            if at is None:
                terms[symbol].append(gp * sp.diff(yp, symbol))
            else:
                line = yp.xreplace({k: v for k, v in at.items() if k != symbol})
                terms[symbol].append(gp * sp.diff(line, symbol).xreplace({symbol: at[symbol]}))
    return {item.name: np.array([sp.Add(*terms[s]) for s in arrays[item.name].flat], dtype=object)
            .reshape(arrays[item.name].shape)
            for item in layer.inputs if item.differentiable and arrays[item.name] is not None}


# --------------------------------------------------------------------------- comparison
def _canonical(expr: Any, radicands: dict[sp.Expr, sp.Symbol]) -> Any:
    """``expr`` with every half-integer power of a polynomial written over one symbol per
    expanded radicand: :math:`B^{k/2} \\to t_B^k`."""
    if not isinstance(expr, sp.Basic):
        return expr

    def rewrite(power: sp.Pow) -> sp.Expr:
        base = sp.expand(power.base)
        symbol = radicands.setdefault(base, sp.Dummy(f"r{len(radicands)}", positive=True))
        return symbol ** (2 * power.exp)

    return expr.replace(lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2, rewrite)


def _differ(kernel: Any, truth: Any, radicands: dict[sp.Expr, sp.Symbol]) -> bool:
    difference = _canonical(sp.sympify(kernel), radicands) - _canonical(sp.sympify(truth), radicands)
    return sp.expand(difference) != 0


def _compare(what: str, kernel: Any, truth: Any, label: str) -> list[str]:
    """Failure messages unless the arrays agree element by element."""
    if kernel is None or truth is None:
        return [] if kernel is None and truth is None else [f"{label}: {what}: one side is None"]
    kernel, truth = np.asarray(kernel, dtype=object), np.asarray(truth, dtype=object)
    if kernel.shape != truth.shape:
        return [f"{label}: {what}: shape {kernel.shape} != {truth.shape}"]
    radicands: dict[sp.Expr, sp.Symbol] = {}
    bad = [i for i, (a, b) in enumerate(zip(kernel.flat, truth.flat)) if _differ(a, b, radicands)]
    return [f"{label}: {what} differs at flat index {bad[0]} ({len(bad)} of {kernel.size})"] if bad else []


def _kernel(layer: Layer, arrays: Mapping[str, Any], instance: Instance, g: np.ndarray,
            values: Mapping[str, Any] | None = None) -> tuple[Any, tuple[Any, ...]]:
    """The kernel programs' forward and VJP on ``values`` (default: the symbol arrays)."""
    chosen = arrays if values is None else values
    run = tuple(None if a is None else a.copy() for a in (chosen[n] for n in layer.input_names))
    plan_fn = getattr(_lr, layer.plan)
    forward_plan = plan_fn(layer.name, run, **layer.plan_args, **layer_params(layer, instance, "forward"))
    out = getattr(_lr, layer.forward)(run, forward_plan)
    run = tuple(None if a is None else a.copy() for a in (chosen[n] for n in layer.input_names))
    backward_plan = plan_fn(layer.name, run, **layer.plan_args, **layer_params(layer, instance, "backward"))
    return out, getattr(_lr, layer.backward)(g, run, backward_plan)


def prove_instance(layer: Layer, instance: Instance, seed: int = 0) -> list[str]:
    """Failure messages for one instance (empty when the kernel programs are proven)."""
    rng = np.random.default_rng(seed)
    arrays = symbol_arrays(layer, instance, rng)
    params = layer_params(layer, instance)
    output = layer.definition(arrays, params)
    g = _upstream(output.shape)
    label = f"{layer.name}[{instance.label()}]"
    if layer.proof == "points":
        return _prove_at_points(layer, instance, arrays, output, g, rng, label)
    grads = sympy_vjp(layer, arrays, output, g)
    out, kernel_grads = _kernel(layer, arrays, instance, g)
    failures = _compare("forward", out, output, label)
    for item, kernel_grad in zip(layer.inputs, kernel_grads):
        failures += _compare(f"d_{item.name}", kernel_grad, grads.get(item.name), label)
    return failures


def _prove_at_points(layer: Layer, instance: Instance, arrays: Mapping[str, Any], output: np.ndarray,
                     g: np.ndarray, rng: np.random.Generator, label: str) -> list[str]:
    """Piecewise layers: the kernel on float inputs holding distinct integers against the
    definition and SymPy's derivative there (exact)."""
    failures: list[str] = []
    for point in range(POINTS_PER_INSTANCE):
        values, numbers = {}, {}
        for name, array in arrays.items():
            if array is None:
                values[name] = None
                continue
            ints = rng.permutation(array.size).reshape(array.shape) - array.size // 2
            values[name] = ints.astype(np.float64)
            numbers.update({s: sp.Integer(int(v)) for s, v in zip(array.flat, ints.flat)})
        grads = sympy_vjp(layer, arrays, output, g, at=numbers)
        out, kernel_grads = _kernel(layer, arrays, instance, g, values)
        at = f"{label} point {point}"
        failures += _compare("forward", out, np.vectorize(lambda e: e.xreplace(numbers), otypes=[object])(output), at)
        for item, kernel_grad in zip(layer.inputs, kernel_grads):
            failures += _compare(f"d_{item.name}", kernel_grad, grads.get(item.name), at)
    return failures


def prove_layer(name: str) -> LayerProof:
    """Prove one layer on every instance of its grid."""
    layer = LAYER_BY_NAME[name]
    failures: list[str] = []
    for index, instance in enumerate(layer.instances):
        try:
            failures += prove_instance(layer, instance, seed=index)
        except Exception as error:  # a crash on an instance is a failed proof, reported, not raised
            failures.append(f"{name}[{instance.label()}]: {type(error).__name__}: {error}")
    points = POINTS_PER_INSTANCE * len(layer.instances) if layer.proof == "points" else 0
    return LayerProof(layer=name, instances=len(layer.instances), points=points, grid=layer.grid_axes,
                      failures=tuple(failures[:5]))


# --------------------------------------------------------------------------- cache
def source_files() -> list[Path]:
    """Every file a layer proof depends on: the catalog, this prover and the runtime it runs."""
    import symdl.catalog.layer_spec
    import symdl.catalog.layers

    modules = (symdl.catalog.layers, symdl.catalog.layer_spec, _lr, sys.modules[__name__])
    runtime = sorted(Path(_layers.__file__).parent.glob("*.py"))  # the closed forms the proofs run
    return [Path(m.__file__) for m in modules] + runtime


def prove_layers(names: Sequence[str], *, use_cache: bool = True, workers: int | None = None) -> dict[str, LayerProof]:
    """Proofs for the named layers, from the proof cache or proven in parallel processes (long grids first)."""
    key = cache.source_key(source_files())
    return cache.cached_map(prove_layer, names, lambda name: f"layer-{name}-{key}", use_cache=use_cache,
                            workers=workers, cost=lambda name: len(LAYER_BY_NAME[name].instances))
