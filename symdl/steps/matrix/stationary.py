r"""Stationary points (``--stationary``): the gradient set to zero, solved by named steps, the solution checked.

A rule recognises the form of a derived gradient, writes the equation :math:`\nabla f = 0` and the steps that
solve it (each a line with its reason), and verifies the conclusion numerically on random instances with
independently drawn sizes: the derived gradient, evaluated at the claimed stationary points, vanishes there
(relative to its size at random points, where it does not). Rules:

* **Eigenvectors** (the Rayleigh quotient :math:`R(x) = x^\top A x / x^\top x`): :math:`\nabla R =
  \frac{2}{x^\top x}(A x - R x) = 0 \iff A x = R\,x`: the stationary points are the eigenvectors of A (of its
  symmetric part for a general A), R is the eigenvalue, the largest at the top eigenvector: PCA's first
  direction when A is a covariance matrix.
* **Normal equations** (a gradient :math:`c\,M (P w - q)` affine in w, e.g. least squares
  :math:`2X^\top(Xw - y)`): :math:`M P w = M q`; with :math:`M = P^\top` the normal equations
  :math:`X^\top X w = X^\top y`, solved by :math:`w = (X^\top X)^{-1} X^\top y` when X has full column rank.
* **Sample mean** (a gradient :math:`M \sum_i (x_i - \mu)`, M invertible): :math:`\mu = \frac1N \sum_i x_i`.
* **Sample covariance** (a gradient :math:`c(S^{-1} C S^{-1} - N S^{-1})`): :math:`S = C / N`.

Where no rule fits, the output says so: nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.numeric import evaluate
from symdl.steps.matrix.printing import to_text

__all__ = ["Stationary", "stationary_points"]

#: The gradient at a claimed stationary point must be this small relative to its size at random points.
TOLERANCE = 1e-8


@dataclass(frozen=True)
class Stationary:
    """The stationary points of f in one variable.

    Attributes:
        wrt: the variable.
        lines: ``(equation, reason)`` from ``gradient = 0`` to the solution.
        conclusion: the result in words.
        ok: the check held on every instance (False: not verified; None: no rule fits, nothing claimed).
        detail: what was checked.
    """

    wrt: str
    lines: tuple[tuple[str, str], ...]
    conclusion: str
    ok: bool | None
    detail: str = ""


def _relative(at_solution: np.ndarray, at_random: np.ndarray) -> float:
    return float(np.max(np.abs(at_solution))) / max(float(np.max(np.abs(at_random))), 1e-300)


def _check(gradient: n.Node, wrt: str, instances: list, solve: Callable[[dict, dict], list[np.ndarray]],
           rng: np.random.Generator) -> tuple[bool, str]:
    """The gradient vanishes at every solution ``solve`` gives on each instance, and not at a random point."""
    worst = 0.0
    count = 0
    for inst in instances:
        values, sizes = dict(inst.values), inst.sizes
        random = evaluate(gradient, values, sizes)
        for point in solve(values, sizes):
            with np.errstate(all="ignore"):
                at = evaluate(gradient, {**values, wrt: point}, sizes)
            worst = max(worst, _relative(np.asarray(at), np.asarray(random)))
            count += 1
        away = {**values, wrt: np.asarray(values[wrt]) + rng.standard_normal(np.shape(values[wrt]))}
        if float(np.max(np.abs(evaluate(gradient, away, sizes)))) == 0.0:
            return False, "the gradient vanishes at random points too: the check would prove nothing"
    ok = count > 0 and worst <= TOLERANCE
    return ok, f"gradient at the {count} claimed points / at random points <= {worst:.1e} on {len(instances)} " \
               f"random instances"


# ----------------------------------------------------------------------------------------------- rules
def _eigen(expr: n.Node, wrt: n.Var, shown: n.Node, gradient: n.Node, instances: list,
           symmetric: frozenset[str], rng: np.random.Generator) -> Stationary | None:
    from symdl.steps.matrix.textbook import name_of_value

    if name_of_value(expr)[0] != "R" or expr.b.a != wrt:  # type: ignore[attr-defined]
        return None
    a_node = expr.a.a.b  # type: ignore[attr-defined]
    if not isinstance(a_node, n.Var):
        return None
    a, x = a_node.name, wrt.name
    is_symmetric = a in symmetric
    matrix = a if is_symmetric else f"(({a} + {a}.T) / 2)"
    lines = [(f"{to_text(shown)} = 0", "a stationary point: the gradient vanishes"),
             (f"{a} @ {x} = R * {x}" if is_symmetric else f"({a} + {a}.T) / 2 @ {x} = R * {x}",
              f"{x} != 0, so the factor 1 / ({x} @ {x}) is not 0" + ("" if is_symmetric else
                                                                    "; (A + A.T) x - 2 R x = 0 halved")),
             (f"{x} is an eigenvector of {matrix}, R = {x} @ {a} @ {x} / ({x} @ {x}) its eigenvalue",
              "the eigen-equation M v = lambda v, with lambda = R(v)")]
    conclusion = (f"the stationary points of R are the eigenvectors of {matrix}; R takes the eigenvalues as "
                  f"values, the largest at the top eigenvector: for a covariance matrix {a} that maximiser is "
                  f"PCA's first direction")

    def solve(values: dict, sizes: dict) -> list[np.ndarray]:
        m = np.asarray(values[a], float)
        _, vectors = np.linalg.eigh((m + m.T) / 2)
        return [vectors[:, k] for k in range(vectors.shape[1])]

    ok, detail = _check(gradient, x, instances, solve, rng)
    if ok:  # the top eigenvector maximises R: against random directions
        for inst in instances:
            m = np.asarray(inst.values[a], float)
            eigenvalues, vectors = np.linalg.eigh((m + m.T) / 2)
            r = lambda v: float(v @ m @ v / (v @ v))  # noqa: E731
            top = vectors[:, -1]
            ok = ok and abs(r(top) - eigenvalues[-1]) <= 1e-9 * max(1.0, abs(eigenvalues[-1])) and all(
                r(top) >= r(rng.standard_normal(len(top))) - 1e-12 for _ in range(50))
        detail += "; R(top eigenvector) = the largest eigenvalue >= R at 50 random directions per instance"
    return Stationary(x, tuple(lines), conclusion, ok, detail)


def _strip(node: n.Node) -> tuple[n.Node, n.Node]:
    """``(c, rest)`` for ``c * rest`` with c a scalar factor free of variables (``2``, ``2 / N``), else
    ``(1, node)``: a nonzero constant factor does not move the zeros."""
    if isinstance(node, n.Mul) and node.a.is_scalar and not any(isinstance(v, n.Var) for v in node.a.walk()):
        return node.a, node.b
    return n.Num(1.0), node


def _normal_equations(expr: n.Node, wrt: n.Var, shown: n.Node, gradient: n.Node, instances: list,
                      symmetric: frozenset[str], rng: np.random.Generator) -> Stationary | None:
    _, core = _strip(shown)  # c M (P w - q)
    if not (isinstance(core, n.MatMul) and isinstance(core.b, n.Sub) and isinstance(core.b.a, n.MatMul)
            and core.b.a.b == wrt and not any(part.has(wrt) for part in (core.a, core.b.a.a, core.b.b))):
        return None
    m, p, q = core.a, core.b.a.a, core.b.b
    normal = isinstance(m, n.T) and m.a == p
    mp, mq = to_text(n.MatMul(m, p)), to_text(n.MatMul(m, q))
    solution = n.MatMul(n.MatMul(n.Inv(n.MatMul(m, p)), m), q)
    lines = [(f"{to_text(shown)} = 0", "a stationary point: the gradient vanishes"),
             (f"{mp} @ {wrt.name} = {mq}", "divide by the constant factor, distribute the product, move the constant term"
              + (": the normal equations" if normal else "")),
             (f"{wrt.name} = {to_text(solution)}",
              f"when {mp} is invertible" + (f" ({to_text(p)} of full column rank)" if normal else ""))]
    conclusion = (f"the normal equations {mp} @ {wrt.name} = {mq}" if normal else f"{mp} @ {wrt.name} = {mq}") + \
        f"; the unique stationary point is {wrt.name} = {to_text(solution)} when {mp} is invertible"

    def solve(values: dict, sizes: dict) -> list[np.ndarray]:
        lhs = np.asarray(evaluate(n.MatMul(m, p), values, sizes))
        if np.linalg.cond(lhs) > 1e8:  # a rank-deficient instance: the formula does not apply there
            return []
        return [np.asarray(evaluate(solution, values, sizes))]

    ok, detail = _check(gradient, wrt.name, instances, solve, rng)
    return Stationary(wrt.name, tuple(lines), conclusion, ok, detail)


def _sample_mean(expr: n.Node, wrt: n.Var, shown: n.Node, gradient: n.Node, instances: list,
                 symmetric: frozenset[str], rng: np.random.Generator) -> Stationary | None:
    _, core = _strip(shown)  # M @ sum(X - mu, 0)
    if not (isinstance(core, n.MatMul) and isinstance(core.b, n.Sum) and core.b.axis == 0
            and isinstance(core.b.a, n.Sub) and core.b.a.b == wrt and not core.a.has(wrt)
            and not core.b.a.a.has(wrt) and len(core.b.a.a.shape) == 2):
        return None
    data, count = core.b.a.a, core.b.a.a.shape[0]
    mean = f"sum({to_text(data)}, 0) / {count}"
    lines = [(f"{to_text(shown)} = 0", "a stationary point: the gradient vanishes"),
             (f"sum({to_text(data)} - {wrt.name}, 0) = 0", f"{to_text(core.a)} is invertible"),
             (f"sum({to_text(data)}, 0) = {count} * {wrt.name}", f"{wrt.name} is the same in each of the {count} rows"),
             (f"{wrt.name} = {mean}", "the sample mean")]

    def solve(values: dict, sizes: dict) -> list[np.ndarray]:
        return [np.asarray(evaluate(data, values, sizes)).mean(axis=0)]

    ok, detail = _check(gradient, wrt.name, instances, solve, rng)
    return Stationary(wrt.name, tuple(lines), f"the maximum-likelihood mean is the sample mean {mean}", ok, detail)


def _sample_covariance(expr: n.Node, wrt: n.Var, shown: n.Node, gradient: n.Node, instances: list,
                       symmetric: frozenset[str], rng: np.random.Generator) -> Stationary | None:
    _, core = _strip(shown)  # c (inv(S) @ C @ inv(S) - N * inv(S))
    inv = n.Inv(wrt)
    if not (isinstance(core, n.Sub) and isinstance(core.b, n.Mul) and core.b.b == inv and core.b.a.is_scalar
            and isinstance(core.a, n.MatMul) and core.a.b == inv and isinstance(core.a.a, n.MatMul)
            and core.a.a.a == inv and not core.a.a.b.has(wrt) and not core.b.a.has(wrt)):
        return None
    scatter, count = core.a.a.b, core.b.a
    solution = n.Div(scatter, count)
    lines = [(f"{to_text(shown)} = 0", "a stationary point: the gradient vanishes"),
             (f"{to_text(scatter)} - {to_text(count)} * {wrt.name} = 0",
              f"multiply by {wrt.name} on the left and on the right ({wrt.name} is invertible)"),
             (f"{wrt.name} = {to_text(solution)}", "the (biased) sample covariance")]

    def solve(values: dict, sizes: dict) -> list[np.ndarray]:
        return [np.asarray(evaluate(solution, values, sizes))]

    ok, detail = _check(gradient, wrt.name, instances, solve, rng)
    return Stationary(wrt.name, tuple(lines), f"the maximum-likelihood covariance is {to_text(solution)}", ok,
                      detail)


#: The rules, tried in order; the first that recognises the gradient's form derives the stationary points.
RULES = (_eigen, _normal_equations, _sample_mean, _sample_covariance)


def stationary_points(expr: n.Node, wrt: n.Var, shown: n.Node, gradient: n.Node, instances: list,
                      symmetric: frozenset[str], seed: int = 0) -> Stationary:
    """The stationary points of ``expr`` in ``wrt`` from its derived gradient (``shown``: its printed form)."""
    rng = np.random.default_rng(seed + 17)
    for rule in RULES:
        found = rule(expr, wrt, shown, gradient, instances, symmetric, rng)
        if found is not None:
            return found
    return Stationary(wrt.name, ((f"{to_text(shown)} = 0", "a stationary point: the gradient vanishes"),),
                      "no stationary-point rule is known for this form; solve the equation by other means "
                      "(nothing is claimed)", None)
