"""Handout: linear algebra: the linear layer, eigenvectors and PCA, SVD and low rank, least squares."""

from __future__ import annotations

import numpy as np
import sympy as sp

from symdl.handouts import verified
from symdl.handouts.builder import Builder

TITLE = "Linear algebra"
SUMMARY = ("Vectors and matrices as a layer's forward and backward pass, eigenvectors and the Rayleigh quotient "
           "(PCA on the digits), the SVD and low-rank images, least squares and conditioning.")

n = sp.Symbol("n", integer=True, positive=True)
A, X = sp.MatrixSymbol("A", n, n), sp.MatrixSymbol("X", n, n)
x, w, y = sp.MatrixSymbol("x", n, 1), sp.MatrixSymbol("w", n, 1), sp.MatrixSymbol("y", n, 1)
R = sp.Symbol("R")


def _symmetric(size: int) -> sp.Matrix:
    return sp.Matrix(size, size, lambda i, j: sp.Symbol(f"a{min(i, j)}{max(i, j)}", real=True))


def rayleigh_check() -> tuple[bool, str]:
    """grad R = 2 (A x - R x) / x^T x entry by entry on explicit 2x2 and 3x3 symmetric instances."""
    for size in (2, 3):
        a, v = _symmetric(size), sp.Matrix(sp.symbols(f"x0:{size}", real=True))
        quotient = (v.T * a * v)[0] / (v.T * v)[0]
        claimed = 2 * (a * v - quotient * v) / (v.T * v)[0]
        if any(sp.cancel(sp.diff(quotient, v[i]) - claimed[i]) != 0 for i in range(size)):
            return False, f"fails on the {size}x{size} instance"
    return True, "symbolic (cancel) entry by entry on explicit symmetric 2x2 and 3x3 instances"


def normal_check() -> tuple[bool, str]:
    """grad ||X w - y||^2 = 2 X^T (X w - y) entry by entry on explicit 4x2 and 3x3 instances."""
    for rows, cols in ((4, 2), (3, 3)):
        m = sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
        v, target = sp.Matrix(sp.symbols(f"w0:{cols}", real=True)), sp.Matrix(sp.symbols(f"y0:{rows}", real=True))
        residual = m * v - target
        loss = (residual.T * residual)[0]
        claimed = 2 * m.T * residual
        if any(sp.expand(sp.diff(loss, v[i]) - claimed[i]) != 0 for i in range(cols)):
            return False, f"fails on the {rows}x{cols} instance"
    return True, "symbolic (expand) entry by entry on explicit 4x2 and 3x3 instances"


def normal_equations_check() -> tuple[bool, str]:
    """The gradient is zero exactly on the normal equations: 2 X^T (X w - y) = 2 (X^T X w - X^T y) entry by entry,
    with the gradient SymPy takes of ||X w - y||^2 on explicit 4x2 and 3x3 instances."""
    for rows, cols in ((4, 2), (3, 3)):
        m = sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
        v, target = sp.Matrix(sp.symbols(f"w0:{cols}", real=True)), sp.Matrix(sp.symbols(f"y0:{rows}", real=True))
        residual = m * v - target
        loss = (residual.T * residual)[0]
        equations = m.T * m * v - m.T * target
        if any(sp.expand(sp.diff(loss, v[i]) - 2 * equations[i]) != 0 for i in range(cols)):
            return False, f"fails on the {rows}x{cols} instance"
    return True, ("symbolic (expand): SymPy's gradient of the loss is 2 (X^T X w - X^T y) entry by entry on explicit "
                  "4x2 and 3x3 instances, so it vanishes exactly where the equations hold")


def eckart_young_check() -> tuple[bool, str]:
    """The truncation error identity on every digit image montage rank (numeric, float64)."""
    from sklearn.datasets import load_digits

    image = _montage(load_digits().images)
    u, s, vt = np.linalg.svd(image)
    worst = 0.0
    for rank in range(len(s) + 1):
        approx = (u[:, :rank] * s[:rank]) @ vt[:rank]
        error, predicted = np.sum((image - approx) ** 2), np.sum(s[rank:] ** 2)
        worst = max(worst, abs(error - predicted) / max(np.sum(s ** 2), 1.0))
    return worst < 1e-12, (f"numeric on the 32x32 digit montage at every rank 0..32 (max relative difference "
                           f"{worst:.1e}); that A_k is the best rank-k approximation is the Eckart-Young theorem")


