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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sympy as sp

from symdl.functions import NUM_CLASSES
from symdl.printing.inplace import ArraySpec
from symdl.printing.numpy_printer import SCALAR_FUNCTIONS, KernelPrinter, call_args


@dataclass(frozen=True)
class FrameworkNames:
    """What one framework calls each operation the kernels use.

    Elementwise ``maximum``, ``minimum``, ``where`` and ``logical_not`` are NumPy's names in every
    framework's namespace (``torch.maximum``, ``jnp.maximum``): the printer prefixes ``module``.

    Attributes:
        module: the array namespace (``torch``, ``jnp``).
        functions: SymPy function class name -> callable on arrays, where it is not the namespace's
            function of :data:`NUMPY_NAMED`'s name (``exp`` -> ``torch.exp``).
        clamp: format of a clamp with scalar bounds, ``{x}``, ``{low}``, ``{high}`` (``None``: no bound).
        reduce_sum, reduce_max: format of a row reduction along ``{axis}`` keeping it, of ``{x}``.
        helpers: source of the helper functions ``functions`` refers to, by name.
    """

    module: str
    functions: Mapping[str, str]
    clamp: str
    reduce_sum: str
    reduce_max: str
    helpers: Mapping[str, str] = field(default_factory=dict)

    def function(self, name: str) -> str | None:
        """The callable on arrays for the SymPy function class ``name`` (None: no translation)."""
        if name in self.functions:
            return self.functions[name]
        return f"{self.module}.{NUMPY_NAMED[name]}" if name in NUMPY_NAMED else None


def helper_sources(names: Iterable[str], helpers: Mapping[str, str]) -> list[str]:
    """The sources of the helpers ``names`` and of every helper their sources call, in name order."""
    wanted, pending = set(), set(names)
    while pending:
        name = pending.pop()
        wanted.add(name)
        pending |= {other for other in helpers
                    if other not in wanted and re.search(rf"(?<![\w.]){re.escape(other)}\(", helpers[name])}
    return [helpers[name] for name in sorted(wanted)]


#: SymPy functions that NumPy, PyTorch and JAX all name alike: class name -> the name in the namespace.
NUMPY_NAMED: dict[str, str] = {
    "exp": "exp", "log": "log", "tanh": "tanh", "cosh": "cosh", "sinh": "sinh", "log1p": "log1p", "expm1": "expm1",
    "Abs": "abs", "sign": "sign", "sin": "sin", "cos": "cos", "tan": "tan",
}


class FrameworkPrinter(KernelPrinter):
    """A :class:`KernelPrinter` whose array calls come from a :class:`FrameworkNames` table.

    A framework's printer is a subclass that sets :attr:`table`.

    Args:
        scalars, names, axis: as for :class:`KernelPrinter`.
        arrays: the op's arrays (:func:`symdl.printing.inplace.kernel_arrays`): which row sums span a row.
    """

    choose_in_python = True  # torch.where takes no Python bool

    printmethod = "_symdl_framework"
    #: the framework's names (set by each framework's subclass)
    table: FrameworkNames

    def __init__(self, scalars: Iterable[sp.Symbol] = (), names: Mapping[sp.Symbol, str] | None = None,
                 axis: str = "dim", arrays: Mapping[sp.Symbol, ArraySpec] | None = None) -> None:
        super().__init__(scalars=scalars, names=names, axis=axis, arrays=arrays)
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
        function = self.table.function(name)
        if function is None:
            raise NotImplementedError(f"no {self.table.module} translation for {name}")
        return self._call(function, (self._print(a) for a in call_args(expr)))

    _print_exp = _print_log = _print_tanh = _print_cosh = _print_Abs = _print_sign = _print_Function
    _print_erf = _print_erfc = _print_log1p = _print_expm1 = _print_Function
    _print_clamped_log = _print_clamped_log1p = _print_hypot = _print_exp_of_square = _print_Function
    _print_sin = _print_cos = _print_tan = _print_sinh = _print_asinh = _print_atan = _print_Function

    # -- clamps and extrema -------------------------------------------------------------------------
    def _clamp(self, value: str, low: str | None, high: str | None) -> str:
        return self.table.clamp.format(x=value, low=low, high=high)

    def _print_Max(self, expr: sp.Max) -> str:
        return self._clip(expr) or self._print_MinMax(expr, f"{self.table.module}.maximum", "max")

    def _print_Min(self, expr: sp.Min) -> str:
        return self._clip(expr) or self._print_MinMax(expr, f"{self.table.module}.minimum", "min")

    # -- logic --------------------------------------------------------------------------------------
    def _print_Not(self, expr: sp.Not) -> str:
        if self._is_scalar(expr):  # a flag parameter: a Python bool
            return f"(not {self._print(expr.args[0])})"
        return self._call(f"{self.table.module}.logical_not", [self._print(expr.args[0])])

    def _where(self, condition: str, value: str, otherwise: str) -> str:
        return self._call(f"{self.table.module}.where", [condition, value, otherwise])


#: Functions of scalar parameters only: Python's math module, whatever the framework (the NumPy kernels' table,
#: which has the trigonometric functions user ops may call, and tan), and the stable primitives' float helpers.
_SCALAR: dict[str, str] = {
    **SCALAR_FUNCTIONS, "tan": "math.tan",
    "sigmoid": "_sigmoid_float", "softplus": "_softplus_float", "normal_cdf": "_normal_cdf_float",
    "xlogy": "_xlogy_float"}

