"""Print SymPy expressions as C++ over ATen's SIMD vectors, ``at::vec::Vectorized<T>``: one fused loop.

The exported PyTorch module's CPU fast path (:mod:`symdl.export.fused`) evaluates a whole forward or
backward per vector of 8 floats (AVX2) in registers, where the PyTorch operations of the same formula take one
pass over memory each. The functions are ATen's own vector functions, which ``torch.exp`` and friends
call on the CPU too (SLEEF's 1-ulp ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``; ATen's ``erf``), so the
fused loop is as accurate as the operations it replaces; no ``-ffast-math``, and no contraction into fused
multiply-adds (``-ffp-contract=off``: the formula's roundings, as printed).

Not translated, so that a loop reading them is left to PyTorch's operations: ``erfc`` (and the normal CDF
printed with it), whose only vector form, SLEEF's, took 6.4-7.2 ms per 2^20 float32 values and 18.7 ms per
2^20 float64 values where ``torch.erfc`` (MKL's) takes 2.3-3.1 and 10.5 (measured 2026-12-06, one thread): a
GELU forward fused with it ran slower than its operations; ``asinh``, whose ATen vector form overflows from
:math:`|x| = 10^{19}` in float32 (``torch.asinh`` does not).

Types follow the values: an expression that reads an array is a ``V`` (``Vectorized<T>``); one of scalar
parameters only is computed as a C++ ``double`` (as the PyTorch module computes it as a Python float) and
rounded to ``T`` where it meets an array, as PyTorch rounds a Python scalar to the tensor's dtype. A
condition on arrays is a mask ``V`` (every bit set where it holds: ``a < b``); ``Piecewise`` selects with
``V::blendv`` (every branch is evaluated, and the catalog keeps every branch finite everywhere), a condition on
parameters only with ``?:``.

The stable primitives are the same formulas the PyTorch module's helpers compute (``_softplus``,
``_quotient_at_zero``: :mod:`symdl.printing.torch_printer`), written once as C++ templates in
:data:`VEC_PRELUDE`. A function without a translation raises ``NotImplementedError``: that op keeps its PyTorch
operations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import sympy as sp

from symdl.functions import Grouped
from symdl.printing.numpy_printer import as_printed

#: Marks of one unit of evaluation (:func:`symdl.functions.grouped`): printed as their argument in parentheses.
_UNITS = (sp.UnevaluatedExpr, Grouped)

#: SymPy function class name -> the ``Vectorized`` method computing it (ATen's, as torch's CPU functions use).
VEC_METHODS: dict[str, str] = {
    "exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "tanh": "tanh", "erf": "erf", "sinh": "sinh", "cosh": "cosh", "sin": "sin", "cos": "cos", "tan": "tan", "atan": "atan",
    "Abs": "abs",
}

#: SymPy function class name -> the template of :data:`VEC_PRELUDE` computing it on vectors.
VEC_HELPERS: dict[str, str] = {
    "sigmoid": "symdl_sigmoid", "softplus": "symdl_softplus",
    "quotient_at_zero": "symdl_quotient_at_zero", "clamped_log": "symdl_clamped_log",
    "clamped_log1p": "symdl_clamped_log1p", "xlogy": "symdl_xlogy", "hypot": "symdl_hypot",
}

#: SymPy function class name -> the C++ function of doubles for a function of parameters only (``std::``'s,
#: and the prelude's scalar forms).
SCALAR_FUNCTIONS: dict[str, str] = {
    "exp": "std::exp", "expm1": "std::expm1", "log": "std::log", "log1p": "std::log1p", "tanh": "std::tanh",
    "erf": "std::erf", "erfc": "std::erfc", "sinh": "std::sinh", "cosh": "std::cosh", "sin": "std::sin",
    "cos": "std::cos", "tan": "std::tan", "atan": "std::atan", "asinh": "std::asinh", "Abs": "std::fabs",
    "sqrt": "std::sqrt", "sigmoid": "symdl_sigmoid_scalar", "softplus": "symdl_softplus_scalar",
    "normal_cdf": "symdl_normal_cdf_scalar", "hypot": "std::hypot",
}

#: The C++ every fused source starts with: the vector forms of the stable primitives (each the formula of the
#: PyTorch module's helper of the same name) and their scalar forms for functions of parameters.
VEC_PRELUDE = r"""#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace {

template <typename T> using V = at::vec::Vectorized<T>;