def condition_check() -> tuple[bool, str]:
    """kappa(X^T X) = kappa(X)^2 on random matrices of growing conditioning (numeric, float64)."""
    rng = np.random.default_rng(0)
    for scale in (1, 10, 1e3, 1e5):
        q1, _ = np.linalg.qr(rng.normal(size=(6, 6)))
        q2, _ = np.linalg.qr(rng.normal(size=(6, 6)))
        m = q1 @ np.diag(np.geomspace(1, scale, 6)) @ q2
        if not np.isclose(np.linalg.cond(m.T @ m), np.linalg.cond(m) ** 2, rtol=1e-6):
            return False, f"fails at condition number {scale}"
    return True, "numeric on random 6x6 matrices with condition numbers 1 to 1e5 (relative tolerance 1e-6)"


def _montage(images: np.ndarray) -> np.ndarray:
    """Sixteen 8x8 digits tiled 4 by 4 into one 32x32 image."""
    return np.block([[images[4 * r + c] for c in range(4)] for r in range(4)]) / 16.0


def _layer(b: Builder) -> None:
    b.section("Vectors and matrices in a layer")
    b.prose("A linear layer maps each input row x to x W⊤ + b: every output is a dot product of the input with a "
            "row of the weight matrix, plus a bias. The backward pass is again matrix products: the input's "
            "gradient multiplies the upstream gradient ȳ by W, the weight's gradient sums outer products of ȳ "
            "and x over the batch. Both formulas come from symdl's layer catalog.")
    b.equation(verified.layer("linear", 0))
    b.equation(verified.layer("linear", 1))
    b.run('''
        generator = np.random.default_rng(0)
        x = generator.normal(size=(4, 3))
        W = generator.normal(size=(2, 3))
        b = generator.normal(size=2)
        y = K.linear(x, W, b)
        assert np.allclose(y, x @ W.T + b)
        upstream = generator.normal(size=y.shape)
        dx, dW, db = K.linear_vjp(upstream, x, W, b)
        assert np.allclose(dx, upstream @ W) and np.allclose(dW, upstream.T @ x) and np.allclose(db, upstream.sum(0))
        print("y =", y, sep="\\n")
        fd_check(K.linear, [x, W, b], K.linear_vjp)
    ''', "A linear layer forward and backward")


def _eigen(b: Builder) -> None:
    b.section("Eigenvalues, the Rayleigh quotient and PCA")
    b.prose("For a symmetric matrix A, the Rayleigh quotient R(x) = x⊤Ax / x⊤x measures how much A stretches the "
            "direction x. Its gradient vanishes exactly where Ax = R(x) x, that is at the eigenvectors, and its "
            "largest value is the largest eigenvalue:")
    b.equation(verified.matrix_gradient("rayleigh.gradient", "(x @ A @ x) / (x @ x)", "x", {"A": "n,n", "x": "n"},
                                        assume=["symmetric(A)"], check=rayleigh_check))
    b.prose("Principal component analysis looks for the direction of largest variance of centred data: the "
            "maximiser of the Rayleigh quotient of the covariance matrix, its top eigenvector. Below on the 1797 "
            "bundled 8 × 8 digits (64 pixels each), with the eigenvector found by power iteration and checked "
            "against NumPy's eigendecomposition.")
    b.run('''
        from sklearn.datasets import load_digits

        digits = load_digits()
        data = digits.data - digits.data.mean(axis=0)
        C = data.T @ data / len(data)


        def rayleigh(A, v):
            return v @ A @ v / (v @ v)


        def rayleigh_grad(A, v):
            return 2 * (A @ v - rayleigh(A, v) * v) / (v @ v)


        fd_check(lambda v: rayleigh(C, v), np.random.default_rng(1).normal(size=64), lambda v: rayleigh_grad(C, v))
        v = np.ones(64)
        for _ in range(500):  # power iteration
            v = C @ v
            v /= np.linalg.norm(v)
        values, vectors = np.linalg.eigh(C)
        top = vectors[:, -1]
        assert np.isclose(abs(v @ top), 1, atol=1e-8) and np.isclose(rayleigh(C, v), values[-1])
        assert np.linalg.norm(rayleigh_grad(C, v)) < 1e-6
        print(f"top eigenvalue {values[-1]:.4f} = R(v) at the power-iteration vector; "
              f"it explains {values[-1] / values.sum():.1%} of the variance")
        scores = data @ vectors[:, ::-1][:, :2]
    ''', "PCA on the digits")
    b.plot('''
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        axes[0].imshow(top.reshape(8, 8), cmap="coolwarm")
        axes[0].set_title("first principal direction")
        axes[0].axis("off")
        axes[1].plot(np.arange(1, 65), values[::-1] / values.sum(), "o-", ms=3)
        axes[1].set_xlabel("component")
        axes[1].set_ylabel("fraction of variance")
        axes[1].set_yscale("log")
        shown = axes[2].scatter(scores[:, 0], scores[:, 1], c=digits.target, cmap="tab10", s=4)
        axes[2].set_xlabel("component 1")
        axes[2].set_ylabel("component 2")
        fig.colorbar(shown, ax=axes[2], label="digit")
        fig.tight_layout()
    ''', "The digits' first principal direction as an image, the eigenvalue spectrum, and the data projected on "
         "the first two directions.")


