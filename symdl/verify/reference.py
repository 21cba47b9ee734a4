"""High-precision reference values: the catalog's *textbook definition*
evaluated with mpmath at :data:`DIGITS` significant digits.

The reference never sees a stable form or a closed form: it evaluates the
definition and SymPy's own derivative of it, so a kernel that matches it to a
few ulp computes the textbook math, stably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from symdl.catalog.spec import Op
from symdl.proofs.ops import _row_vjp
from symdl.functions import expand_row, row_components, to_textbook

DIGITS = 60
#: Precisions tried in turn until two agree: the textbook formula may cancel
#: (1 - tanh(100)**2 needs 90 digits), so a fixed precision is not enough.
PRECISIONS = (60, 150, 400, 800, 5000)
#: Values below this are zero in every float format.
UNDERFLOW = mpmath.mpf("1e-340")


def adaptive(f: Callable[..., object]) -> Callable[..., object]:
    """Evaluate ``f`` at rising precision until two precisions agree to 30 digits.

    When even the highest precision sees nothing but cancellation noise below
    :data:`UNDERFLOW`, the true value underflows every float format: 0.
    """

    memo: dict[tuple, object] = {}

    def evaluate(*args: object) -> object:
        # The same extreme points recur across test examples and at 5000 digits each costs
        # milliseconds: remember results (mpf arguments are hashable and exact).
        try:
            return memo[args]
        except KeyError:
            pass
        except TypeError:  # unhashable arguments: just evaluate
            return rising(*args)
        if len(memo) > 100_000:
            memo.clear()
        memo[args] = value = rising(*args)
        return value

    def rising(*args: object) -> object:
        previous = None
        for digits in PRECISIONS:
            with mpmath.workdps(digits):
                try:
                    value = f(*args)
                except (ZeroDivisionError, ValueError):  # a cancellation hit exactly 0: more digits
                    if digits == PRECISIONS[-1]:
                        raise
                    continue
                if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
                    items = value.tolist() if hasattr(value, "tolist") else value
                    value = [mpmath.mpf(v[0] if isinstance(v, list) else v) for v in items]
                    flat = value
                else:
                    flat = [value]
            if previous is not None and all(a != 0 for a in flat) and all(
                abs(a - b) <= mpmath.mpf(10) ** -30 * abs(a) for a, b in zip(flat, previous)
            ):
                return value
            previous = flat
        return [v if abs(v) > UNDERFLOW else mpmath.mpf(0) for v in flat] if isinstance(value, list) else (
            value if abs(value) > UNDERFLOW else mpmath.mpf(0))

    return evaluate


def _exact(value: object) -> sp.Expr:
    """A parameter value as an exact SymPy number (None, an omitted optional array, is 1)."""
    if value is None:
        return sp.S.One
    if isinstance(value, bool):
        return sp.Integer(value)
    return sp.Float(float(value), 30)


def _substituted(op: Op, expr: sp.Expr, params: dict[str, object]) -> sp.Expr:
    values = {p.symbol: _exact(params.get(p.name, p.default)) for p in op.symbol_params}
    return to_textbook(expr).xreplace(values)


def _lambdify(symbols: Sequence[object], expr: sp.Expr) -> Callable[..., object]:
    try:
        return _lambdified(tuple(symbols), expr)
    except TypeError:  # row symbols come as lists (unhashable): lambdify afresh
        return adaptive(sp.lambdify(list(symbols), expr, modules="mpmath"))


@lru_cache(maxsize=512)
def _lambdified(symbols: tuple[sp.Symbol, ...], expr: sp.Expr) -> Callable[..., object]:
    return adaptive(sp.lambdify(list(symbols), expr, modules="mpmath"))


def to_mp(array: np.ndarray) -> np.ndarray:
    """An object array of mpf holding the exact values of ``array``."""
    return np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(np.asarray(array))


class Reference:
    """Reference forward and VJP for one op, variant and parameter set."""

    def __init__(self, op: Op, variant: object, params: dict[str, object]) -> None:
        self.op = op
        self.formula = op.formulas[variant if variant not in (None, "") else next(iter(op.formulas))]
        self.params = params
        self.symbols = [i.symbol for i in op.inputs]

    # -- elementwise ----------------------------------------------------------------
    @property
    def _elementwise_forward(self) -> Callable[..., object]:
        return _lambdify(self.symbols, _substituted(self.op, self.formula.definition, self.params))

    def _elementwise_grads(self) -> list[Callable[..., object]]:
        return [
            _lambdify(self.symbols, _substituted(self.op, sp.diff(self.formula.definition, i.symbol), self.params))
            for i in self.op.differentiable_inputs
        ]

    def forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Reference output (object array of mpf), per element or per row."""
        if self.op.traits.class_targets:
            return self._class_rows(inputs, None)[0]
        with mpmath.workdps(DIGITS):
            if not self.op.traits.over_rows:
                f = self._elementwise_forward
                return np.vectorize(lambda *a: f(*a), otypes=[object])(*(to_mp(a) for a in inputs))
            return self._rows(inputs, self._row_forward)

    def gradients(self, inputs: Sequence[np.ndarray], grad: np.ndarray | None = None) -> list[np.ndarray]:
        """Reference VJP for each differentiable input (upstream ``grad``, default ones)."""
        if self.op.traits.class_targets:
            return self._class_rows(inputs, grad)[1]
        with mpmath.workdps(DIGITS):
            if not self.op.traits.over_rows:
                upstream = to_mp(np.ones_like(inputs[0]) if grad is None else grad)
                values = [to_mp(a) for a in inputs]
                return [np.vectorize(lambda *a, f=f: f(*a), otypes=[object])(*values) * upstream
                        for f in self._elementwise_grads()]
            return [self._rows(inputs, lambda n, row, i=i: self._row_vjp(n, row, i), grad)
                    for i in range(len(self.op.differentiable_inputs))]

    # -- class losses ---------------------------------------------------------------
    def class_arrays(self, inputs: Sequence[np.ndarray]) -> dict[sp.Symbol, np.ndarray]:
        """Each input as (N, C) rows: class indices one-hot, per-row labels broadcast."""
        x = np.asarray(inputs[0], dtype=np.float64)
        arrays = {}
        for item, value in zip(self.op.inputs, inputs):
            value = np.asarray(value)
            if item.role == "class_index" and value.dtype.kind in "iu":
                arrays[item.symbol] = np.eye(x.shape[1])[value]
            elif item.role == "sign":
                arrays[item.symbol] = np.broadcast_to(value[:, None], x.shape)
            else:
                arrays[item.symbol] = value.astype(np.float64)
        return arrays

    def _class_rows(self, inputs: Sequence[np.ndarray], grad: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-row reference loss and VJPs of a class loss on (N, C) inputs (weights 1)."""
        arrays = self.class_arrays(inputs)
        rows, n = np.shape(inputs[0])
        weight = next((p.symbol for p in self.op.params if p.rule.kind == "array"), None)
        row_symbols = [s for s in self.op.row_symbols if s != weight]
        scalar_symbols = [i.symbol for i in self.op.inputs if i.role == "sign"]
        loss, grads = _class_functions(self.op, self.formula, n, tuple(sorted(self.params.items())))
        out = np.empty(rows, dtype=object)
        results = [np.empty((rows, n), dtype=object) for _ in grads]
        upstream = np.ones(rows) if grad is None else np.asarray(grad, dtype=np.float64)
        for r in range(rows):
            args = [mpmath.mpf(float(v)) for s in row_symbols for v in arrays[s][r]]
            args += [mpmath.mpf(float(arrays[s][r, 0])) for s in scalar_symbols]
            out[r] = loss(*args)
            for k, f in enumerate(grads):
                results[k][r] = f(*args, mpmath.mpf(float(upstream[r])))
        return out, results

    # -- rows ---------------------------------------------------------------------
    def _row_axis(self, ndim: int) -> int:
        dim = self.params.get("dim")
        return (0 if ndim in (0, 1, 3) else 1) if dim is None else int(dim)

    def _rows(self, inputs: Sequence[np.ndarray], per_row: Callable[..., list[object]],
              grad: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(inputs[0])
        axis = self._row_axis(x.ndim)
        moved = np.moveaxis(to_mp(x), axis, -1)
        upstream = None if grad is None else np.moveaxis(to_mp(grad), axis, -1)
        out = np.empty(moved.shape, dtype=object)
        n = moved.shape[-1]
        for index in np.ndindex(moved.shape[:-1]):
            row = list(moved[index])
            if upstream is not None:
                row += list(upstream[index])
            out[index] = per_row(n, row)
        return np.moveaxis(out, -1, axis)

    def _row_forward(self, n: int, row: list[object]) -> list[object]:
        return _row_function(self.op, self.formula.definition, n, tuple(sorted(self.params.items())))(*row)

    def _row_vjp(self, n: int, row: list[object], which: int) -> list[object]:
        if len(row) == n:
            row = row + [mpmath.mpf(1)] * n
        return _row_vjp_function(self.op, self.formula.definition, n, which)(*row)


@lru_cache(maxsize=256)
def _class_functions(op: Op, formula: object, n: int, params: tuple) -> tuple[Callable, list[Callable]]:
    """Lambdified per-row loss and VJPs of a class loss for rows of length ``n``."""
    weight = next((p.symbol for p in op.params if p.rule.kind == "array"), None)
    definition = _substituted(op, formula.definition, dict(params))
    if weight is not None:
        definition = definition.xreplace({weight: 1})
    row_symbols = [s for s in op.row_symbols if s != weight]
    symbols = [c for s in row_symbols for c in row_components(s, n)]
    symbols += [i.symbol for i in op.inputs if i.role == "sign"]
    loss = _lambdify(symbols, expand_row(definition, op.row_symbols, n)[0])
    grads = [_lambdify(symbols + [op.upstream], sp.Matrix(_row_vjp(definition, op, item.symbol, n)))
             for item in op.differentiable_inputs if item.role != "class_index"]
    return loss, grads


@lru_cache(maxsize=256)
def _row_function(op: Op, definition: sp.Expr, n: int, params: tuple) -> Callable[..., list[object]]:
    comps = expand_row(_substituted(op, definition, dict(params)), op.row_symbols, n)
    symbols = expand_row(op.inputs[0].symbol, op.row_symbols, n)
    return _lambdify(symbols, sp.Matrix(comps))


@lru_cache(maxsize=256)
def _row_vjp_function(op: Op, definition: sp.Expr, n: int, which: int) -> Callable[..., list[object]]:
    item = op.differentiable_inputs[which]
    comps = _row_vjp(to_textbook(definition), op, item.symbol, n)
    symbols = expand_row(op.inputs[0].symbol, op.row_symbols, n) + expand_row(op.upstream, op.row_symbols, n)
    return _lambdify(symbols, sp.Matrix(comps))


def ulp_error(computed: np.ndarray, exact: np.ndarray, scale: np.ndarray | None = None) -> float:
    """Largest error of ``computed`` in units in the last place of its dtype.

    The unit is the spacing at ``max(|exact|, |scale|, tiny)`` (see
    :class:`~symdl.catalog.spec.Tolerance`), where ``exact`` is first rounded
    to the dtype: a true value that underflows is correctly returned as 0, and
    subnormal results, which carry reduced precision by construction, are
    judged in units of the smallest normal number.
    """
    computed = np.asarray(computed)
    dtype = computed.dtype
    with np.errstate(over="ignore", under="ignore"):
        exact_rounded = np.array([float(v) for v in np.ravel(exact)], dtype=np.float64).astype(dtype)
        magnitude = np.abs(exact_rounded)
        if scale is not None:
            magnitude = np.maximum(magnitude, np.abs(np.ravel(np.asarray(scale, dtype=np.float64))).astype(dtype))
        unit = np.maximum(np.spacing(magnitude), np.finfo(dtype).tiny).astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where the true value overflows too: not counted below
        errors = np.abs(np.ravel(computed).astype(np.float64) - exact_rounded.astype(np.float64))
    finite = np.isfinite(unit) & np.isfinite(exact_rounded)
    if not np.any(finite):
        return 0.0
    return float(np.max(errors[finite] / unit[finite]))
