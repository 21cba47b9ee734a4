"""Matrix calculus: the textbook results, derived in steps, checked against closed forms computed here with NumPy.

Every case runs at three random sizes (each symbolic size drawn in 2..6); the derived result's text (the JSON
``result``) is parsed back and evaluated, and compared with the closed form written independently below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from symdl.steps.matrix import derive_matrix, evaluate, parse_matrix, parse_shapes

SEEDS = (1, 2, 3)


def _values(shapes: dict, rng: np.random.Generator, spd: tuple = (), simplex: tuple = ()) -> tuple[dict, dict]:
    sizes = {d: int(rng.integers(2, 7)) for s in shapes.values() for d in s if isinstance(d, str)}
    values = {}
    for name, shape in shapes.items():
        dims = tuple(d if isinstance(d, int) else sizes[d] for d in shape)
        if name in spd:
            a = rng.standard_normal(dims)
            values[name] = a @ a.T + dims[0] * np.eye(dims[0])
        elif name in simplex:
            values[name] = rng.dirichlet(np.ones(dims[0]))
        else:
            values[name] = rng.standard_normal(dims)
    return values, sizes


def check(text: str, wrt: str, declarations: list[str], closed_form, assume: tuple = (), spd: tuple = (),
          simplex: tuple = ()) -> str:
    """Derive, require every step and result verified, compare the printed result with ``closed_form``."""
    derivation = derive_matrix(text, wrt, declarations, assume=assume)
    assert derivation.verified, derivation.render("text")
    data = json.loads(derivation.render("json"))
    shapes = parse_shapes(declarations)
    result = parse_matrix(data["result"][wrt], shapes)  # the printed text parses back
    for seed in SEEDS:
        values, sizes = _values(shapes, np.random.default_rng(seed), spd, simplex)
        got = evaluate(result, values, sizes)
        want = closed_form(**values)
        assert np.shape(got) == np.shape(want) == np.shape(values[wrt])  # shaped like the variable
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    return data["result"][wrt]


LINEAR = ["g=m", "x=d", "W=m,d", "b=m"]


@pytest.mark.parametrize(("wrt", "closed"), [
    ("x", lambda g, x, W, b: W.T @ g), ("W", lambda g, x, W, b: np.outer(g, x)), ("b", lambda g, x, W, b: g)])
def test_linear_layer_vector(wrt, closed):
    # y = x W^T + b with an upstream gradient g: the vector-Jacobian products
    check("sum(g * (x @ W.T + b))", wrt, LINEAR, closed)


@pytest.mark.parametrize(("wrt", "closed"), [
    ("X", lambda G, X, W, b: G @ W), ("W", lambda G, X, W, b: G.T @ X), ("b", lambda G, X, W, b: G.sum(axis=0))])
def test_linear_layer_batch(wrt, closed):
    check("sum(G * (X @ W.T + b))", wrt, ["G=N,m", "X=N,d", "W=m,d", "b=m"], closed)


def test_linear_layer_jacobians_numerator_layout():
    d = derive_matrix("W @ x + b", ["x", "b"], ["x=d", "W=m,d", "b=m"], jacobian=True)
    assert d.verified and d.kind == "jacobian"
    assert str(d.results["x"].result) == "W"
    rng = np.random.default_rng(0)
    values, sizes = _values(parse_shapes(["x=d", "W=m,d", "b=m"]), rng)
    np.testing.assert_array_equal(evaluate(d.results["b"].result, values, sizes), np.eye(len(values["b"])))


def test_least_squares_gradient_and_normal_equations():
    text = check("norm(X @ w - y)**2", "w", ["X=n,d", "w=d", "y=n"], lambda X, w, y: 2 * X.T @ (X @ w - y))
    assert text == "2 * X.T @ (X @ w - y)"
    # the stationary point: X^T X w = X^T y, i.e. the least-squares solution, makes the derived gradient 0
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((9, 3)), rng.standard_normal(9)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    gradient = evaluate(parse_matrix(text, parse_shapes(["X=n,d", "w=d", "y=n"])), {"X": X, "w": w, "y": y})
    assert np.max(np.abs(gradient)) < 1e-10
    assert np.max(np.abs(evaluate(parse_matrix(text, parse_shapes(["X=n,d", "w=d", "y=n"])),
                                  {"X": X, "w": w + 0.1, "y": y}))) > 1e-3


@pytest.mark.parametrize(("wrt", "closed"), [
    ("w", lambda X, w, b, y, N=None: 2 / len(y) * X.T @ ((np.maximum(X @ w + b, 0) - y) * (X @ w + b > 0))),
    ("b", lambda X, w, b, y: 2 / len(y) * np.sum((np.maximum(X @ w + b, 0) - y) * (X @ w + b > 0)))])
def test_mse_of_relu_neuron_per_sample_masks(wrt, closed):
    # Parr & Howard: the gradient keeps sample i only where w.x_i + b > 0 (relu'(0) = 0, as PyTorch)
    check("sum((relu(X @ w + b) - y)**2) / N", wrt, ["X=N,d", "w=d", "b=", "y=N"], closed)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_softmax_cross_entropy_logits():
    text = check("-sum(y * log(softmax(z)))", "z", ["y=k", "z=k"], lambda y, z: _softmax(z) - y,
                 assume=("sum(y) = 1",), simplex=("y",))
    assert text == "softmax(z) - y"
    general = derive_matrix("-sum(y * log(softmax(z)))", "z", ["y=k", "z=k"]).results["z"].result
    assert str(general) == "sum(y) * softmax(z) - y"  # without the assumption, the general form


def test_softmax_regression_weights():
    text = check("-sum(y * log(softmax(W @ x)))", "W", ["y=k", "W=k,d", "x=d"],
                 lambda y, W, x: np.outer(_softmax(W @ x) - y, x), assume=("sum(y)=1",), simplex=("y",))
    assert text == "outer(softmax(W @ x) - y, x)"


def test_quadratic_form():
    assert check("x @ A @ x", "x", ["x=n", "A=n,n"], lambda x, A: (A + A.T) @ x) in ("(A.T + A) @ x",
                                                                                      "(A + A.T) @ x")


def test_trace_and_log_det():
    assert check("trace(A @ X)", "X", ["A=n,n", "X=n,n"], lambda A, X: A.T) == "A.T"
    assert check("log(det(X))", "X", ["X=n,n"], lambda X: np.linalg.inv(X).T, spd=("X",)) == "inv(X).T"
    # log det of a non-symmetric positive-determinant matrix too (X^{-T}, not X^{-1})
    d = derive_matrix("log(det(X))", "X", ["X=3,3"])
    X = np.array([[2.0, 1.0, 0.0], [0.3, 3.0, 1.0], [0.0, 0.5, 1.5]])
    np.testing.assert_allclose(evaluate(d.results["X"].result, {"X": X}), np.linalg.inv(X).T, rtol=1e-12)
    assert "symmetric" in d.render("text")  # the convention for symmetric matrices is stated


def test_rayleigh_quotient_and_pca_direction():
    shapes = ["x=n", "A=n,n"]
    check("x @ A @ x / (x @ x)", "x", shapes,
          lambda x, A: ((A + A.T) @ x - 2 * (x @ A @ x) / (x @ x) * x) / (x @ x))
    gradient = parse_matrix(str(derive_matrix("x @ A @ x / (x @ x)", "x", shapes).results["x"].result),
                            parse_shapes(shapes))
    rng = np.random.default_rng(7)
    data = rng.standard_normal((50, 4)) @ np.diag([3.0, 1.5, 1.0, 0.5])
    covariance = np.cov(data.T)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    for k in range(4):  # every eigenvector is a stationary point
        assert np.max(np.abs(evaluate(gradient, {"x": eigenvectors[:, k], "A": covariance}))) < 1e-10
    assert np.max(np.abs(evaluate(gradient, {"x": rng.standard_normal(4), "A": covariance}))) > 1e-3
    # PCA's first direction maximises the quotient: the top eigenvector beats random directions
    top = eigenvectors[:, -1]
    quotient = lambda v: v @ covariance @ v / (v @ v)  # noqa: E731
    assert all(quotient(top) >= quotient(rng.standard_normal(4)) for _ in range(100))
    assert np.isclose(quotient(top), eigenvalues[-1])


GAUSS = "-0.5 * N * log(det(S)) - 0.5 * sum(((X - mu) @ inv(S)) * (X - mu))"
GAUSS_SHAPES = ["X=N,d", "mu=d", "S=d,d"]


def test_gaussian_log_likelihood_mean_and_covariance():
    # at a symmetric S the unconstrained gradients reduce to the textbook forms
    check(GAUSS, "mu", GAUSS_SHAPES, lambda X, mu, S: np.linalg.inv(S) @ (X - mu).sum(axis=0), spd=("S",))

    def d_s(X, mu, S):
        inv, r = np.linalg.inv(S), X - mu
        return -0.5 * len(X) * inv + 0.5 * inv @ r.T @ r @ inv
    check(GAUSS, "S", GAUSS_SHAPES, d_s, spd=("S",))
    # the maximum-likelihood estimates are the stationary point: mean and biased covariance
    d = derive_matrix(GAUSS, ["mu", "S"], GAUSS_SHAPES)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3)) @ np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, 0.3, 1.0]])
    mu = X.mean(axis=0)
    S = (X - mu).T @ (X - mu) / len(X)
    for name in ("mu", "S"):
        assert np.max(np.abs(evaluate(d.results[name].result, {"X": X, "mu": mu, "S": S}, {"N": 40}))) < 1e-9
    assert "2 inv(S) - diag(diag(inv(S)))" in d.render("text")  # the symmetric-matrix convention


@pytest.mark.parametrize(("wrt", "closed"), [("W", lambda G, W, X: G @ X.T), ("X", lambda G, W, X: W.T @ G)])
def test_mlp_layer_backward_matrix_form(wrt, closed):
    # D = W X: dW = dD X^T, dX = W^T dD
    assert check("sum(G * (W @ X))", wrt, ["G=m,N", "W=m,d", "X=d,N"], closed) == \
        {"W": "G @ X.T", "X": "W.T @ G"}[wrt]


@pytest.mark.parametrize(("wrt", "closed"), [
    ("W1", lambda G, W2, W1, X: ((W2.T @ G) * (W1 @ X > 0)) @ X.T),
    ("W2", lambda G, W2, W1, X: G @ np.maximum(W1 @ X, 0).T),
    ("X", lambda G, W2, W1, X: W1.T @ ((W2.T @ G) * (W1 @ X > 0)))])
def test_two_layer_mlp_backward(wrt, closed):
    check("sum(G * (W2 @ relu(W1 @ X)))", wrt, ["G=k,N", "W2=k,h", "W1=h,d", "X=d,N"], closed)


@pytest.mark.parametrize(("text", "wrt", "closed"), [
    ("w * x", "w", lambda w, x: np.diag(x)),                      # w (x) x -> diag(x)
    ("w * x", "x", lambda w, x: np.diag(w)),
    ("w / x", "w", lambda w, x: np.diag(1 / x)),                  # w (/) x -> diag(1/x)
    ("w / x", "x", lambda w, x: np.diag(-w / x**2)),
    ("x + z", "z", lambda x, z: np.ones(len(x))),                 # scalar expansion
    ("x * z", "z", lambda x, z: x),
    ("sum(x)", "x", lambda x: np.ones(len(x))),                   # sum reduction
    ("sigmoid(x)", "x", lambda x: np.diag(_sig(x) * (1 - _sig(x)))),
])
def test_parr_howard_elementwise_jacobians(text, wrt, closed):
    shapes = {"w * x": ["w=n", "x=n"], "w / x": ["w=n", "x=n"], "x + z": ["x=n", "z="], "x * z": ["x=n", "z="],
              "sum(x)": ["x=n"], "sigmoid(x)": ["x=n"]}[text]
    d = derive_matrix(text, wrt, shapes, jacobian=True)
    assert d.verified
    parsed = parse_shapes(shapes)
    for seed in SEEDS:
        values, sizes = _values(parsed, np.random.default_rng(seed))
        if text == "w / x":
            values["x"] = np.abs(values["x"]) + 0.5
        want = closed(**values)
        got = evaluate(parse_matrix(json.loads(d.render("json"))["result"][wrt], parsed), values, sizes)
        np.testing.assert_allclose(np.broadcast_to(got, np.shape(want)), want, rtol=1e-12, atol=1e-14)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def test_steps_name_identities_and_are_each_verified():
    d = derive_matrix("-sum(y * log(softmax(W @ x)))", "W", ["y=k", "W=k,d", "x=d"], assume=["sum(y) = 1"])
    rules = [s.rule for s in d.steps]
    assert rules == ["negation", "sum_reduction", "hadamard_product", "log_softmax", "matrix_product"]
    assert all(s.check.ok for s in d.steps)
    assert len({tuple(sorted(c.sizes[0].items())) for c in [d.results["W"].check]}) == 1
    assert len({tuple(sorted(s.items())) for s in d.results["W"].check.sizes}) > 1  # several sizes drawn


def test_a_wrong_result_is_never_printed_as_true(monkeypatch):
    from symdl.steps.matrix import identities

    wrong = identities.Identity("matrix_product", "planted wrong rule", "", identities._operands,
                                lambda node, g: [(node.a, identities.n.Outer(identities.full(g, node.shape), node.b)),
                                                 (node.b, identities.n.MatMul(node.a, identities.full(g, node.shape)))])
    monkeypatch.setitem(identities.GENERIC, identities.n.MatMul, wrong)
    d = derive_matrix("norm(X @ w - y)**2", "w", ["X=n,n", "w=n", "y=n"])
    assert not d.verified
    text = d.render("text")
    assert "NOT VERIFIED" in text
    assert json.loads(d.render("json"))["result"] == {}  # no result is claimed


def test_a_failed_step_is_said_even_when_the_result_passes(monkeypatch):
    from symdl.steps.matrix import engine
    from symdl.steps.matrix import nodes as n

    real = engine._Checker.check

    def planted(self, derivative, wrt, at=None):  # the check of the step through tanh fails, the rest runs
        check = real(self, derivative, wrt, at)
        node = self.expr if at is None else at  # a Jacobian step is checked as its own expression
        return engine.Check(False, check.error, check.sizes) if isinstance(node, n.Func) else check

    monkeypatch.setattr(engine._Checker, "check", planted)
    for jacobian, text in ((False, "sum(tanh(X @ w))"), (True, "2 * tanh(X @ w)")):
        d = derive_matrix(text, "w", ["X=n,d", "w=d"], jacobian=jacobian)
        failed = [i for i, s in enumerate(d.steps, 1) if not s.check.ok]
        assert len(failed) == 1 and d.results["w"].verified and not d.verified
        for fmt in ("text", "markdown", "latex", "html", "json"):
            assert f"NOT VERIFIED: step {failed[0]} disagrees with finite differences" in d.render(fmt)


# ----------------------------------------------------------------------------------------------- textbook forms
def test_rayleigh_quotient_textbook_form_by_named_rewrites():
    shapes = ["x=n", "A=n,n"]
    general = derive_matrix("x @ A @ x / (x @ x)", "x", shapes)
    assert str(general.results["x"].shown) == "((A + A.T) @ x - 2 * R * x) / (x @ x)"
    # symmetric A: 2 / (x^T x) (A x - R x), checked against the closed form on symmetric matrices
    text = check("x @ A @ x / (x @ x)", "x", shapes, lambda x, A: 2 / (x @ x) * (A @ x - (x @ A @ x) / (x @ x) * x),
                 assume=("symmetric(A)",), spd=("A",))
    assert text == "2 / (x @ x) * (A @ x - (x @ A @ x) / (x @ x) * x)"  # JSON: every name expanded, parseable
    d = derive_matrix("x @ A @ x / (x @ x)", "x", shapes, assume=["symmetric(A)"])
    r = d.results["x"]
    assert str(r.shown) == "2 / (x @ x) * (A @ x - R * x)"
    assert [s.rule for s in r.rewrites] == ["name_value", "common_divisor", "order_terms", "symmetric",
                                            "scalar_in_front"]
    assert [s.stage for s in r.rewrites][-2:] == ["symmetric(A)"] * 2 and all(s.ok for s in r.rewrites)
    data = json.loads(d.render("json"))
    assert data["named"] == {"R": "(x @ A @ x) / (x @ x)"} and data["shown"] == {"x": "2 / (x @ x) * (A @ x - R * x)"}
    assert data["rewrites"]["x"][0]["reason"].startswith("a / b^2 = (a / b) / b")
    assert r"\frac{2}{x^\top x} \left(A x - R x\right)" in d.render("latex")


def test_rayleigh_stationary_points_are_the_eigenvectors():
    d = derive_matrix("x @ A @ x / (x @ x)", "x", ["x=n", "A=n,n"], assume=["symmetric(A)"], stationary=True)
    st = d.results["x"].stationary
    assert st.ok and d.verified
    assert [eq for eq, _ in st.lines][1] == "A @ x = R * x"
    assert "eigenvectors of A" in st.conclusion and "PCA's first direction" in st.conclusion
    # the check itself can fail: a wrong claim (random vectors instead of eigenvectors) is caught
    from symdl.steps.matrix import stationary

    rng = np.random.default_rng(0)
    instances = [type("I", (), {"values": {"x": rng.standard_normal(4), "A": np.eye(4) + np.diag([1.0, 2, 3, 4])},
                                "sizes": {"n": 4}})()]
    ok, _ = stationary._check(parse_matrix(json.loads(d.render("json"))["result"]["x"], parse_shapes(["x=n", "A=n,n"])),
                              "x", instances, lambda values, sizes: [rng.standard_normal(4)], rng)
    assert not ok


def test_least_squares_stationary_point_is_the_normal_equations_solution():
    d = derive_matrix("norm(X @ w - y)**2", "w", ["X=n,d", "w=d", "y=n"], stationary=True)
    st = d.results["w"].stationary
    assert st.ok and "the normal equations X.T @ X @ w = X.T @ y" in st.conclusion
    solution = st.lines[-1][0].split(" = ", 1)[1]
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal(8)
    got = evaluate(parse_matrix(solution, parse_shapes(["X=n,d", "y=n"])), {"X": X, "y": y})
    np.testing.assert_allclose(got, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-10)  # ground truth: LAPACK


def test_gaussian_textbook_forms_and_maximum_likelihood_under_symmetric_covariance():
    check(GAUSS, "mu", GAUSS_SHAPES, lambda X, mu, S: np.linalg.inv(S) @ (X - mu).sum(axis=0), assume=("symmetric(S)",),
          spd=("S",))
    d = derive_matrix(GAUSS, ["mu", "S"], GAUSS_SHAPES, assume=["symmetric(S)"], stationary=True)
    assert str(d.results["mu"].shown) == "inv(S) @ sum(X - mu, 0)"
    assert str(d.results["S"].shown) == "0.5 * (inv(S) @ ((X - mu).T @ (X - mu)) @ inv(S) - N * inv(S))"
    assert str(d.results["mu"].shown_general) == "0.5 * (inv(S) + inv(S).T) @ sum(X - mu, 0)"
    assert d.verified
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 3))
    shapes = parse_shapes(GAUSS_SHAPES)
    mean = evaluate(parse_matrix(d.results["mu"].stationary.lines[-1][0].split(" = ", 1)[1], shapes), {"X": X},
                    {"N": 30})
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    cov = evaluate(parse_matrix(d.results["S"].stationary.lines[-1][0].split(" = ", 1)[1], shapes),
                   {"X": X, "mu": X.mean(axis=0)}, {"N": 30})
    np.testing.assert_allclose(cov, np.cov(X.T, bias=True), rtol=1e-12)


def test_other_cases_print_textbook_forms():
    assert str(derive_matrix("x @ A @ x", "x", ["x=n", "A=n,n"]).results["x"].shown) == "(A + A.T) @ x"
    assert check("x @ A @ x", "x", ["x=n", "A=n,n"], lambda x, A: 2 * A @ x, assume=("symmetric(A)",),
                 spd=("A",)) == "2 * A @ x"
    relu = derive_matrix("sum((relu(X @ w + b) - y)**2) / N", ["w", "b"], ["X=N,d", "w=d", "b=", "y=N"])
    assert str(relu.results["w"].shown) == "2 / N * X.T @ ((relu(X @ w + b) - y) * step(X @ w + b))"
    assert str(relu.results["b"].shown) == "2 / N * sum((relu(X @ w + b) - y) * step(X @ w + b))"
    assert relu.verified


def test_a_wrong_rewrite_is_caught(monkeypatch):
    from symdl.steps.matrix import textbook

    monkeypatch.setattr(textbook, "_order_sum", lambda node: n_add(node))
    d = derive_matrix("x @ A @ x", "x", ["x=n", "A=n,n"])
    step = d.results["x"].rewrites[0]
    assert step.rule == "order_terms" and not step.ok and not d.verified
    assert json.loads(d.render("json"))["result"] == {}


def n_add(node):
    """A planted wrong identity: A.T + A = A + A."""
    from symdl.steps.matrix import nodes as n

    if isinstance(node, n.Add) and isinstance(node.a, n.T) and node.a.a == node.b:
        return n.Add(node.b, node.b)
    return None
