"""Handout: activation functions, every catalog activation and its derivative, and vanishing gradients."""

from __future__ import annotations

import mpmath
import sympy as sp

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Activation functions"
SUMMARY = ("Every activation in symdl's catalog with its derivative and PyTorch's subgradient at kinks, "
           "and why sigmoid networks lose their gradient with depth.")


def _elementwise() -> list[str]:
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    return [name for name, op in ACTIVATIONS_AND_LOSSES.items()
            if op.family == "activation" and not op.traits.over_rows]


def _catalog_section(b: Builder) -> None:
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    b.section("The catalog: definitions and derivatives")
    b.prose("An activation is applied elementwise to a layer's pre-activation. Each formula below is printed "
            "from symdl's catalog entry: the definition a textbook gives, and the derivative the kernel uses, "
            "proven equal to what SymPy derives from the definition (the last section says how each was proven). "
            "Where an activation has a kink, PyTorch picks one value of the subgradient there; the catalog "
            "records that choice and the kernels follow it.")
    for name in _elementwise():
        op = ACTIVATIONS_AND_LOSSES[name]
        variants = list(op.formulas) if op.variant_param else [""]
        for variant in variants:
            label = f"{name} ({op.variant_param}={variant!r})" if variant else name
            b.prose(f"{label}: {op.summary}")
            b.equation(verified.op_definition(name, variant))
            b.equation(verified.op_gradient(name, variant))
            kinks = op.formulas[variant or next(iter(op.formulas))].kinks
            for kink in kinks:
                b.prose(f"Kink at x = {_number(kink.at)}: PyTorch's subgradient there is {_number(kink.subgradient)}. "
                        f"{kink.why}")
    b.prose("Softmax is not elementwise: each output depends on the whole row, so its backward pass is a "
            "vector-Jacobian product, written with the upstream gradient g.")
    for name in ("softmax", "log_softmax", "softmin"):
        b.equation(verified.op_definition(name))
        b.equation(verified.op_gradient(name))


def _number(expr: sp.Expr) -> str:
    """A kink's place or value as a reader writes it (SELU's 60-digit rational as 1.7581)."""
    return f"{float(expr):.6g}" if expr.is_number else str(expr)