// sigma(x) = 1 / (1 + e^-x): e^-x = inf gives 0, as torch.sigmoid.
template <typename T> V<T> symdl_sigmoid(const V<T>& x) { return V<T>(T(1)) / (V<T>(T(1)) + x.neg().exp()); }

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no threshold, no overflow (the module's _softplus).
template <typename T> V<T> symdl_softplus(const V<T>& x) {
  return at::vec::maximum(x, V<T>(T(0))) + x.abs().neg().exp().log1p();
}

// n / x, and c + s x where |x| < eps / 8 (x replaced by 1 there first: no 0 / 0) (the module's _quotient_at_zero).
template <typename T> V<T> symdl_quotient_at_zero(const V<T>& n, const V<T>& x, const V<T>& c, const V<T>& s) {
  const V<T> near = x.abs() < V<T>(std::numeric_limits<T>::epsilon() / T(8));
  return V<T>::blendv(n / V<T>::blendv(x, V<T>(T(1)), near), c + s * x, near);
}

// max(log u, floor), NaN kept (torch.clamp(torch.log(u), min=floor)).
template <typename T> V<T> symdl_clamped_log(const V<T>& u, const V<T>& floor) {
  return at::vec::maximum(u.log(), floor);
}

template <typename T> V<T> symdl_clamped_log1p(const V<T>& u, const V<T>& floor) {
  return at::vec::maximum(u.log1p(), floor);
}

// x log y, 0 where x = 0 and y is not NaN (torch.xlogy).
template <typename T> V<T> symdl_xlogy(const V<T>& x, const V<T>& y) {
  return V<T>::blendv(x * y.log(), V<T>(T(0)), (x == V<T>(T(0))) & (y == y));
}

template <typename T> V<T> symdl_hypot(const V<T>& a, const V<T>& b) { return a.hypot(b); }

double symdl_sigmoid_scalar(double x) {
  const double e = std::exp(-std::fabs(x));
  return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

double symdl_softplus_scalar(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

double symdl_normal_cdf_scalar(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

}  // namespace
"""

_RELATIONS: dict[type, str] = {sp.StrictLessThan: "<", sp.LessThan: "<=", sp.StrictGreaterThan: ">",
                               sp.GreaterThan: ">=", sp.Equality: "==", sp.Unequality: "!="}


def _double(value: sp.Expr) -> str:
    """A number as a C++ double literal (Python's shortest repr reads back to the same double)."""
    number = float(value)
    if number in (float("inf"), float("-inf")):
        return f"{'-' if number < 0 else ''}std::numeric_limits<double>::infinity()"
    return repr(number)


def _logic(condition: sp.Basic, clause: Callable[[sp.Basic], str], operand: Callable[[sp.Basic], str],
           connectives: tuple[str, str, str]) -> str | None:
    """A conjunction, disjunction, negation or relation in C++ with the ``connectives`` for and, or, not (``&``,
    ``|``, ``~`` on masks; ``&&``, ``||``, ``!`` on bools), its clauses and operands printed by ``clause`` and
    ``operand``; None for anything else."""
    conjunction, disjunction, negation = connectives
    if isinstance(condition, sp.And | sp.Or):
        operator = conjunction if isinstance(condition, sp.And) else disjunction
        return "(" + f" {operator} ".join(clause(c) for c in condition.args) + ")"
    if isinstance(condition, sp.Not):
        return f"({negation}{clause(condition.args[0])})"
    if type(condition) in _RELATIONS:
        lhs, rhs = condition.args
        return f"({operand(lhs)} {_RELATIONS[type(condition)]} {operand(rhs)})"
    return None


class VecPrinter:
    """Prints expressions over ``V<T>`` (arrays) and ``double`` (parameters), names by symbol.

    Args:
        arrays: array symbols -> the C++ names of their loaded vectors.
        scalars: scalar symbols (parameters) -> the C++ names of their ``double`` values.
    """

    def __init__(self, arrays: Mapping[sp.Symbol, str], scalars: Mapping[sp.Symbol, str]) -> None:
        self.arrays = dict(arrays)
        self.scalars = dict(scalars)
        #: common subexpressions that are conditions on arrays -> the names of their masks
        self.masks: dict[sp.Symbol, str] = {}

    def is_array(self, expr: sp.Basic) -> bool:
        """Whether ``expr`` reads an array (and so is a vector)."""
        return bool(expr.free_symbols & self.arrays.keys())

    # -- vectors -------------------------------------------------------------------------------------
    def vector(self, expr: sp.Basic) -> str:
        """``expr`` as a ``V<T>`` expression."""
        if not self.is_array(expr):
            return f"V<T>(T({self.scalar(expr)}))"
        if isinstance(expr, sp.Symbol):
            return self.arrays[expr]
        if isinstance(expr, _UNITS):  # one unit, evaluated before the operation it is an operand of
            return f"({self.vector(expr.args[0])})"
        printer = self._VECTOR.get(type(expr), VecPrinter._vector_function)
        return printer(self, expr)

    def _add(self, expr: sp.Add) -> str:
        positive = [t for t in expr.args if not t.could_extract_minus_sign()]
        negative = [-t for t in expr.args if t.could_extract_minus_sign()]
        text = " + ".join(self.vector(t) for t in positive) if positive else "V<T>(T(0))"
        for term in negative:
            text += f" - {self._factor(term)}"
        return f"({text})"

    def _factor(self, expr: sp.Expr) -> str:
        """A term as an operand of ``-``: parenthesized unless it is a single vector or call."""
        text = self.vector(expr)
        return text if not isinstance(expr, sp.Add) else f"({text})"

    def _mul(self, expr: sp.Mul) -> str:
        # A divisor as a division, as SymPy prints a / b; but b^-n (integer n >= 2) as the factor (1 / b)^n, as the
        # other printers: b^n overflows (softsign's (1 + |x|)^2 at |x| = 1e30 in float32) where (1 / b)^n underflows.
        numerator, denominator = [], []
        for factor in expr.args:
            if (factor.is_Pow and factor.exp.is_negative and factor.exp.is_Rational and self.is_array(factor.base)
                    and not (factor.exp.is_Integer and factor.exp < -1)):
                denominator.append(factor.base ** -factor.exp)
            else:
                numerator.append(factor)
        scalar = [f for f in numerator if not self.is_array(f)]
        vectors = [self.vector(f) for f in numerator if self.is_array(f)]
        if scalar:  # the parameters' product first, in double, as the Python module computes it
            vectors.insert(0, self.vector(sp.Mul(*scalar)))
        text = " * ".join(vectors) if vectors else "V<T>(T(1))"
        if denominator:
            below = " * ".join(self.vector(d) for d in denominator)
            text = f"({text}) / ({below})"
        return f"({text})"

    def _pow(self, expr: sp.Pow) -> str:
        base, exponent = expr.args
        if not self.is_array(base):  # a parameter (or e) to an array's power
            if base == sp.E:
                return f"({self.vector(exponent)}).exp()"
            return f"{self.vector(base)}.pow({self.vector(exponent)})"
        if self.is_array(exponent):
            return f"({self.vector(base)}).pow({self.vector(exponent)})"
        b = self.vector(base)
        if exponent == sp.S.Half:
            return f"({b}).sqrt()"
        if exponent == -sp.S.Half:
            return f"(V<T>(T(1)) / ({b}).sqrt())"
        if exponent.is_Integer and 1 <= abs(int(exponent)) <= 4:
            # a negative power as a power of the reciprocal, as the other printers: it underflows quietly where
            # the power of the base would overflow
            unit = f"({b})" if exponent > 0 else f"(V<T>(T(1)) / ({b}))"
            return "(" + " * ".join([unit] * abs(int(exponent))) + ")"
        return f"({b}).pow({self.vector(exponent)})"

    def _vector_function(self, expr: sp.Basic) -> str:
        name = type(expr).__name__
        if name in VEC_METHODS:
            return f"({self.vector(expr.args[0])}).{VEC_METHODS[name]}()"
        if name in VEC_HELPERS:
            return f"{VEC_HELPERS[name]}<T>({', '.join(self.vector(a) for a in expr.args)})"
        if name == "indicator":
            return self._indicator(expr.args[0])
        raise NotImplementedError(f"no C++ vector translation for {name}")

    def _extremum(self, expr: sp.Max | sp.Min) -> str:
        function = "at::vec::maximum" if isinstance(expr, sp.Max) else "at::vec::minimum"
        args = [self.vector(a) for a in expr.args]
        text = args[0]
        for arg in args[1:]:  # both propagate NaN, as torch.maximum and torch.clamp
            text = f"{function}({text}, {arg})"
        return text

    def _piecewise(self, expr: sp.Piecewise) -> str:
        (value, condition), rest = expr.args[0], expr.args[1:]
        otherwise = sp.Piecewise(*rest) if len(rest) > 1 or rest[0].cond is not sp.true else rest[0].expr
        if self.is_array(condition) and (value == 0 or otherwise == 0):
            # A zero branch as a product with the 0/1 indicator, as the other printers (x * [c]: NaN and inf
            # stay NaN where the branch is 0, as in PyTorch's hardshrink), the condition negated by SymPy as there
            # (not (r <= 0) is r > 0, false at NaN).
            kept, where = (otherwise, sp.Not(condition)) if value == 0 else (value, condition)
            return f"({self.vector(kept)} * {self._indicator(where)})"
        pieces = list(expr.args)
        value, condition = pieces[-1]
        if condition is not sp.true:
            raise NotImplementedError("a Piecewise without an otherwise branch")
        text = self.vector(value)
        for value, condition in reversed(pieces[:-1]):
            if self.is_array(condition):
                text = f"V<T>::blendv({text}, {self.vector(value)}, {self.mask(condition)})"
            else:
                text = f"(({self.scalar(condition)}) ? {self.vector(value)} : {text})"
        return text

    def _indicator(self, condition: sp.Basic) -> str:
        """[c]: 1 where the condition on arrays holds, else 0."""
        return f"V<T>::blendv(V<T>(T(0)), V<T>(T(1)), {self.mask(condition)})"

    _VECTOR: ClassVar[dict[type, Callable[[VecPrinter, sp.Basic], str]]] = {
        sp.Add: _add, sp.Mul: _mul, sp.Pow: _pow, sp.Max: _extremum, sp.Min: _extremum, sp.Piecewise: _piecewise,
    }

    # -- masks ---------------------------------------------------------------------------------------
    def mask(self, condition: sp.Basic) -> str:
        """A condition on arrays as a mask vector (every bit set where it holds)."""
        if condition in self.masks:
            return self.masks[condition]
        if not self.is_array(condition):
            raise NotImplementedError(f"a condition on parameters only inside a mask: {condition}")
        text = _logic(condition, self.mask, self.vector, ("&", "|", "~"))
        if text is None:
            raise NotImplementedError(f"no C++ vector translation for the condition {condition}")
        return text

    # -- doubles -------------------------------------------------------------------------------------
    def scalar(self, expr: sp.Basic) -> str:
        """A function of parameters only as a C++ ``double`` (or ``bool``) expression."""
        if expr is sp.true or expr is sp.false:
            return "true" if expr is sp.true else "false"
        if isinstance(expr, sp.Symbol):
            if expr not in self.scalars:
                raise NotImplementedError(f"no value for {expr}")
            return self.scalars[expr]
        if expr.is_Number or expr.is_NumberSymbol:
            return _double(expr)
        if isinstance(expr, _UNITS):
            return f"({self.scalar(expr.args[0])})"
        if isinstance(expr, sp.Add):
            return "(" + " + ".join(self.scalar(a) for a in expr.args) + ")"
        if isinstance(expr, sp.Mul):
            return "(" + " * ".join(self.scalar(a) for a in expr.args) + ")"
        if isinstance(expr, sp.Pow):
            base, exponent = expr.args
            if exponent == -1:
                return f"(1.0 / {self.scalar(base)})"
            if exponent == sp.S.Half:
                return f"std::sqrt({self.scalar(base)})"
            return f"std::pow({self.scalar(base)}, {self.scalar(exponent)})"
        if isinstance(expr, sp.Max | sp.Min):
            function = "std::fmax" if isinstance(expr, sp.Max) else "std::fmin"
            text = self.scalar(expr.args[0])
            for arg in expr.args[1:]:
                text = f"{function}({text}, {self.scalar(arg)})"
            return text
        logic = _logic(expr, self.scalar, self.scalar, ("&&", "||", "!"))
        if logic is not None:
            return logic
        if isinstance(expr, sp.Piecewise):
            text = self.scalar(expr.args[-1].expr)
            for value, condition in reversed(expr.args[:-1]):
                text = f"({self.scalar(condition)} ? {self.scalar(value)} : {text})"
            return text
        name = type(expr).__name__
        if name in SCALAR_FUNCTIONS:
            return f"{SCALAR_FUNCTIONS[name]}({', '.join(self.scalar(a) for a in expr.args)})"
        raise NotImplementedError(f"no C++ translation for {name} of parameters")


def print_statements(outputs: Mapping[str, sp.Expr], printer: VecPrinter, prefix: str = "c") -> list[str]:
    """Straight-line C++ computing each of ``outputs`` (name -> expression; the name becomes a ``const V<T>``),
    shared subexpressions once (``sympy.cse``), in the form the other printers print (:func:`as_printed`)."""
    names = list(outputs)
    exprs = [as_printed(outputs[name]) for name in names]
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(f"{prefix}_", real=True), order="none")
    lines = []
    for symbol, value in replacements:
        if printer.is_array(value) and value.is_Boolean:
            lines.append(f"const V<T> {symbol.name} = {printer.mask(value)};")
            printer.arrays[symbol] = printer.masks[symbol] = symbol.name
        elif printer.is_array(value):
            lines.append(f"const V<T> {symbol.name} = {printer.vector(value)};")
            printer.arrays[symbol] = symbol.name
        elif value.is_Boolean:
            lines.append(f"const bool {symbol.name} = {printer.scalar(value)};")
            printer.scalars[symbol] = symbol.name
        else:
            lines.append(f"const double {symbol.name} = {printer.scalar(value)};")
            printer.scalars[symbol] = symbol.name
    lines += [f"const V<T> {name} = {printer.vector(value)};" for name, value in zip(names, reduced)]
    return lines