def _svd(b: Builder) -> None:
    b.section("The SVD and low-rank approximation")
    b.prose("Every matrix factors as A = U Σ V⊤ with orthonormal U, V and singular values "
            "σ1 ≥ σ2 ≥ ... ≥ 0. Keeping the first k terms gives A_k, the best approximation of rank k, and its "
            "squared error is the sum of the squared singular values left out:")
    Ak = sp.MatrixSymbol("A_k", n, n)
    i, k, r = sp.Symbol("i", integer=True), sp.Symbol("k", integer=True), sp.Symbol("r", integer=True)
    b.equation(verified.computed("svd.eckart_young", sp.trace((A - Ak).T * (A - Ak)),
                                 sp.Sum(sp.Indexed(sp.IndexedBase(r"\sigma"), i) ** 2, (i, k + 1, r)),
                                 eckart_young_check))
    b.run('''
        montage = np.block([[digits.images[4 * r + c] for c in range(4)] for r in range(4)]) / 16.0
        U, S, Vt = np.linalg.svd(montage)
        ranks = [1, 2, 4, 8, 16]
        for k in ranks:
            approx = (U[:, :k] * S[:k]) @ Vt[:k]
            error = np.sum((montage - approx) ** 2)
            assert np.isclose(error, np.sum(S[k:] ** 2))
            print(f"rank {k:2d}: squared error {error:8.4f} = sum of the discarded sigma^2")
    ''', "Low-rank digits")
    b.plot('''
        fig, axes = plt.subplots(1, len(ranks) + 1, figsize=(13, 2.6))
        for ax, k in zip(axes, ranks):
            ax.imshow((U[:, :k] * S[:k]) @ Vt[:k], cmap="gray_r")
            ax.set_title(f"rank {k}")
            ax.axis("off")
        axes[-1].imshow(montage, cmap="gray_r")
        axes[-1].set_title("original (rank 32)")
        axes[-1].axis("off")
        fig.tight_layout()
    ''', "Sixteen digits as one 32 x 32 matrix, reconstructed from its first k singular triplets.")