def _plots(b: Builder) -> None:
    b.section("Plots, kinks and the kernels' values there")
    b.run('''
        from symdl.catalog import ACTIVATIONS_AND_LOSSES

        names = [n for n, op in ACTIVATIONS_AND_LOSSES.items() if op.family == "activation" and not op.traits.over_rows]


        def kinks(name):
            """(x, PyTorch's subgradient) at each kink of a catalog activation, parameters at their defaults."""
            op = ACTIVATIONS_AND_LOSSES[name]
            defaults = {p.symbol: p.default for p in op.params if p.symbol is not None}
            formula = op.formulas[next(iter(op.formulas))]
            return [(float(k.at.subs(defaults)), float(k.subgradient.subs(defaults))) for k in formula.kinks]


        def span(name):
            """The plotted range of x: [-4, 4], widened to show each kink within |x| <= 8 (relu6's at 6) with a
            margin of 1; softplus's switch to x at its threshold 20 would squash the curve and is left out."""
            ats = [at for at, _ in kinks(name) if abs(at) <= 8]
            return min([-4.0] + [at - 1 for at in ats]), max([4.0] + [at + 1 for at in ats])


        # the kernel's derivative at every kink must be the catalog's subgradient
        for name in names:
            for at, sub in kinks(name):
                kernel = float(getattr(K, name + "_vjp")(np.ones(1), np.array([at]))[0][0])
                assert abs(kernel - sub) <= 1e-12 * max(1.0, abs(sub)), (name, at, kernel, sub)
                print(f"{name:12s} kink at x = {at:5.1f}: subgradient {sub:.6f} (kernel {kernel:.6f})")
    ''', "Kinks: the catalog's subgradient against the kernel")
    b.plot('''
        fig, axes = plt.subplots(5, 4, figsize=(10, 11))
        for ax, name in zip(axes.flat, names):
            f, vjp = getattr(K, name), getattr(K, name + "_vjp")
            x = np.linspace(*span(name), 801)
            ax.plot(x, f(x), color="tab:blue", label="f(x)")
            ax.plot(x, vjp(np.ones_like(x), x)[0], "--", color="tab:orange", label="f'(x)")
            for at, sub in kinks(name):
                if x[0] <= at <= x[-1]:
                    ax.plot([at], [sub], "o", color="crimson", ms=4)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
    ''', "Each elementwise activation (solid) and its derivative from the generated kernel (dashed); "
         "red dots: PyTorch's subgradient at a kink.")
    b.run('''
        # away from the kinks at 0, +-0.5, +-1, +-3 and 6, and past relu6's saturation
        x = np.concatenate([np.linspace(-3, 3, 13), [-7.0, 7.0]]) + 0.05
        for name in names:
            fd_check(getattr(K, name), x, getattr(K, name + "_vjp"))
    ''', "Every derivative against finite differences")
    b.prose("Softmax, log-softmax and softmin act on a whole row, so they are plotted on the row [x, 0]: their first "
            "outputs are then sigmoid(x), logsigmoid(x) and sigmoid(−x), which the code checks against those "
            "kernels. The dashed line is the first output's partial derivative with respect to x, the first entry "
            "of the kernel's vector-Jacobian product with the unit vector e_0.")
    b.run('''
        row_names = [n for n, op in ACTIVATIONS_AND_LOSSES.items() if op.family == "activation" and op.traits.over_rows]
        t = np.linspace(-4, 4, 801)
        rows = np.stack([t, np.zeros_like(t)], axis=1)  # the rows [x, 0]
        unit = np.zeros_like(rows)
        unit[:, 0] = 1.0
        ones = np.ones_like(t)
        # on [x, 0] each row activation's first output is an elementwise one, and so is its partial derivative
        same = {"softmax": (K.sigmoid(t), K.sigmoid_vjp(ones, t)[0]),
                "log_softmax": (K.logsigmoid(t), K.logsigmoid_vjp(ones, t)[0]),
                "softmin": (K.sigmoid(-t), -K.sigmoid_vjp(ones, -t)[0])}
        first, slope = {}, {}
        for name in row_names:
            first[name] = getattr(K, name)(rows, dim=1)[:, 0]
            slope[name] = getattr(K, name + "_vjp")(unit, rows, dim=1)[0][:, 0]
            value, derivative = same[name]
            assert np.allclose(first[name], value, rtol=1e-12, atol=1e-15)
            assert np.allclose(slope[name], derivative, rtol=1e-12, atol=1e-15)
            fd_check(lambda z, name=name: getattr(K, name)(z, dim=1), rows[::100],
                     lambda g, z, name=name: getattr(K, name + "_vjp")(g, z, dim=1))
    ''', "Row activations on the row [x, 0]")
    b.plot('''
        fig, axes = plt.subplots(1, len(row_names), figsize=(10, 2.8), sharex=True)
        for ax, name in zip(axes.flat, row_names):
            ax.plot(t, first[name], color="tab:blue", label="first output")
            ax.plot(t, slope[name], "--", color="tab:orange", label="d(first output)/dx")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("x (row [x, 0])", fontsize=8)
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
    ''', "Softmax, log-softmax and softmin on the row [x, 0]: the first output (solid) and its partial derivative "
         "with respect to x from the generated kernel's vector-Jacobian product (dashed).")


