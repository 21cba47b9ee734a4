"""Print SymPy expressions as array code for a deep-learning framework (PyTorch, JAX).

The same expressions the NumPy kernels print (the catalog's stable forms and
proven closed-form gradients), printed for another array library. The rules
are the NumPy printer's (:class:`symdl.printing.numpy_printer.KernelPrinter`,
which this class extends): constants as Python floats (weak scalars, so a
float32 tensor stays float32), ``Piecewise`` with a zero branch as a
multiplication by a boolean mask, negative powers as powers of the
reciprocal. Only the names differ, and they are tables
(:class:`FrameworkNames`), one per framework; a subclass only chooses its
table.

Stable primitives the framework lacks (``softplus`` as
:math:`\\max(x, 0) + \\log(1 + e^{-|x|})` without PyTorch's threshold,
``clamped_log``) are helpers defined once in the generated module's header
(:data:`FrameworkNames.helpers`), so that a generated module imports the
framework only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from symdl.functions import NUM_CLASSES
from symdl.printing.inplace import ArraySpec
from symdl.printing.numpy_printer import KernelPrinter


@dataclass(frozen=True)
class FrameworkNames:
    """What one framework calls each operation the kernels use.

    Attributes:
        module: the array namespace (``torch``, ``jnp``).
        functions: SymPy function class name -> callable on arrays.
        clamp: format of a clamp with scalar bounds, ``{x}``, ``{low}``, ``{high}`` (``None``: no bound).
        maximum, minimum: elementwise max/min of two arrays.
        where: ``where(condition, a, b)``.
        logical_not: boolean negation of an array.
        reduce_sum, reduce_max: format of a row reduction along ``{axis}`` keeping it, of ``{x}``.
        helpers: source of the helper functions ``functions`` refers to, by name.
    """

    module: str
    functions: Mapping[str, str]
    clamp: str
    maximum: str
    minimum: str
    where: str
    logical_not: str
    reduce_sum: str
    reduce_max: str
    helpers: Mapping[str, str] = field(default_factory=dict)


class FrameworkPrinter(KernelPrinter):
    """A :class:`KernelPrinter` whose array calls come from a :class:`FrameworkNames` table.

    Args:
        names_table: the framework's names.
        scalars, names, axis: as for :class:`KernelPrinter`.
        arrays: the op's arrays (:func:`symdl.printing.inplace.kernel_arrays`): which row sums span a row.
    """

    printmethod = "_symdl_framework"

    def __init__(self, names_table: FrameworkNames, scalars: Iterable[sp.Symbol] = (),
                 names: Mapping[sp.Symbol, str] | None = None, axis: str = "dim",
                 arrays: Mapping[sp.Symbol, ArraySpec] | None = None) -> None:
        super().__init__(scalars=scalars, names=names, axis=axis, arrays=arrays)
        self.table = names_table
        #: helper functions the printed code called (their source goes in the module header)
        self.used_helpers: set[str] = set()

    def _call(self, function: str, args: Iterable[str]) -> str:
        if function.startswith("_") and function in self.table.helpers:
            self.used_helpers.add(function)
        return f"{function}({', '.join(args)})"

    # -- powers: only the square root and the square name a module ---------------------------------
    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if self._is_scalar(base):
            return super()._print_Pow(expr, rational)
        if exponent == sp.S.Half:
            return self._call(f"{self.table.module}.sqrt", [self._print(base)])
        if exponent == -sp.S.Half:
            return f"1 / {self._call(f'{self.table.module}.sqrt', [self._print(base)])}"
        if exponent == 2:
            return self._call(f"{self.table.module}.square", [self._print(base)])
        return super()._print_Pow(expr, rational)

    # -- functions ----------------------------------------------------------------------------------
    def _print_Function(self, expr: sp.Function) -> str:
        name = type(expr).__name__
        if name == "class_sum":  # a row sum of per-class weights and scalars (see print_assignments)
            return self._call("_class_sum", [self._print(expr.args[0]), self._print(NUM_CLASSES)])
        if name in ("rowsum", "rowmax"):
            template = self.table.reduce_sum if name == "rowsum" else self.table.reduce_max
            return template.format(x=self._print(expr.args[0]), axis=self.axis)
        if self._is_scalar(expr) and name in _SCALAR:
            return self._call(_SCALAR[name], (self._print(a) for a in expr.args))
        if name not in self.table.functions:
            raise NotImplementedError(f"no {self.table.module} translation for {name}")
        return self._call(self.table.functions[name], (self._print(a) for a in expr.args))

    _print_exp = _print_log = _print_tanh = _print_cosh = _print_Abs = _print_sign = _print_Function
    _print_erf = _print_erfc = _print_log1p = _print_expm1 = _print_Function
    _print_clamped_log = _print_clamped_log1p = _print_Function
    _print_sin = _print_cos = _print_tan = _print_sinh = _print_asinh = _print_atan = _print_Function

    # -- clamps and extrema -------------------------------------------------------------------------
    def _bounds(self, expr: sp.Expr) -> tuple[sp.Expr, str | None, str | None] | None:
        """``(value, low, high)`` when ``expr`` clamps one array between scalar bounds, else None."""
        outer_is_max = isinstance(expr, sp.Max)
        bounds = [a for a in expr.args if self._is_scalar(a)]
        inner = [a for a in expr.args if not self._is_scalar(a)]
        if len(bounds) != 1 or len(inner) != 1:
            return None
        bound, value = self._print(bounds[0]), inner[0]
        low, high = (bound, None) if outer_is_max else (None, bound)
        nested = sp.Min if outer_is_max else sp.Max
        if isinstance(value, nested):
            inner_bounds = [a for a in value.args if self._is_scalar(a)]
            inner_values = [a for a in value.args if not self._is_scalar(a)]
            if len(inner_bounds) == 1 and len(inner_values) == 1:
                other = self._print(inner_bounds[0])
                low, high = (low, other) if outer_is_max else (other, high)
                value = inner_values[0]
        return value, low, high

    def _extremum(self, expr: sp.Expr, array_fn: str, scalar_fn: str) -> str:
        clamp = self._bounds(expr)
        if clamp is not None and not self._is_scalar(expr):
            value, low, high = clamp
            return self.table.clamp.format(x=self._print(value), low=low, high=high)
        return self._print_MinMax(expr, array_fn, scalar_fn)

    def _print_Max(self, expr: sp.Max) -> str:
        return self._extremum(expr, self.table.maximum, "max")

    def _print_Min(self, expr: sp.Min) -> str:
        return self._extremum(expr, self.table.minimum, "min")

    # -- logic --------------------------------------------------------------------------------------
    def _print_Not(self, expr: sp.Not) -> str:
        if self._is_scalar(expr):  # a flag parameter: a Python bool
            return f"(not {self._print(expr.args[0])})"
        return self._call(self.table.logical_not, [self._print(expr.args[0])])

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (value, condition), rest = expr.args[0], expr.args[1:]
        otherwise = sp.Piecewise(*rest) if len(rest) > 1 or rest[0].cond is not sp.true else rest[0].expr
        if value == 0:
            return f"{self.parenthesize(otherwise, PRECEDENCE['Mul'])} * {self._print(sp.Not(condition))}"
        if otherwise == 0:
            return f"{self.parenthesize(value, PRECEDENCE['Mul'])} * {self._print(condition)}"
        return self._call(self.table.where, [self._print(condition), self._print(value), self._print(otherwise)])


#: Functions of scalar parameters only: Python's math module, whatever the framework.
_SCALAR: dict[str, str] = {
    "exp": "math.exp", "log": "math.log", "tanh": "math.tanh", "cosh": "math.cosh", "log1p": "math.log1p",
    "expm1": "math.expm1", "Abs": "abs", "erf": "math.erf", "erfc": "math.erfc", "sin": "math.sin",
    "cos": "math.cos", "tan": "math.tan", "sinh": "math.sinh", "asinh": "math.asinh", "atan": "math.atan",
}
