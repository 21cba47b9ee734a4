"""Print SymPy expressions as C++ over ATen's SIMD vectors, ``at::vec::Vectorized<T>``: one fused loop.

The exported PyTorch module's CPU fast path (:mod:`symdl.export.fused`) evaluates a whole forward or
backward per vector of 8 floats (AVX2) in registers, where the PyTorch operations of the same formula take one
pass over memory each. The functions are ATen's own vector functions, which ``torch.exp`` and friends
call on the CPU too (SLEEF's 1-ulp ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``; ATen's ``erf``), so the
fused loop is as accurate as the operations it replaces; no ``-ffast-math``, and no contraction into fused
multiply-adds (``-ffp-contract=off``: the formula's roundings, as printed).

The normal CDF (GELU) is the NumPy kernel's (:func:`symdl.kernels._runtime.normal_cdf`: the same fitted
polynomials, near 0 and in the tails, over the Gaussian e^{-x^2/2} with its argument squared exactly), not
``erfc`` of a rounded ``-x / sqrt 2``: more accurate in the left tail than ``torch.erfc`` there (within 7.1 ulp
of mpmath in float32, 4.0 in float64, where the rounded argument costs up to x^2 / 2 ulp), and faster: GELU's
whole fused forward took 2.2-2.7 ms per 1e6 float32 values where ``torch.erfc`` alone takes 2.2-3.1 (measured
2026-12-07, one thread; float64 10.6 ms, ``torch.erfc`` 8-10).

Functions are printed over the exponentials they are made of (:func:`over_exponentials`), so that ``cse``
computes each exponential once per loop: sigmoid and softplus over e^{-|z|}, the normal CDF and GELU's
density over one Gaussian. A loop that computes a value and its derivative together (the saving forward of
:mod:`symdl.export.fused`) then costs one exp, as the value alone does.

Not translated, so that a loop reading them is left to PyTorch's operations: ``erfc`` itself, whose only
vector form, SLEEF's, took 6.4-7.2 ms per 2^20 float32 values and 18.7 ms per 2^20 float64 values where
``torch.erfc`` (MKL's) takes 2.3-3.1 and 10.5 (measured 2026-12-06, one thread); ``asinh``, whose ATen vector
form overflows from :math:`|x| = 10^{19}` in float32 (``torch.asinh`` does not).

Types follow the values: an expression that reads an array is a ``V`` (``Vectorized<T>``); one of scalar
parameters only is computed as a C++ ``double`` (as the PyTorch module computes it as a Python float) and
rounded to ``T`` where it meets an array, as PyTorch rounds a Python scalar to the tensor's dtype. A
condition on arrays is a mask ``V`` (every bit set where it holds: ``a < b``); ``Piecewise`` selects with
``V::blendv`` (every branch is evaluated, and the catalog keeps every branch finite everywhere), a condition on
parameters only with ``?:``.

The stable primitives are the same formulas the PyTorch module's helpers compute (``_softplus``,
``_quotient_at_zero``: :mod:`symdl.printing.torch_printer`; the normal CDF the NumPy kernel's), written once as
C++ templates in
:data:`VEC_PRELUDE`. A function without a translation raises ``NotImplementedError``: that op keeps its PyTorch
operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

import sympy as sp

from symdl.functions import Grouped, log1p, normal_cdf, sigmoid, softplus, x_normal_cdf
from symdl.kernels import _runtime
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
    "quotient_at_zero": "symdl_quotient_at_zero", "clamped_log": "symdl_clamped_log",
    "clamped_log1p": "symdl_clamped_log1p", "xlogy": "symdl_xlogy", "hypot": "symdl_hypot",
    "gaussian": "symdl_gaussian", "normal_cdf_from": "symdl_normal_cdf_from",
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

#: The prelude's source, the normal CDF's constants as @NAME@ (:func:`_with_normal_cdf_forms`).
_PRELUDE = r"""#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>