def exp_of_square_helper(*, module: str, how: str, exact: str, widen: str, narrow: str, clamp: str, bits: str,
                         split: str) -> str:
    """The text of a generated module's ``_exp_of_square`` (:class:`symdl.functions.exp_of_square`, NumPy's is
    ``symdl.kernels._runtime.exp_of_square``) in a framework's names: its array ``module`` (``exp``, ``abs``,
    ``where``), ``how`` it splits a float into halves of the mantissa (for the docstring), the function that keeps
    a value ``exact`` as computed (XLA would simplify ``(u + plus) - u`` to ``plus``), the lines (``widen``) that
    set ``narrow`` to the arguments' dtype and make ``u``, ``plus`` and ``divisor`` arrays of at least float32 (the
    halves of a 16-bit square would overflow), the format (``narrow``) that rounds the result back, the ``clamp``
    of ``u`` to ``bound`` into ``v``, the number of ``bits`` of the mantissa and the body of ``split(a)`` (the
    halves of an array)."""
    return (
        "def _exp_of_square(u, c, c_low=0.0, plus=0.0, divisor=1.0):\n"
        '    """exp(c ((u + plus) / divisor)^2) for c + c_low < 0 (two floats), with the exponent kept exactly\n'
        "    (symdl.functions.exp_of_square): u + plus = d + r (Knuth's two-sum), d / divisor = q + (r - f) / divisor\n"
        "    with q divisor + f exact (Dekker's product), |q| clamped where the value is 0 anyway; q^2 = s + t and\n"
        "    c s = e + g split exactly into halves of the mantissa, then exp(e) (1 + g + c (t + 2 q r) + c_low s):\n"
        f"    within about 2 ulp. The halves: {how}.\"\"\"\n"
        "    divided = not isinstance(divisor, (int, float)) or divisor != 1  # an array, or a number but 1\n"
        f"    {widen}\n"
        f"    bits = {bits}  # p, the bits of the mantissa\n"
        "    half = (bits + 1) // 2\n"
        "\n"
        "    def split(a):\n"
        f"{split}"
        "\n"
        f"    total = {exact}(u + plus)  # kept as computed: two-sum's error is what the rounding lost\n"
        f"    back = {exact}(total - u)\n"
        "    error = (u - (total - back)) + (plus - back)\n"
        "    u = total\n"
        "    if divided:  # a quotient and its rounding error\n"
        "        quotient = u / divisor\n"
        f"        product = {exact}(quotient * divisor)\n"
        "        q_high, q_low = split(quotient)\n"
        "        w_high, w_low = split(divisor)\n"
        "        rest = ((q_high * w_high - product) + q_high * w_low + q_low * w_high) + q_low * w_low\n"
        "        u, error = quotient, (((u - product) - rest) + error) / divisor\n"
        "    bound = math.sqrt(800.0 / -c)\n"
        f"    v = {clamp}\n"
        "    fraction, power = math.frexp(c)  # c rounded to p bits, the rest into c_low (exact in Python floats)\n"
        "    rounded = math.ldexp(round(fraction * 2**bits), power - bits)\n"
        "    c, c_low = rounded, (c - rounded) + c_low\n"
        "    fraction, power = math.frexp(c)\n"
        "    c_high = math.ldexp(round(fraction * 2**half), power - half)\n"
        "    square = v * v\n"
        "    high, low = split(v)\n"
        "    t = (((high * high - square) + 2 * high * low) + low * low) + 2 * v * error\n"
        "    exponent = square * c\n"
        "    s_high, s_low = split(square)\n"
        "    g = ((c_high * s_high - exponent) + c_high * s_low + (c - c_high) * s_high) + (c - c_high) * s_low\n"
        f"    correction = {module}.where({module}.abs(u) >= bound, 1.0, 1 + (g + (c * t + c_low * square)))\n"
        f"    return {narrow.format(f'({module}.exp(exponent) * correction)')}\n"
    )


#: The stable primitives of Python floats (a function of parameters only, such as sigmoid(beta)): the frameworks'
#: own take tensors. Every framework's helper table includes these.
SCALAR_HELPERS: dict[str, str] = {
    "_sigmoid_float": (
        "def _sigmoid_float(x):\n"
        '    """sigma(x) = 1 / (1 + e^-x) of a Python float, by e = e^-|x| (no overflow for either sign)."""\n'
        "    e = math.exp(-abs(x))\n"
        "    return 1 / (1 + e) if x >= 0 else e / (1 + e)\n"),
    "_softplus_float": (
        "def _softplus_float(x):\n"
        '    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) of a Python float."""\n'
        "    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))\n"),
    "_normal_cdf_float": (
        "def _normal_cdf_float(x):\n"
        '    """Phi(x) = erfc(-x / sqrt(2)) / 2 of a Python float, accurate in both tails."""\n'
        "    return 0.5 * math.erfc(-x / math.sqrt(2))\n"),
    "_xlogy_float": (
        "def _xlogy_float(x, y):\n"
        '    """x log(y) of Python floats, 0 where x = 0 (as torch.xlogy and jax.scipy.special.xlogy)."""\n'
        "    return 0.0 if x == 0 else x * math.log(y)\n"),
}
