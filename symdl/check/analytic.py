"""The user's side: a VJP (or, for scalar ``f``, a plain gradient) as Jacobian rows.

A VJP ``vjp(v, *inputs)`` returns :math:`v^T J_k` for every input ``k`` (one
array per input, or a single array when there is one input; None for inputs
without a gradient). A gradient ``grad(*inputs)`` of a scalar ``f`` is the VJP
with ``v = 1``. Which one was given is read from how many positional
arguments the function takes (``kind="auto"``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from symdl.check.errors import GradcheckInputError
from symdl.check.problem import Problem

GradKind = Literal["auto", "vjp", "grad"]


def _accepts(function: Callable[..., object], count: int) -> bool:
    if isinstance(function, np.ufunc):  # a further positional argument would be its ``out``
        return count == function.nin
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # builtins without a signature: assume it fits
        return True
    return True


def resolve_kind(function: Callable[..., object], inputs: int, scalar: bool, kind: GradKind) -> str:
    """``"vjp"`` or ``"grad"``: what ``function`` is, from ``kind`` or its arity."""
    if kind != "auto":
        if kind == "grad" and not scalar:
            raise GradcheckInputError("gradcheck: a plain gradient needs a scalar f; give a VJP for array outputs")
        return kind
    if scalar and not _accepts(function, inputs + 1) and _accepts(function, inputs):
        return "grad"
    if not _accepts(function, inputs + 1):
        raise GradcheckInputError(
            f"gradcheck: the gradient function must take (v, *inputs) ({inputs + 1} arguments) or, for a scalar f, "
            f"(*inputs) ({inputs})")
    return "vjp"


@dataclass
class Analytic:
    """The user's gradient bound to a problem: ``products(v)`` gives ``v^T J_k`` per checked input."""

    problem: Problem
    function: Callable[..., object]
    kind: str
    calls: int = 0

    @classmethod
    def build(cls, problem: Problem, function: Callable[..., object], kind: GradKind = "auto") -> Analytic:
        scalar = problem.size == 1 and problem.out_shape == ()
        return cls(problem, function, resolve_kind(function, len(problem.inputs), scalar, kind))

    def products(self, v: np.ndarray) -> dict[int, np.ndarray | str]:
        """``v^T J_k`` flattened (float64) for each checked input, or a message saying what is wrong."""
        self.calls += 1
        p = self.problem
        v = np.asarray(v, dtype=p.out_dtype).reshape(p.out_shape)
        raw = self.function(*p.inputs) if self.kind == "grad" else self.function(v, *p.inputs)
        if self.kind == "grad":
            raw = _as_tuple(raw, len(p.inputs))
            raw = tuple(None if r is None else np.asarray(r) * v for r in raw)
        return {k: _checked(k, g, p.inputs[k]) for k, g in zip(range(len(p.inputs)), _as_tuple(raw, len(p.inputs)))
                if k in p.wrt}

    def jacobian(self) -> dict[int, np.ndarray | str]:
        """The whole Jacobian of each checked input, (outputs, input size), one VJP per output element."""
        p = self.problem
        rows: dict[int, list[np.ndarray]] = {k: [] for k in p.wrt}
        problems: dict[int, str] = {}
        for i in range(p.size):
            v = np.zeros(p.size)
            v[i] = 1.0
            for k, value in self.products(v).items():
                if isinstance(value, str):
                    problems[k] = value
                elif k not in problems:
                    rows[k].append(value)
        return {k: problems.get(k) or np.stack(rows[k]) for k in p.wrt}


def _as_tuple(raw: object, count: int) -> tuple[object, ...]:
    if isinstance(raw, (tuple, list)):
        if len(raw) != count:
            raise GradcheckInputError(f"gradcheck: the gradient function returned {len(raw)} arrays for {count} inputs")
        return tuple(raw)
    if count != 1:
        raise GradcheckInputError(f"gradcheck: the gradient function returned one array for {count} inputs; "
                                  "return one per input (None where there is no gradient)")
    return (raw,)


def _checked(k: int, gradient: object, x: np.ndarray) -> np.ndarray | str:
    """The gradient of input ``k`` as float64, or why it cannot be compared."""
    if gradient is None:
        return f"no gradient returned for input {k}"
    g = np.asarray(gradient)
    if g.shape != x.shape:
        return f"gradient of input {k} has shape {g.shape}, the input has shape {x.shape}"
    if g.dtype.kind not in "f":
        return f"gradient of input {k} has dtype {g.dtype}, expected a real floating dtype"
    if g.dtype != x.dtype:
        return f"gradient of input {k} has dtype {g.dtype}, the input has dtype {x.dtype}"
    return g.astype(np.float64).ravel()

