"""A corpus of textbook derivations for ``symdl derive``, each with its answer as the textbook gives it.

Sources: Parr & Howard, "The Matrix Calculus You Need For Deep Learning" (scalar rules, the chain
rule's worked examples, the neuron activation), CS231n's backpropagation notes (the circuit
``(x + y) z``, the sigmoid neuron, the staged function), standard calculus tables, and the
index-level softmax / log-sum-exp / cross-entropy derivations.

Each case: the expression (symdl's expression text, or a SymPy builder for index sums), the
variable, the expected derivative written by hand (not computed by symdl), and the rules expected
at given places of the tree: ``(path, rule)`` where ``path`` is the sequence of child positions
from the root (``()`` the root; a chain rule's children are its outer then its inner derivative).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class Case:
    """One textbook derivation."""

    name: str
    source: str
    expr: str | Callable[[], tuple[sp.Expr, sp.Expr]]  # text, or () -> (expression, variable)
    wrt: str
    expected: str | Callable[[], sp.Expr]
    rules: tuple[tuple[tuple[int, ...], str], ...] = ()
    kinks: tuple[float, ...] = field(default=())  # points to keep numeric checks away from


PH = "Parr & Howard"
CS = "CS231n"
TABLE = "table of derivatives"

# --------------------------------------------------------------------------- index-level builders
N = sp.Symbol("n", integer=True, positive=True)
I, J, K = sp.symbols("i j k", integer=True, positive=True)  # noqa: E741 - the textbook's indices
Z, Y, W, X = (sp.IndexedBase(name) for name in ("z", "y", "w", "x"))


def _softmax(index: sp.Expr) -> sp.Expr:
    return sp.exp(Z[index]) / sp.Sum(sp.exp(Z[K]), (K, 1, N))


CASES: tuple[Case, ...] = (
    # Parr & Howard, section "Review: Scalar derivative rules"
    Case("constant", PH, "y**2 + 3", "x", "0", (((), "constant"),)),
    Case("power", PH, "x**3", "x", "3*x**2", (((), "power"),)),
    Case("constant multiple", PH, "7*x**4", "x", "28*x**3", (((), "constant_multiple"), ((0,), "power"))),
    Case("sum", PH, "x**2 + 3*x", "x", "2*x + 3", (((), "sum"),)),
    Case("difference", PH, "x**3 - x", "x", "3*x**2 - 1", (((), "sum"),)),
    Case("product", PH, "x**2*sin(x)", "x", "2*x*sin(x) + x**2*cos(x)", (((), "product"),)),
    Case("quotient", TABLE, "sin(x)/x", "x", "(x*cos(x) - sin(x))/x**2", (((), "quotient"),)),
    Case("chain: sin(x^2)", PH, "sin(x**2)", "x", "2*x*cos(x**2)", (((), "chain"), ((0,), "trig"), ((1,), "power"))),
    Case("chain: exp(3x)", TABLE, "exp(3*x)", "x", "3*exp(3*x)", (((), "chain"), ((0,), "exp"))),
    Case("log", TABLE, "log(x)", "x", "1/x", (((), "log"),)),
    Case("chain: log(1 + x^2)", TABLE, "log(1 + x**2)", "x", "2*x/(1 + x**2)", (((), "chain"), ((0,), "log"))),
    Case("square root", TABLE, "sqrt(x)", "x", "1/(2*sqrt(x))", (((), "power"),)),
    Case("nested chain: sin(x^2)^3", PH, "sin(x**2)**3", "x", "6*x*sin(x**2)**2*cos(x**2)",
         (((), "chain"), ((0,), "power"), ((1,), "chain"), ((1, 0), "trig"))),
    Case("Parr & Howard: ln(sin(x^3)^2)", PH, "log(sin(x**3)**2)", "x", "6*x**2*cos(x**3)/sin(x**3)",
         (((), "chain"), ((0,), "log"), ((1,), "chain"), ((1, 0), "power"), ((1, 1), "chain"))),
    Case("multiple paths: x + x^2", PH, "x + x**2", "x", "1 + 2*x", (((), "sum"),)),
    Case("product with exp", TABLE, "x*exp(x)", "x", "exp(x) + x*exp(x)", (((), "product"),)),
    Case("neuron activation max(0, w x + b)", PH, "max(0, w*x + b)", "w", "where(w*x + b > 0, x, 0)",
         (((), "max_min"),)),
    Case("circuit (x + y) z, d/dx", CS, "(x + y)*z", "x", "z", (((), "constant_multiple"), ((0,), "sum"))),
    Case("circuit (x + y) z, d/dz", CS, "(x + y)*z", "z", "x + y", (((), "constant_multiple"), ((0,), "identity"))),
    Case("circuit x y, both vary", CS, "x*(x + y)", "x", "2*x + y", (((), "product"),)),
    Case("sigmoid neuron", CS, "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))", "w0",
         "x0*exp(-(w0*x0 + w1*x1 + w2))/(1 + exp(-(w0*x0 + w1*x1 + w2)))**2", (((), "chain"), ((0,), "power"))),
    Case("staged function", CS, "(x + sigmoid(y))/(sigmoid(x) + (x + y)**2)", "x",
         "((sigmoid(x) + (x + y)**2) - (x + sigmoid(y))*(sigmoid(x)*(1 - sigmoid(x)) + 2*(x + y)))"
         "/(sigmoid(x) + (x + y)**2)**2", (((), "quotient"),)),
    Case("sigmoid", CS, "sigmoid(x)", "x", "sigmoid(x)*(1 - sigmoid(x))", (((), "sigmoid"),)),
    Case("tanh", TABLE, "tanh(x)", "x", "1 - tanh(x)**2", (((), "hyperbolic"),)),
    Case("softplus", TABLE, "softplus(x)", "x", "1/(1 + exp(-x))", (((), "softplus"),)),
    Case("erf", TABLE, "erf(x)", "x", "2*exp(-x**2)/sqrt(pi)", (((), "erf"),)),
    Case("normal cdf", TABLE, "normal_cdf(x)", "x", "exp(-x**2/2)/sqrt(2*pi)", (((), "normal_cdf"),)),
    Case("GELU x Phi(x)", TABLE, "x*normal_cdf(x)", "x", "normal_cdf(x) + x*exp(-x**2/2)/sqrt(2*pi)",
         (((), "product"),)),
    Case("SiLU x sigma(x)", TABLE, "x*sigmoid(x)", "x", "sigmoid(x) + x*sigmoid(x)*(1 - sigmoid(x))",
         (((), "product"),)),
    Case("mish x tanh(softplus(x))", TABLE, "x*tanh(softplus(x))", "x",
         "tanh(softplus(x)) + x*(1 - tanh(softplus(x))**2)*sigmoid(x)", (((), "product"), ((1,), "chain"))),
    Case("absolute value", TABLE, "abs(x)", "x", "where(x > 0, 1, -1)", (((), "abs"),), (0.0,)),
    Case("shifted absolute value", TABLE, "abs(x - 3)", "x", "where(x > 3, 1, -1)",
         (((), "chain"), ((0,), "abs")), (3.0,)),
    Case("relu as max(x, 0)", TABLE, "max(x, 0)", "x", "where(x > 0, 1, 0)", (((), "max_min"),), (0.0,)),
    Case("min(x, 1)", TABLE, "min(x, 1)", "x", "where(x < 1, 1, 0)", (((), "max_min"),), (1.0,)),
    Case("leaky relu piecewise", TABLE, "where(x > 0, x, 0.1*x)", "x", "where(x > 0, 1, 0.1)",
         (((), "piecewise"),), (0.0,)),
    Case("huber piecewise", TABLE, "where(x > 1, x - 0.5, 0.5*x**2)", "x", "where(x > 1, 1, x)",
         (((), "piecewise"),), (1.0,)),
    Case("exponential 2^x", TABLE, "2**x", "x", "2**x*log(2)", (((), "exponential"),)),
    Case("x^x", TABLE, "x**x", "x", "x**x*(log(x) + 1)", (((), "general_power"),)),
    Case("cos x sin x", TABLE, "cos(x)*sin(x)", "x", "cos(x)**2 - sin(x)**2", (((), "product"),)),
    Case("tan", TABLE, "tan(x)", "x", "1/cos(x)**2", (((), "trig"),)),
    Case("atan", TABLE, "atan(x)", "x", "1/(1 + x**2)", (((), "inverse_trig"),)),
    Case("asinh", TABLE, "asinh(x)", "x", "1/sqrt(1 + x**2)", (((), "inverse_hyperbolic"),)),
    Case("log1p", TABLE, "log1p(x)", "x", "1/(1 + x)", (((), "log1p"),)),
    Case("gaussian bump", TABLE, "exp(-x**2/2)", "x", "-x*exp(-x**2/2)", (((), "chain"), ((0,), "exp"))),
    Case("softsign", TABLE, "x/(1 + abs(x))", "x", "1/(1 + abs(x))**2", (((), "quotient"),), (0.0,)),
    Case("squared error", TABLE, "(x - y)**2", "x", "2*(x - y)", (((), "chain"), ((0,), "power"))),
    Case("log cosh", TABLE, "log(cosh(x - y))", "x", "tanh(x - y)", (((), "chain"), ((0,), "log"))),
    # index sums: checked on instances, with the Kronecker delta at the right place
    Case("sum of squares", "index sums", lambda: (sp.Sum(Z[K]**2, (K, 1, N)), Z[J]), "z_j",
         lambda: 2 * Z[J], (((), "index_sum"),)),
    Case("dot product w . x", "index sums", lambda: (sp.Sum(W[K] * X[K], (K, 1, N)), W[J]), "w_j",
         lambda: X[J], (((), "index_sum"), ((0,), "constant_multiple"), ((0, 0), "kronecker"))),
    Case("log-sum-exp", "index sums", lambda: (sp.log(sp.Sum(sp.exp(Z[K]), (K, 1, N))), Z[J]), "z_j",
         lambda: _softmax(J), (((), "chain"), ((0,), "log"), ((1,), "index_sum"))),
    Case("softmax component i", "index sums", lambda: (_softmax(I), Z[J]), "z_j",
         lambda: _softmax(I) * (sp.KroneckerDelta(I, J) - _softmax(J)), (((), "quotient"),)),
    Case("softmax cross-entropy", "index sums",
         lambda: (-sp.Sum(Y[K] * (Z[K] - sp.log(sp.Sum(sp.exp(Z[I]), (I, 1, N)))), (K, 1, N)), Z[J]), "z_j",
         lambda: _softmax(J) * sp.Sum(Y[K], (K, 1, N)) - Y[J],
         (((), "constant_multiple"), ((0,), "index_sum"))),
)