def _vanishing(b: Builder) -> None:
    b.section("Vanishing gradients")
    x = sp.Symbol("x", real=True)
    sigma = sp.Function("sigma")
    s = sigma(x)
    meaning = {sigma: sp.Lambda(x, 1 / (1 + sp.exp(-x)))}
    b.prose("Backpropagation multiplies one activation derivative per layer. The sigmoid's derivative is "
            "at most one quarter, so through many sigmoid layers (with weights of moderate size) the product "
            "shrinks geometrically:")
    b.equation(verified.chain("sigmoid.derivative_bound", sp.Derivative(s, x), ("=", s * (1 - s)),
                              ("=", sp.Rational(1, 4) - (s - sp.Rational(1, 2)) ** 2), ("<=", sp.Rational(1, 4)),
                              meaning=meaning, domain={x: (-6.0, 6.0)}))
    b.prose("ReLU's derivative is exactly 1 wherever the unit is active, so it does not shrink the product. "
            "The experiment below builds two 20-layer networks of width 64 with symdl.nn (PyTorch's default "
            "initialisation), runs a real forward and backward pass, and records the norm of each layer's "
            "weight gradient. First, the whole backward pass of a small deep network is checked against "
            "finite differences.")
    b.run('''
        import symdl.nn as nn


        def deep(activation, depth, width, generator):
            layers = []
            for _ in range(depth):
                layers += [nn.Linear(width, width, generator=generator, dtype=np.float64), activation()]
            return nn.Sequential(*layers)


        small = deep(nn.Sigmoid, 4, 5, np.random.default_rng(1))
        x0 = np.random.default_rng(2).normal(size=(3, 5))


        def small_vjp(v, x):
            small(x)
            return (small.backward(v),)


        fd_check(small, x0, small_vjp)
    ''', "Checking a deep network's backward pass")
    b.run('''
        def gradient_norms(activation, depth=20, width=64, seed=0):
            generator = np.random.default_rng(seed)
            model = deep(activation, depth, width, generator)
            out = model(generator.normal(size=(32, width)))
            model.backward(generator.normal(size=out.shape) / out.size)
            return np.array([np.linalg.norm(model[2 * i].grads["weight"]) for i in range(depth)])


        norms = {name: gradient_norms(cls) for name, cls in (("sigmoid", nn.Sigmoid), ("relu", nn.ReLU))}
        for name, values in norms.items():
            print(f"{name:8s} first layer {values[0]:.2e}, last layer {values[-1]:.2e}, "
                  f"ratio {values[0] / values[-1]:.1e}")
        assert norms["sigmoid"][0] / norms["sigmoid"][-1] < norms["relu"][0] / norms["relu"][-1]
    ''', "Gradient norm over depth")
    b.plot('''
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for name, values in norms.items():
            ax.semilogy(np.arange(1, len(values) + 1), values, "o-", label=name)
        ax.set_xlabel("layer (1 = nearest the input)")
        ax.set_ylabel("norm of the weight gradient")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    ''', "Weight-gradient norm per layer of a 20-layer network: sigmoid against ReLU (log scale).")


def _exercises(b: Builder) -> None:
    import numpy as np

    import symdl.kernels as K

    b.section("Exercises")
    x1, x2, x3 = (ref.draw(b.rng, -3, 3) for _ in range(3))
    b.exercise(f"Compute the derivative of the sigmoid at x = {x1}.",
               float(K.sigmoid_vjp(np.ones(1), np.array([x1]))[0][0]),
               lambda: ref.derivative(ref.sigmoid, x1), how="mpmath.diff of 1/(1+exp(-x)) at 50 digits")
    b.exercise(f"Compute the derivative of tanh at x = {x2}.", float(K.tanh_vjp(np.ones(1), np.array([x2]))[0][0]),
               lambda: ref.derivative(mpmath.tanh, x2), how="mpmath.diff of tanh at 50 digits")
    b.exercise(f"Compute the derivative of GELU (exact, approximate='none') at x = {x3}.",
               float(K.gelu_vjp(np.ones(1), np.array([x3]))[0][0]),
               lambda: ref.derivative(lambda t: t * mpmath.ncdf(t), x3), how="mpmath.diff of x Phi(x) at 50 digits")
    depth = int(b.rng.integers(5, 15))
    b.exercise(f"A chain of {depth} sigmoid units, each multiplying by a weight of 1, receives a gradient of 1 at "
               "the top. What is the largest the gradient at the bottom can be?", 0.25 ** depth,
               lambda: ref.value(lambda: mpmath.mpf(1) / 4 ** depth), how="the bound sigma' <= 1/4 applied per layer")


def build(b: Builder) -> None:
    """Add the activation handout's content to ``b``."""
    b.goal("Read the definition and derivative of every common activation, as PyTorch computes them.",
           "Say which value PyTorch uses for the derivative at a kink (relu'(0) = 0).",
           "Derive the bound sigma'(x) <= 1/4 and explain vanishing gradients with it.",
           "Measure gradient norms over depth in a real network.")
    _catalog_section(b)
    _plots(b)
    _vanishing(b)
    _exercises(b)
