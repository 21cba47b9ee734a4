"""Print SymPy expressions as NumPy source for the generated kernels.

Rules (each measured, see DESIGN.md):

* functions dispatch through the name tables below: ``np.*`` for arrays,
  ``math.*`` when every argument is a scalar parameter;
* numeric constants become Python float literals, which NumPy 2 treats as
  weak scalars, so float32 arrays stay float32;
* ``Piecewise`` with a zero branch becomes a multiplication by a boolean mask
  (about 7x faster than ``np.where`` on random masks); other ``Piecewise``
  become ``np.where``, never ``np.select``. The catalog keeps every branch
  finite everywhere, so masking never meets ``0 * inf``;
* ``rowsum``/``rowmax`` reduce along ``dim`` with ``keepdims=True``;
* negative integer powers print as powers of the reciprocal, which underflow
  quietly instead of overflowing;
* square roots of sums of squares are ``hypot`` (:mod:`symdl.printing.sums_of_squares`): no
  square is formed that overflows where the root does not;
* one-sided clamps are ``np.clip`` with an infinite bound (with ``None``,
  NumPy falls back to the twice slower ``np.maximum``).

:func:`print_assignments` prints each CSE'd assignment as one expression and
then compiles those with :mod:`symdl.printing.inplace` into one NumPy
operation per line, written into dead temporaries: the same results, bit for
bit, without an allocation per operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from symdl.functions import NUM_CLASSES, fold_piecewise
from symdl.printing.inplace import ArraySpec, emit_inplace
from symdl.printing.sums_of_squares import as_hypot

#: Array functions: SymPy class name -> NumPy (or runtime) callable.
ARRAY_FUNCTIONS: dict[str, str] = {
    "exp": "np.exp",
    "log": "np.log",
    "tanh": "np.tanh",
    "cosh": "np.cosh",
    "sinh": "np.sinh",
    "sin": "np.sin",  # periodic activations (SIREN, snake): NumPy's, PyTorch's and JAX's within an ulp
    "cos": "np.cos",
    "atan": "np.arctan",  # bounded activations (arctan) and asinh's log-like growth
    "asinh": "np.arcsinh",
    "log1p": "np.log1p",
    "expm1": "np.expm1",
    "Abs": "np.abs",
    "sign": "np.sign",
    "erf": "_rt.erf",
    "erfc": "_rt.erfc",
    "sigmoid": "_rt.sigmoid",
    "softplus": "_rt.softplus",
    "xlogy": "_rt.xlogy",
    "normal_cdf": "_rt.normal_cdf",
    "quotient_at_zero": "_rt.quotient_at_zero",
    "hypot": "_rt.hypot",
    "exp_of_square": "_rt.exp_of_square",
    "clamped_log": "_rt.clamped_log",
    "clamped_log1p": "_rt.clamped_log1p",
}

#: Scalar functions (all arguments are parameters): Python floats in, out.
SCALAR_FUNCTIONS: dict[str, str] = {
    "exp": "math.exp",
    "log": "math.log",
    "tanh": "math.tanh",
    "cosh": "math.cosh",
    "sinh": "math.sinh",
    "sin": "math.sin",
    "cos": "math.cos",
    "atan": "math.atan",
    "asinh": "math.asinh",
    "log1p": "math.log1p",
    "expm1": "math.expm1",
    "Abs": "abs",
    "erf": "math.erf",
    "erfc": "math.erfc",
    "hypot": "math.hypot",
}

#: Row reductions: function class name -> NumPy reduction.
ROW_REDUCTIONS: dict[str, str] = {"rowsum": "_rt.rowsum", "rowmax": "_rt.rowmax"}

_RELATIONS: dict[str, str] = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


def call_args(expr: sp.Function) -> tuple[sp.Expr, ...]:
    """The arguments a function's kernel is called with: its own, or those its ``call_args`` gives (a constant as two
    floats, :class:`~symdl.functions.exp_of_square`)."""
    own = getattr(expr, "call_args", None)
    return own() if callable(own) else expr.args


class KernelPrinter(PythonCodePrinter):
    """Prints one expression of a kernel body.

    Args:
        scalars: symbols that are Python scalars (parameters); everything
            else is an array.
        names: variable name for each symbol (defaults to the symbol name).
        axis: the Python expression naming the reduction axis of row ops.
        arrays: what the in-place emitter may assume about each input array
            (shape and dtype groups, see :mod:`symdl.printing.inplace`);
            arrays not listed are never written and nothing computed from
            them is reused.
    """

    printmethod = "_symdl_numpy"
    #: A Piecewise whose condition reads scalar parameters only is chosen by a Python conditional (the
    #: condition is a Python bool, which torch.where does not take; an optimizer's hyper-parameter flags).
    #: The NumPy kernels keep ``np.where``, which the in-place emitter compiles.
    choose_in_python = False

    def __init__(self, scalars: Iterable[sp.Symbol] = (), names: Mapping[sp.Symbol, str] | None = None,
                 axis: str = "dim", arrays: Mapping[sp.Symbol, ArraySpec] | None = None) -> None:
        super().__init__({"fully_qualified_modules": False, "strict": False})
        self.scalars = frozenset(scalars)
        self.names = dict(names or {})
        self.axis = axis
        self.arrays = dict(arrays or {})

    # -- atoms -------------------------------------------------------------
    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self.names.get(expr, expr.name)

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Rational(self, expr: sp.Rational) -> str:
        return repr(float(expr))

    def _print_Integer(self, expr: sp.Integer) -> str:
        return str(int(expr))

    def _print_NumberSymbol(self, expr: sp.Expr) -> str:
        return repr(float(expr))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _is_scalar(self, expr: sp.Expr) -> bool:
        return expr.free_symbols <= self.scalars

    # -- arithmetic ----------------------------------------------------------
    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if exponent == sp.S.Half:
            return f"{'math' if self._is_scalar(base) else 'np'}.sqrt({self._print(base)})"
        if exponent == -sp.S.Half:
            return f"1 / {'math' if self._is_scalar(base) else 'np'}.sqrt({self._print(base)})"
        if exponent == -1:
            return f"1 / {self.parenthesize(base, sp.printing.precedence.PRECEDENCE['Mul'] + 1)}"
        if exponent in (2, 3) and not self._is_scalar(base):
            # np.power is ~10x slower than multiplying; squares print as np.square.
            b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"])
            return f"np.square({self._print(base)})" if exponent == 2 else f"{b} * {b} * {b}"
        if exponent.is_Integer and exponent < 0:
            return f"(1 / {self.parenthesize(base, sp.printing.precedence.PRECEDENCE['Mul'] + 1)}) ** {-int(exponent)}"
        power = sp.printing.precedence.PRECEDENCE["Pow"]
        return f"{self.parenthesize(base, power)} ** {self.parenthesize(exponent, power)}"

    def _print_Mul(self, expr: sp.Mul) -> str:
        # Keep b**-n (n >= 2) as (1 / b) ** n: SymPy's printer would write a / b**n, and b**n
        # overflows (softsign's (1 + |x|)**2 at |x| = 1e30 in float32) where (1/b)**n underflows.
        powers = [a for a in expr.args if a.is_Pow and a.exp.is_Integer and a.exp < -1]
        if not powers:
            return super()._print_Mul(expr)
        rest = sp.Mul(*(a for a in expr.args if a not in powers))
        factors = [] if rest == 1 else [self.parenthesize(rest, sp.printing.precedence.PRECEDENCE["Mul"])]
        factors += [f"({self._print(p)})" for p in powers]
        return " * ".join(factors)

    # -- functions -------------------------------------------------------------
    def _print_Function(self, expr: sp.Function) -> str:
        name = type(expr).__name__
        if name == "class_sum":
            return f"_rt.class_sum({self._print(expr.args[0])}, num_classes={self._print(NUM_CLASSES)})"
        if name in ROW_REDUCTIONS:
            return f"{ROW_REDUCTIONS[name]}({self._print(expr.args[0])}, axis={self.axis}, keepdims=True)"
        table = SCALAR_FUNCTIONS if self._is_scalar(expr) and name in SCALAR_FUNCTIONS else ARRAY_FUNCTIONS
        if name not in table:
            raise NotImplementedError(f"no NumPy translation for {name}")
        return f"{table[name]}({', '.join(self._print(a) for a in call_args(expr))})"

    _print_exp = _print_log = _print_tanh = _print_cosh = _print_Abs = _print_sign = _print_Function
    _print_sinh = _print_sin = _print_cos = _print_atan = _print_asinh = _print_Function
    _print_erf = _print_erfc = _print_log1p = _print_expm1 = _print_Function
    _print_clamped_log = _print_clamped_log1p = _print_hypot = _print_exp_of_square = _print_Function

    def _print_MinMax(self, expr: sp.Expr, array_fn: str, scalar_fn: str) -> str:
        args = sorted(expr.args, key=lambda a: (a.is_number, sp.default_sort_key(a)))
        if self._is_scalar(expr):
            return f"{scalar_fn}({', '.join(self._print(a) for a in args)})"
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{array_fn}({text}, {self._print(a)})"
        return text

    def _bounds(self, expr: sp.Expr) -> tuple[sp.Expr, str | None, str | None] | None:
        """``(value, low, high)`` when ``expr`` clamps one array between scalar bounds (printed; None: no
        bound on that side), else None."""
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

    def _clip(self, expr: sp.Expr) -> str | None:
        """A clamp of one array between scalar bounds (:meth:`_bounds`) as one call, else None."""
        clamp = self._bounds(expr)
        if clamp is None:
            return None
        value, low, high = clamp
        return self._clamp(self._print(value), low, high)

    def _clamp(self, value: str, low: str | None, high: str | None) -> str:
        """``np.clip`` (about 2x faster than np.maximum).

        A one-sided clamp gets an infinite bound (``np.clip(x, 0, math.inf)``):
        with ``None`` NumPy calls ``np.maximum`` instead of the clip ufunc. The
        two differ only in the sign of a zero result for a ``-0.0`` input.
        """
        return f"np.clip({value}, {'-math.inf' if low is None else low}, {'math.inf' if high is None else high})"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._clip(expr) or self._print_MinMax(expr, "np.maximum", "max")

    def _print_Min(self, expr: sp.Min) -> str:
        return self._clip(expr) or self._print_MinMax(expr, "np.minimum", "min")

    # -- logic -------------------------------------------------------------------
    def _print_indicator(self, expr: sp.Function) -> str:
        return self._print(expr.args[0])  # the boolean mask: NumPy arithmetic treats it as 0/1

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        return f"({self._print(expr.lhs)} {_RELATIONS[expr.rel_op]} {self._print(expr.rhs)})"

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_UnevaluatedExpr(self, expr: sp.UnevaluatedExpr) -> str:
        # grouped(...) is one unit: parenthesised, so a product evaluates it before multiplying
        # (x * (a / b), not (x * a) / b), and only atoms go bare.
        inner = self._print(expr.args[0])
        return inner if expr.args[0].is_Atom else f"({inner})"

    def _print_Not(self, expr: sp.Not) -> str:
        # not ``~x``: on a Python bool (a flag parameter) ~True is -2, which is truthy
        return f"np.logical_not({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (value, condition), rest = expr.args[0], expr.args[1:]
        otherwise = sp.Piecewise(*rest) if len(rest) > 1 or rest[0].cond is not sp.true else rest[0].expr
        if self.choose_in_python and condition is not sp.true and self._is_scalar(condition):
            return f"({self._print(value)} if {self._print(condition)} else {self._print(otherwise)})"
        if value == 0:
            return f"{self.parenthesize(otherwise, PRECEDENCE['Mul'])} * {self._print(sp.Not(condition))}"
        if otherwise == 0:
            return f"{self.parenthesize(value, PRECEDENCE['Mul'])} * {self._print(condition)}"
        return self._where(self._print(condition), self._print(value), self._print(otherwise))

    def _where(self, condition: str, value: str, otherwise: str) -> str:
        """``where(condition, value, otherwise)`` in the printed array library."""
        return f"np.where({condition}, {value}, {otherwise})"


def as_printed(expr: sp.Expr) -> sp.Expr:
    """``expr`` in the form the printers print (:func:`print_assignments`, and ``define_op``'s check that a form is
    finite at the extremes): piecewise parts folded, square roots of sums of squares as hypot, numeric constants
    as floats."""
    return constants_to_floats(as_hypot(fold_piecewise(expr)))


def constants_to_floats(expr: sp.Expr) -> sp.Expr:
    """Evaluate numeric subexpressions such as ``sqrt(2/pi)`` to 20-digit floats."""
    return expr.replace(
        lambda e: e.is_number and not e.is_Atom and not isinstance(e, sp.Rational),
        lambda e: sp.Float(e.evalf(20), 20),
    )


class class_sum(sp.Function):  # noqa: N801 - printed by name, like rowsum
    """A row sum of scalars and per-class weights only: there is no row array to reduce
    along, so it is summed over the classes (``num_classes`` times a scalar)."""


def _class_sums(expr: sp.Expr, printer: KernelPrinter) -> sp.Expr:
    """``expr`` with each row sum that reads no full-row array marked as a :class:`class_sum`
    (decided before ``cse`` hides the arrays behind temporaries)."""
    def spans_row(e: sp.Expr) -> bool:
        return any(s in printer.arrays and not printer.arrays[s].maybe_float for s in e.free_symbols)

    return expr.replace(lambda e: type(e).__name__ == "rowsum" and not spans_row(e.args[0]),
                        lambda e: class_sum(e.args[0]))


def print_assignments(
    outputs: Mapping[str, sp.Expr],
    printer: KernelPrinter,
    *,
    temp_prefix: str = "t",
    inplace: bool = True,
) -> list[str]:
    """Straight-line code computing ``outputs``, shared subexpressions once.

    Uses ``sympy.cse`` so that, e.g., ``exp(-|x|)`` is computed once even
    when both a forward value and its derivative need it. Each assignment is
    first printed as one expression (the *plain* form, ``inplace=False``);
    by default :func:`symdl.printing.inplace.emit_inplace` then compiles
    those into one NumPy operation per line writing into dead temporaries,
    with the same results.
    """
    names = list(outputs)
    exprs = [_class_sums(as_printed(outputs[n]), printer) for n in names]
    temps = sp.numbered_symbols(temp_prefix, real=True)
    replacements, reduced = sp.cse(exprs, symbols=temps, order="none")
    plain: list[tuple[str, str]] = []
    scalar_temps = set()
    for temp, value in replacements:
        if value.free_symbols <= printer.scalars | scalar_temps:
            scalar_temps.add(temp)
        printer.scalars = printer.scalars | (scalar_temps & {temp})
        plain.append((printer._print(temp), printer.doprint(value)))
    for name, value in zip(names, reduced):
        plain.append((name, printer.doprint(value)))
    if not inplace:
        return [f"{name} = {text}" for name, text in plain]
    # num_classes (class losses) is a Python int wherever it appears.
    scalars = {printer._print(s) for s in printer.scalars - scalar_temps} | {printer._print(NUM_CLASSES)}
    arrays = {printer._print(symbol): spec for symbol, spec in printer.arrays.items()}
    return emit_inplace(plain, names, scalars=scalars, arrays=arrays, prefix=temp_prefix)
