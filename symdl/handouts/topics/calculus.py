"""Handout: calculus: derivatives step by step, partial derivatives, gradients and Jacobians, the chain rule,
integration where deep learning meets it."""

from __future__ import annotations

import mpmath
import sympy as sp

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Calculus"
SUMMARY = ("Derivatives and their rules step by step, partial derivatives, gradients and Jacobians with their "
           "layouts, the chain rule, and the integrals behind expectations and normalising constants.")

x, y, w, b_, t = sp.symbols("x y w b t", real=True)
z = sp.IndexedBase("z")
p = sp.IndexedBase("p")
i, j = sp.symbols("i j", integer=True)


def softmax_jacobian_check() -> tuple[bool, str]:
    """d softmax_i / d z_j = p_i (delta_ij - p_j) on explicit instances of 2, 3 and 4 components."""
    for size in (2, 3, 4):
        zs = sp.symbols(f"z0:{size}", real=True)
        total = sum(sp.exp(v) for v in zs)
        probs = [sp.exp(v) / total for v in zs]
        for a in range(size):
            for c in range(size):
                claimed = probs[a] * (int(a == c) - probs[c])
                if sp.simplify(sp.diff(probs[a], zs[c]) - claimed) != 0:
                    return False, f"fails at ({a}, {c}) with {size} components"
    return True, "symbolic (simplify) entry by entry on instances with 2, 3 and 4 components"


def _rules(b: Builder) -> None:
    b.section("Derivatives and the rules, step by step")
    b.prose("A derivative measures how fast a function changes: f'(x) = lim (f(x + h) − f(x)) / h as h → 0. In "
            "practice it is computed with a handful of rules (sum, product, quotient, power, chain) applied to "
            "known derivatives. The derivations below are produced by symdl's step-by-step engine: every line is a "
            "rule, and every step is checked against SymPy's derivative (the bracket says how).")
    b.prose("The product rule, on x² sin x:")
    b.equation(verified.derivation("steps.product", x ** 2 * sp.sin(x), x))
    b.prose("The quotient rule, on x / (1 + x²):")
    b.equation(verified.derivation("steps.quotient", x / (1 + x ** 2), x))
    b.prose("The chain rule, on softplus log(1 + exp(x)), whose derivative is the sigmoid:")
    b.equation(verified.derivation("steps.chain_softplus", sp.log(1 + sp.exp(x)), x))
    b.run('''
        x0 = np.linspace(-2, 2, 9) + 0.1
        # elementwise functions: the checked gradient is the vector-Jacobian product v * f'(x)
        fd_check(lambda x: x ** 2 * np.sin(x), x0, lambda v, x: v * (2 * x * np.sin(x) + x ** 2 * np.cos(x)))
        fd_check(lambda x: x / (1 + x ** 2), x0, lambda v, x: v * (1 - x ** 2) / (1 + x ** 2) ** 2)
        fd_check(K.softplus, x0, lambda v, x: v * K.sigmoid(x))  # softplus' = sigmoid, with symdl's kernels
    ''', "The three results against finite differences")


def _partials(b: Builder) -> None:
    b.section("Partial derivatives, gradients and Jacobians")
    b.prose("A function of several variables has one partial derivative per variable, each taken with the others "
            "held fixed. For f(x, y) = x² y + sin(x y), with respect to x and then y:")
    f = x ** 2 * y + sp.sin(x * y)
    b.equation(verified.derivation("steps.partial_x", f, x))
    b.equation(verified.derivation("steps.partial_y", f, y))
    b.prose("Layouts. The gradient ∇f of a scalar function collects the partial derivatives in a vector of the "
            "same shape as the input (a column for a column x), so that θ − η∇f is an update. The Jacobian of a "
            "vector function f: R^n → R^m is the m × n matrix J_ij = ∂f_i/∂x_j (numerator layout: one row per "
            "output). A backward pass never forms J: it computes the vector-Jacobian product g⊤J for the upstream "
            "gradient g. For softmax p = softmax(z):")
    b.equation(verified.computed("softmax.jacobian", sp.Derivative(p[i], z[j]), p[i] * (sp.KroneckerDelta(i, j) - p[j]),
                                 softmax_jacobian_check))
    b.run('''
        z0 = np.array([0.5, -1.0, 2.0, 0.0])
        p0 = K.softmax(z0, dim=0)
        jacobian = np.diag(p0) - np.outer(p0, p0)  # the formula above
        # row i of J is the VJP with the unit vector e_i
        by_vjp = np.array([K.softmax_vjp(np.eye(4)[k], z0, dim=0)[0] for k in range(4)])
        assert np.allclose(jacobian, by_vjp, rtol=1e-12, atol=1e-15)
        print("J =", jacobian, sep="\\n")
        fd_check(lambda z: K.softmax(z, dim=0), z0, lambda g, z: K.softmax_vjp(g, z, dim=0))
    ''', "The softmax Jacobian from the kernel's VJP")


def _chain(b: Builder) -> None:
    b.section("The chain rule")
    b.prose("For a composition the derivatives multiply: d/dx f(g(x)) = f'(g(x)) g'(x). A neuron's output "
            "σ(w x + b) squared, differentiated with respect to its weight, nests it twice; this is exactly what "
            "backpropagation does, one factor per stage:")
    sigma = 1 / (1 + sp.exp(-(w * x + b_)))
    b.equation(verified.derivation("steps.chain_neuron", sigma ** 2, w))
    b.run('''
        def neuron_sq(w, x=0.7, b=-0.2):
            return K.sigmoid(w * x + b) ** 2


        def neuron_sq_vjp(v, w, x=0.7, b=-0.2):
            s = K.sigmoid(w * x + b)
            return v * 2 * s * s * (1 - s) * x  # outer derivative 2s, times sigma' = s (1 - s), times x


        fd_check(neuron_sq, np.linspace(-2, 2, 7), neuron_sq_vjp)
    ''', "The chain rule against finite differences")