def _least_squares(b: Builder) -> None:
    b.section("Linear systems, least squares and conditioning")
    b.prose("Least squares picks w to minimise ‖Xw − y‖². Its gradient is 2 X⊤(Xw − y):")
    b.equation(verified.matrix_gradient("least_squares.gradient", "norm(X @ w - y)**2", "w",
                                        {"X": "n,d", "w": "d", "y": "n"}, check=normal_check))
    b.equation(verified.computed("least_squares.normal_equations", X.T * X * w, X.T * y, normal_equations_check),
               "Setting it to zero gives the normal equations:")
    b.prose("Solving the normal equations squares the condition number (the ratio of the largest to the smallest "
            "singular value), so they lose twice as many digits as a QR- or SVD-based solver:")
    kappa = sp.Function("kappa")
    b.equation(verified.computed("least_squares.conditioning", kappa(X.T * X), kappa(X) ** 2, condition_check))
    b.run('''
        generator = np.random.default_rng(0)
        conditions, normal_errors, lstsq_errors = [], [], []
        for scale in np.geomspace(1, 1e7, 15):
            q1, _ = np.linalg.qr(generator.normal(size=(40, 6)))
            q2, _ = np.linalg.qr(generator.normal(size=(6, 6)))
            M = q1 @ np.diag(np.geomspace(1, 1 / scale, 6)) @ q2
            w_true = generator.normal(size=6)
            rhs = M @ w_true
            w_normal = np.linalg.solve(M.T @ M, M.T @ rhs)
            w_lstsq = np.linalg.lstsq(M, rhs, rcond=None)[0]
            conditions.append(np.linalg.cond(M))
            normal_errors.append(np.linalg.norm(w_normal - w_true) / np.linalg.norm(w_true))
            lstsq_errors.append(np.linalg.norm(w_lstsq - w_true) / np.linalg.norm(w_true))
        print(f"at condition number {conditions[-1]:.0e}: normal equations error {normal_errors[-1]:.1e}, "
              f"SVD least squares error {lstsq_errors[-1]:.1e}")
        assert normal_errors[-1] > 100 * lstsq_errors[-1]
    ''', "Normal equations against an SVD solver")
    b.plot('''
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.loglog(conditions, normal_errors, "o-", label="normal equations")
        ax.loglog(conditions, lstsq_errors, "s-", label="SVD (numpy.linalg.lstsq)")
        ax.loglog(conditions, np.array(conditions) ** 2 * 1e-16, ":", color="0.5", label="kappa² x 1e-16")
        ax.set_xlabel("condition number of X")
        ax.set_ylabel("relative error of w")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    ''', "Relative error of the least-squares solution against the condition number of X.")


def _exercises(b: Builder) -> None:
    b.section("Exercises")
    a11, a22 = (int(v) for v in b.rng.integers(1, 10, size=2))
    a12 = int(b.rng.integers(-4, 5))
    matrix = np.array([[a11, a12], [a12, a22]], dtype=float)
    exact = max(sp.Matrix([[a11, a12], [a12, a22]]).eigenvals(multiple=True), key=lambda e: float(e))
    b.exercise(f"What is the largest eigenvalue of A = [[{a11}, {a12}], [{a12}, {a22}]]?",
               float(np.linalg.eigvalsh(matrix).max()), lambda: float(exact), how="SymPy's exact eigenvalues")
    v = [int(t) for t in b.rng.integers(-3, 4, size=2)]
    v = v if any(v) else [1, 1]
    quotient = float(np.array(v) @ matrix @ np.array(v) / (np.array(v) @ np.array(v)))
    exact_q = sp.Rational((sp.Matrix([v]) * sp.Matrix([[a11, a12], [a12, a22]]) * sp.Matrix(v))[0],
                          sum(t * t for t in v))
    b.exercise(f"For the same A, compute the Rayleigh quotient at x = {v}. Why can it not exceed your previous "
               "answer?", quotient, lambda: float(exact_q), how="exact rational arithmetic in SymPy")
    xs = [int(t) for t in b.rng.choice(np.arange(-3, 4), size=3, replace=False)]
    ys = [int(t) for t in b.rng.integers(-5, 6, size=3)]
    design = np.array([[1.0, t] for t in xs])
    fit = np.linalg.lstsq(design, np.array(ys, dtype=float), rcond=None)[0]
    m = sp.Matrix([[1, t] for t in xs])
    exact_fit = (m.T * m).solve(m.T * sp.Matrix(ys))
    b.exercise(f"Fit a line y = c + s x by least squares to the points {list(zip(xs, ys))} using the normal "
               "equations. What is the slope s?", float(fit[1]), lambda: float(exact_fit[1]),
               how="the normal equations solved exactly in SymPy")


def build(b: Builder) -> None:
    """Add the linear-algebra handout's content to ``b``."""
    b.goal("Read a linear layer's forward and backward pass as matrix products.",
           "Use the Rayleigh quotient to characterise eigenvectors, and compute PCA's first direction.",
           "Compress an image with the SVD and predict the error from the singular values.",
           "Derive the normal equations and explain why they are ill-conditioned.")
    _layer(b)
    _eigen(b)
    _svd(b)
    _least_squares(b)
    _exercises(b)