namespace {

template <typename T> using V = at::vec::Vectorized<T>;

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

// Horner's rule: c[0] t^(N-1) + ... + c[N-1] (coefficients highest degree first, as symdl.kernels._runtime's).
template <typename D, typename C, size_t N> D symdl_horner(const D& t, const C (&c)[N]) {
  D r(c[0]);
  for (size_t k = 1; k < N; ++k) r = at::vec::fmadd(r, t, D(c[k]));
  return r;
}

// The mask keeping the high half of a T's significand (the NumPy kernel's _SPLIT_MASKS): hi * hi is exact.
template <typename T> struct SymdlSplit;
template <> struct SymdlSplit<float> { static constexpr uint32_t bits = 0xFFFFF000u; };
template <> struct SymdlSplit<double> { static constexpr uint64_t bits = 0xFFFFFFFFF8000000u; };

// The Gaussian e^{-z^2/2}, |z| clamped at 40 (beyond, 0 in float and double; no inf - inf below), accurate:
// u^2 = p + e exactly with p = u * u (Dekker's product over u = hi + lo, no fused multiply-add needed), and
// e^{-u^2/2} = e^{-p/2} (1 - e/2), |e/2| <= 2^-(digits+1) p / 2, whose square is far below a rounding (rounding
// u^2 would cost up to u^2 / 2 ulp).
template <typename T> V<T> symdl_gaussian(const V<T>& z) {
  T mask;
  const auto mask_bits = SymdlSplit<T>::bits;
  std::memcpy(&mask, &mask_bits, sizeof mask);
  const V<T> u = at::vec::minimum(z.abs(), V<T>(T(40)));
  const V<T> p = u * u;
  const V<T> hi = u & V<T>(mask);
  const V<T> lo = u - hi;
  const V<T> e = ((hi * hi - p) + V<T>(T(2)) * hi * lo) + lo * lo;
  return (p * V<T>(T(-0.5))).exp() * (V<T>(T(1)) - e * V<T>(T(0.5)));
}

// The standard normal CDF Phi(x) given g = e^{-x^2/2} (symdl_gaussian: a loop that also needs the density
// computes its one exp once), in the NumPy kernel's forms (symdl.kernels._runtime.normal_cdf; coefficients
// fitted by scripts/fit_erf.py), accurate in both tails. Near 0 (|x| < sqrt(2)/2): 1/2 + x N(x^2); beyond,
// Q(u) = 1 - Phi(u) of u = |x|, Phi = Q for x < 0 and 1 - Q (>= 1/2, no cancellation) for x > 0.
// float32: Q(u) = g v W(v - 1), v = 8 / (4 + u) (u clamped at 20, where Q is 0 in float), the NumPy kernel's
// whole-line form in float (its float64 parts would cost an exp of doubles per element, 4x a float exp here).
template <typename T> V<T> symdl_normal_cdf_from(const V<T>& x, const V<T>& g);

template <> V<float> symdl_normal_cdf_from<float>(const V<float>& x, const V<float>& g) {
  static const float n_coefficients[] = @NORMAL_SMALL_32@;
  static const float w_coefficients[] = @NORMAL_WHOLE_32@;
  const V<float> near = at::vec::clamp(x, V<float>(-@NORMAL_SWITCH@f), V<float>(@NORMAL_SWITCH@f));
  const V<float> central = V<float>(0.5f) + near * symdl_horner(near * near, n_coefficients);
  const V<float> a = x.abs();
  const V<float> u = at::vec::minimum(a, V<float>(20.0f));
  const V<float> v = V<float>(@WHOLE_2C@f) / (u + V<float>(@WHOLE_C@f));
  const V<float> q = g * (v * symdl_horner(v - V<float>(1.0f), w_coefficients));
  const V<float> outer = V<float>::blendv(V<float>(1.0f) - q, q, x < V<float>(0.0f));
  return V<float>::blendv(outer, central, a < V<float>(@NORMAL_SWITCH@f));
}

// float64: Q(u) = 1/2 g M(v - 1) / (u + 1), v = (K + 4) / (4 + u), for u up to 37.6 (Q = 0 beyond: below the
// smallest normal double), the NumPy kernel's tail form.
template <> V<double> symdl_normal_cdf_from<double>(const V<double>& x, const V<double>& g) {
  static const double n_coefficients[] = @NORMAL_SMALL_64@;
  static const double m_coefficients[] = @NORMAL_TAIL_64@;
  const double switch_at = @NORMAL_SWITCH@, limit = @NORMAL_LIMIT@;
  const V<double> near = at::vec::clamp(x, V<double>(-switch_at), V<double>(switch_at));
  const V<double> central = V<double>(0.5) + near * symdl_horner(near * near, n_coefficients);
  const V<double> a = x.abs();
  const V<double> u = at::vec::clamp(a, V<double>(switch_at), V<double>(limit));
  const V<double> v = V<double>(@NORMAL_NUMERATOR@) / (u + V<double>(@NORMAL_C@));
  V<double> q = V<double>(0.5) * g * symdl_horner(v - V<double>(1.0), m_coefficients) / (u + V<double>(@NORMAL_SHIFT@));
  q = V<double>::blendv(q, V<double>(0.0), a >= V<double>(limit));
  const V<double> outer = V<double>::blendv(V<double>(1.0) - q, q, x < V<double>(0.0));
  return V<double>::blendv(outer, central, a < V<double>(switch_at));
}

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


def _cpp_array(values: tuple[float, ...]) -> str:
    """A C++ initializer of doubles (each Python's shortest repr, which reads back to the same double)."""
    return "{" + ", ".join(_double(v) for v in values) + "}"


def _with_normal_cdf_forms(prelude: str) -> str:
    """``prelude`` with the NumPy kernel's normal-CDF constants in place (one source: ``symdl.kernels._runtime``)."""
    tails, (c, numerator), shift, _, smalls, switch = _runtime._FORMS["normal"]
    values = {"NORMAL_WHOLE_32": _cpp_array(_runtime._NORMAL_WHOLE_32), "WHOLE_C": _double(_runtime._WHOLE_C),
              "WHOLE_2C": _double(2 * _runtime._WHOLE_C), "NORMAL_SMALL_32": _cpp_array(smalls[4]),
              "NORMAL_SMALL_64": _cpp_array(smalls[8]),
              "NORMAL_TAIL_64": _cpp_array(tails[8]), "NORMAL_SWITCH": _double(switch),
              "NORMAL_LIMIT": _double(_runtime._TAIL_LIMITS["normal"]), "NORMAL_NUMERATOR": _double(numerator),
              "NORMAL_C": _double(c), "NORMAL_SHIFT": _double(shift)}
    for name, value in values.items():
        prelude = prelude.replace(f"@{name}@", value)
    return prelude


#: The C++ every fused source starts with: the vector forms of the stable primitives (each the formula of the
#: PyTorch module's helper of the same name, the normal CDF the NumPy kernel's) and their scalar forms for
#: functions of parameters.
VEC_PRELUDE = _with_normal_cdf_forms(_PRELUDE)


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


class gaussian(sp.Function):
    """:math:`e^{-z^2/2}`, computed accurately (``symdl_gaussian``: the exact square, |z| clamped at 40)."""


class normal_cdf_from(sp.Function):
    r""":math:`\Phi(x)` given its first argument x and the second, :math:`e^{-x^2/2}` (``symdl_normal_cdf_from``)."""


#: The clamp at or beyond which symdl_gaussian is 0 in float and double (it clamps there itself).
_GAUSSIAN_CLAMP = 40


def _gaussian_of(z: sp.Expr) -> sp.Expr:
    """``gaussian(z)``, with a clamp of z to [-a, a] for a >= 40 dropped (symdl_gaussian clamps at 40 itself, so
    the value is the same), so that the density of ``exp(-clamp(x)**2/2)`` and the CDF's share one exp."""
    for outer, inner in ((sp.Max, sp.Min), (sp.Min, sp.Max)):
        if isinstance(z, outer) and len(z.args) == 2:
            bound, rest = sorted(z.args, key=lambda a: not a.is_number)
            if (isinstance(rest, inner) and len(rest.args) == 2 and bound.is_number
                    and abs(float(bound)) >= _GAUSSIAN_CLAMP):
                other, argument = sorted(rest.args, key=lambda a: not a.is_number)
                if other.is_number and other == -bound:
                    return gaussian(argument)
    return gaussian(z)


def _exp_form(argument: sp.Expr) -> sp.Expr:
    """e^a, as :class:`gaussian` where a is literally -z^2/2 (a product of -1/2 and a square)."""
    factors = sp.Mul.make_args(argument)
    if len(factors) == 2 and sp.Rational(-1, 2) in factors:
        (square,) = (f for f in factors if f != sp.Rational(-1, 2))
        if square.is_Pow and square.exp == 2:
            return _gaussian_of(square.base)
    return sp.exp(argument)


def _sigmoid_form(z: sp.Expr) -> sp.Expr:
    """sigma(z) over e = e^{-|z|} (never overflows): 1 / (1 + e) for z >= 0, e / (1 + e) below (NaN stays NaN)."""
    e = sp.exp(-sp.Abs(z))
    return sp.Piecewise((1 / (1 + e), z >= 0), (e / (1 + e), True))


def _softplus_form(z: sp.Expr) -> sp.Expr:
    """log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}): no threshold, no overflow (the module's _softplus)."""
    return sp.Max(z, 0) + log1p(sp.exp(-sp.Abs(z)))


#: Functions printed in forms over the exponentials they share (:func:`over_exponentials`).
_EXPONENTIAL_FORMS: dict[type, Callable[..., sp.Expr]] = {
    sigmoid: _sigmoid_form, softplus: _softplus_form, sp.exp: _exp_form,
    normal_cdf: lambda x: normal_cdf_from(x, _gaussian_of(x)), x_normal_cdf: lambda x: x * normal_cdf(x),
}


def over_exponentials(expr: sp.Expr) -> sp.Expr:
    """``expr`` with functions written over the exponentials they are made of, so that ``cse`` computes each
    exponential once in a loop: sigmoid and softplus over e^{-|z|} (sigmoid's derivative y sigma(-x) with its
    output, softplus with its derivative sigma, silu's sigma(x) and sigma(-x); |-x| is |x| to SymPy), and the
    normal CDF over the Gaussian e^{-x^2/2} that GELU's derivative's density is too."""
    previous = None
    while expr != previous:  # a rewrite's result may hold another (x_normal_cdf -> normal_cdf -> gaussian)
        previous = expr
        expr = expr.replace(lambda e: type(e) in _EXPONENTIAL_FORMS,
                            lambda e: _EXPONENTIAL_FORMS[type(e)](*e.args))
    return expr


#: Functions whose vector evaluation costs an exponential or a logarithm (SLEEF's, or a prelude form built on one).
EXPONENTIAL_COST = frozenset({"exp", "expm1", "log", "log1p", "tanh", "erf", "sinh", "cosh", "sin", "cos", "tan",
                              "atan", "gaussian", "clamped_log", "clamped_log1p", "xlogy"})


def exponentials(exprs: Iterable[sp.Expr]) -> set[sp.Expr]:
    """The distinct calls of :data:`EXPONENTIAL_COST` functions that one loop computing ``exprs`` evaluates
    (each once: :func:`print_statements` computes shared subexpressions once), in the printed forms."""
    return {node for e in exprs for node in sp.preorder_traversal(over_exponentials(as_printed(e)))
            if type(node).__name__ in EXPONENTIAL_COST}


def print_statements(outputs: Mapping[str, sp.Expr], printer: VecPrinter, prefix: str = "c") -> list[str]:
    """Straight-line C++ computing each of ``outputs`` (name -> expression; the name becomes a ``const V<T>``),
    shared subexpressions once (``sympy.cse``), in the form the other printers print (:func:`as_printed`)."""
    names = list(outputs)
    exprs = [over_exponentials(as_printed(outputs[name])) for name in names]
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(f"{prefix}_", real=True), order="none")
    lines = []
    for symbol, value in replacements:
        condition = isinstance(value, sp.logic.boolalg.Boolean)  # a relation too (its is_Boolean is False)
        if printer.is_array(value) and condition:
            lines.append(f"const V<T> {symbol.name} = {printer.mask(value)};")
            printer.arrays[symbol] = printer.masks[symbol] = symbol.name
        elif printer.is_array(value):
            lines.append(f"const V<T> {symbol.name} = {printer.vector(value)};")
            printer.arrays[symbol] = symbol.name
        elif condition:
            lines.append(f"const bool {symbol.name} = {printer.scalar(value)};")
            printer.scalars[symbol] = symbol.name
        else:
            lines.append(f"const double {symbol.name} = {printer.scalar(value)};")
            printer.scalars[symbol] = symbol.name
    lines += [f"const V<T> {name} = {printer.vector(value)};" for name, value in zip(names, reduced)]
    return lines