def _integration(b: Builder) -> None:
    b.section("Integration: expectations and normalising constants")
    b.prose("Deep learning meets integrals in expectations (a loss averaged over the data distribution), in "
            "normalising constants (a density must integrate to one) and in marginal likelihoods. The Gaussian "
            "integral is the one to know; each identity below is checked by 50-digit quadrature and, where SymPy "
            "can integrate it, symbolically:")
    mu, sd = sp.Symbol("mu", real=True), sp.Symbol("sigma", positive=True)
    b.equation(verified.integral("gaussian_integral", sp.exp(-x ** 2 / 2), (x, -sp.oo, sp.oo), sp.sqrt(2 * sp.pi)))
    density = sp.exp(-(x - mu) ** 2 / (2 * sd ** 2)) / (sd * sp.sqrt(2 * sp.pi))
    b.prose("Hence the normal density with mean μ and standard deviation σ integrates to one:")
    b.equation(verified.integral("normal_normalised", density, (x, -sp.oo, sp.oo), sp.S.One,
                                 {mu: (-2.0, 2.0), sd: (0.5, 2.0)}))
    phi = sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)
    b.prose("An expectation is an integral against a density. For a standard normal input z, the variance and "
            "the mean of relu(z) (the integral runs over z > 0 only, where relu(z) = z):")
    b.equation(verified.integral("normal_variance", x ** 2 * phi, (x, -sp.oo, sp.oo), sp.S.One))
    b.equation(verified.integral("relu_mean", x * phi, (x, 0, sp.oo), 1 / sp.sqrt(2 * sp.pi)))
    b.run('''
        generator = np.random.default_rng(0)
        samples = generator.normal(size=200_000)
        running = np.cumsum(K.relu(samples)) / np.arange(1, len(samples) + 1)
        exact = 1 / np.sqrt(2 * np.pi)
        standard_error = K.relu(samples).std() / np.sqrt(len(samples))
        print(f"Monte Carlo E[relu(z)] = {running[-1]:.5f} +- {standard_error:.5f}")
        print(f"exact 1/sqrt(2 pi) = {exact:.5f}")
        assert abs(running[-1] - exact) < 4 * standard_error
    ''', "A Monte Carlo estimate with the relu kernel")
    b.plot('''
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
        grid = np.linspace(-4, 4, 400)
        density = np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi)
        left.plot(grid, density, color="k", label="normal density")
        left.fill_between(grid, 0, grid * density, where=grid > 0, alpha=0.4, label="z phi(z), z > 0")
        left.legend()
        left.set_xlabel("z")
        counts = np.arange(1, len(running) + 1)
        right.semilogx(counts, running, lw=1, label="running mean of relu(z)")
        right.axhline(exact, color="crimson", ls="--", label="1/sqrt(2 pi)")
        right.set_ylim(exact - 0.1, exact + 0.1)
        right.set_xlabel("samples")
        right.legend()
        fig.tight_layout()
    ''', "Left: the area under z phi(z) for z > 0 is E[relu(z)]. Right: the Monte Carlo estimate converging to it.")


def _exercises(b: Builder) -> None:
    b.section("Exercises")
    a, c = int(b.rng.integers(2, 6)), ref.draw(b.rng, -1.5, 1.5)
    b.exercise(f"Differentiate f(x) = x^{a} sin(x) and evaluate f'(x) at x = {c}.",
               float(a * c ** (a - 1) * mpmath.sin(c) + c ** a * mpmath.cos(c)),
               lambda: ref.derivative(lambda v: v ** a * mpmath.sin(v), c), how="mpmath.diff at 50 digits")
    x0, y0 = ref.draw(b.rng, -1, 1), ref.draw(b.rng, -1, 1)
    grad_x = 2 * x0 * y0 + y0 * float(mpmath.cos(x0 * y0))
    b.exercise(f"For f(x, y) = x² y + sin(x y), compute ∂f/∂x at (x, y) = ({x0}, {y0}).", grad_x,
               lambda: ref.derivative(lambda v: v ** 2 * y0 + mpmath.sin(v * y0), x0), how="mpmath.diff at 50 digits")
    sd = ref.draw(b.rng, 0.5, 3)
    b.exercise(f"A Gaussian N(0, {sd}²) has density C exp(−x² / (2 · {sd}²)). What is the constant C?",
               1 / (sd * (2 * 3.141592653589793) ** 0.5),
               lambda: ref.value(lambda: 1 / mpmath.quad(lambda v: mpmath.exp(-v ** 2 / (2 * mpmath.mpf(sd) ** 2)),
                                                         [-mpmath.inf, mpmath.inf])),
               how="1 / (50-digit quadrature of the unnormalised density)")


def build(b: Builder) -> None:
    """Add the calculus handout's content to ``b``."""
    b.goal("Differentiate with the sum, product, quotient and chain rules, step by step.",
           "Take partial derivatives; state the layout of a gradient and of a Jacobian.",
           "Compute a Jacobian-vector product the way a backward pass does.",
           "Use the Gaussian integral to normalise a density and compute an expectation.")
    _rules(b)
    _partials(b)
    _chain(b)
    _integration(b)
    _exercises(b)
