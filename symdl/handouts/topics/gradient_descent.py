"""Handout: gradient descent, the learning rate's stable region, stochastic and mini-batch gradients."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from symdl.handouts import references as ref
from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Gradient descent"
SUMMARY = ("The update rule, why the learning rate must stay below 2 / lambda_max, and what mini-batches do "
           "to the gradient.")


def _rule(b: Builder) -> None:
    b.section("The update rule")
    b.prose("Gradient descent moves the parameters θ a small step against the gradient of the loss. symdl's "
            "SGD optimizer is generated from this rule in its catalog (below with PyTorch's defaults: no momentum, "
            "no weight decay); g is the gradient of the loss, η the learning rate.")
    b.equation(verified.update_rule("sgd", momentum=0))
    b.prose("The example minimises a quadratic f(w) = w⊤Hw / 2 with symdl.optim.SGD. Its gradient is Hw; "
            "the code checks that against finite differences before using it.")
    b.run('''
        from symdl.optim import SGD

        H = np.array([[1.0, 0.0], [0.0, 10.0]])  # eigenvalues 1 and 10


        def loss(w):
            return 0.5 * w @ H @ w


        def grad(w):
            return H @ w


        fd_check(loss, np.array([1.0, -0.7]), grad)


        def descend(lr, steps=25, start=(2.0, 1.0)):
            w = np.array(start)
            optimizer = SGD([w], lr=lr)
            path = [w.copy()]
            for _ in range(steps):
                optimizer.step([grad(w)])
                path.append(w.copy())
            return np.array(path)


        path = descend(0.1, steps=3)
        # lr = 1/10 zeroes the steep coordinate (float rounding leaves +-6e-17: shown as 0)
        print(np.round(path, 12) + 0.0)
    ''', "Three steps of gradient descent on a quadratic")


def _learning_rate(b: Builder) -> None:
    b.section("The learning rate: convergence below 2 / lambda_max")
    b.prose("On f(x) = a x² / 2 one step multiplies x by 1 − ηa. The iterates shrink exactly when that factor "
            "has size below one:")
    b.equation(verified.fact("gd_quadratic_1d"))
    b.prose("On a quadratic with Hessian H the error is multiplied by I − ηH; in the eigenbasis of H each "
            "coordinate behaves like the one-dimensional case with a = λ_i, and the largest eigenvalue sets "
            "the limit:")
    b.equation(verified.fact("gd_quadratic_hessian"))
    b.prose("For H with eigenvalues 1 and 10 the limit is η = 2/10 = 0.2. The trajectories below run "
            "symdl.optim.SGD at 0.9, 1.0 and 1.1 times that limit: below it the steep coordinate oscillates "
            "and decays, at it the oscillation neither grows nor shrinks, above it diverges.")
    b.run('''
        lam_max = np.linalg.eigvalsh(H).max()
        limit = 2 / lam_max
        paths = {factor: descend(factor * limit) for factor in (0.9, 1.0, 1.1)}
        for factor, p in paths.items():
            print(f"lr = {factor:.1f} x 2/lambda_max = {factor * limit:.3f}: |w| after 25 steps = "
                  f"{np.linalg.norm(p[-1]):.3g}")
        assert np.linalg.norm(paths[0.9][-1]) < 1 < np.linalg.norm(paths[1.1][-1])
    ''', "Below, at and above the limit")
    b.plot('''
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
        u, v = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
        for ax, (factor, p) in zip(axes, paths.items()):
            ax.contour(u, v, 0.5 * (u ** 2 + 10 * v ** 2), levels=12, colors="0.75", linewidths=0.6)
            ax.plot(p[:, 0], p[:, 1], "o-", ms=3, color="tab:red")
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_title(f"lr = {factor:.1f} x 2/lambda_max")
        fig.tight_layout()
    ''', "Gradient descent on f(w) = (w1² + 10 w2²)/2 below, at and above the limit 2/lambda_max.")


def _stochastic(b: Builder) -> None:
    b.section("Stochastic and mini-batch gradient descent")
    b.prose("With a loss that averages over N examples, the gradient of a random mini-batch of B examples is an "
            "unbiased estimate of the full gradient whose variance falls like 1/B. The example fits a linear "
            "model with the mean-squared-error loss, each gradient from symdl's kernels (linear and mse_loss and "
            "their vector-Jacobian products), checked against finite differences first.")
    b.equation(verified.op_definition("mse_loss"))
    b.equation(verified.op_gradient("mse_loss"))
    b.run('''
        generator = np.random.default_rng(0)
        N, D = 512, 5
        X = generator.normal(size=(N, D))
        w_true = generator.normal(size=(1, D))
        y = X @ w_true.T + 0.3 * generator.normal(size=(N, 1))


        def batch_loss(w, rows):
            return K.mse_loss(K.linear(X[rows], w), y[rows])


        def batch_grad(w, rows):
            (d_pred, _) = K.mse_loss_vjp(np.ones(()), K.linear(X[rows], w), y[rows])
            return K.linear_vjp(d_pred, X[rows], w)[1]


        everything = np.arange(N)
        w0 = np.zeros((1, D))
        fd_check(lambda w: batch_loss(w, everything), w0 + 0.1, lambda w: batch_grad(w, everything))
    ''', "Gradient of the mean-squared error")
    b.run('''
        def train(batch_size, lr=0.05, epochs=6, seed=1):
            order = np.random.default_rng(seed)
            w, losses = w0.copy(), []
            for _ in range(epochs):
                for rows in np.array_split(order.permutation(N), N // batch_size):
                    w -= lr * batch_grad(w, rows)
                    losses.append(float(batch_loss(w, everything)))
            return np.array(losses)


        curves = {size: train(size) for size in (1, 16, N)}
        full = batch_grad(w0, everything)
        sizes = np.array([1, 2, 4, 8, 16, 32, 64, 128])
        noise = []
        for size in sizes:
            draws = [batch_grad(w0, generator.choice(N, size, replace=False)) for _ in range(300)]
            noise.append(np.mean([np.sum((d - full) ** 2) for d in draws]))
        slope = np.polyfit(np.log(sizes), np.log(noise), 1)[0]
        print(f"final loss: " + ", ".join(f"B={s}: {c[-1]:.4f}" for s, c in curves.items()))
        print(f"gradient variance falls like B^{slope:.2f} (sampling without replacement: slightly faster than 1/B)")
        assert -1.3 < slope < -0.8
    ''', "Mini-batch noise")
    b.plot('''
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
        for size, losses in curves.items():
            left.semilogy(np.linspace(0, 6, len(losses)), losses, label=f"B = {size}", lw=1)
        left.set_xlabel("epoch")
        left.set_ylabel("full-data loss")
        left.legend()
        right.loglog(sizes, noise, "o-", label="measured")
        right.loglog(sizes, noise[0] / sizes, "--", label="1/B")
        right.set_xlabel("batch size B")
        right.set_ylabel("E |g_B - g|²")
        right.legend()
        fig.tight_layout()
    ''', "Left: loss over six epochs for batch sizes 1, 16 and the full batch at one learning rate: an epoch "
         "is 512 updates with B = 1 but a single update with the full batch, which is why the full batch lags. "
         "Right: the "
         "mini-batch gradient's mean squared error falls like 1/B.")


def _exercises(b: Builder) -> None:
    from symdl.optim import SGD

    b.section("Exercises")
    a, c = (int(v) for v in b.rng.integers(1, 9, size=2))
    off = int(b.rng.integers(-3, 4))
    H = np.array([[a + 4, off], [off, c]], dtype=float)
    answer = 2 / float(np.linalg.eigvalsh(H).max())
    exact = 2 / max(sp.Matrix([[a + 4, off], [off, c]]).eigenvals(multiple=True), key=lambda e: float(e))
    b.exercise(f"Gradient descent runs on f(w) = w⊤Hw / 2 with H = [[{a + 4}, {off}], [{off}, {c}]]. Below which "
               "learning rate does it converge from every starting point?", answer, lambda: float(exact),
               how="2 / the largest exact eigenvalue from SymPy")
    curvature, start, lr = ref.draw(b.rng, 0.5, 4), ref.draw(b.rng, -2, 2), ref.draw(b.rng, 0.05, 0.4)
    w = np.array([start])
    SGD([w], lr=lr).step([curvature * w])
    b.exercise(f"One step of gradient descent with learning rate {lr} on f(x) = {curvature} x² / 2 from "
               f"x = {start}: where does it land?", float(w[0]),
               lambda: ref.value(lambda: (1 - mpmath.mpf(lr) * mpmath.mpf(curvature)) * mpmath.mpf(start)),
               how="(1 - lr a) x in mpmath")
    one_step = sp.solve(sp.Eq(1 - sp.Symbol("lr") * sp.Rational(str(curvature)), 0))[0]
    b.exercise("For the same f, which learning rate reaches the minimum in one step? (Gradient descent diverges "
               "above twice that.)", 1 / curvature, float(one_step), how="SymPy solving 1 - lr a = 0 exactly")


def build(b: Builder) -> None:
    """Add the gradient-descent handout's content to ``b``."""
    b.goal("Write the gradient-descent update and run it with symdl.optim.SGD.",
           "Derive the stable learning rates on a quadratic: 0 < lr < 2/lambda_max.",
           "Explain and measure the noise of stochastic and mini-batch gradients.")
    _rule(b)
    _learning_rate(b)
    _stochastic(b)
    _exercises(b)
