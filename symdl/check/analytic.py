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
from symdl.check.problem import Problem, non_finite_entries

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


@dataclass(frozen=True)
class Gradient:
    """One input's gradient from the user's function: its values (float64, flattened; None when they cannot
    be compared) and a finding to report next to the value check ('' for none: a dtype mismatch, say)."""

    values: np.ndarray | None
    finding: str = ""


@dataclass
class Analytic:
    """The user's gradient bound to a problem: ``products(v)`` gives ``v^T J_k`` per checked input."""

    problem: Problem
    function: Callable[..., object]
    kind: str
    names: tuple[str, ...] = ()
    calls: int = 0

    @classmethod
    def build(cls, problem: Problem, function: Callable[..., object], kind: GradKind = "auto",
              names: tuple[str, ...] = ()) -> Analytic:
        scalar = problem.size == 1 and problem.out_shape == ()
        return cls(problem, function, resolve_kind(function, len(problem.inputs), scalar, kind), tuple(names))

    def name(self, k: int) -> str:
        return self.names[k] if k < len(self.names) else f"input {k}"

    def products(self, v: np.ndarray) -> dict[int, Gradient]:
        """``v^T J_k`` flattened (float64) for each checked input, with what is wrong with it."""
        self.calls += 1
        p = self.problem
        v = np.asarray(v, dtype=p.out_dtype).reshape(p.out_shape)
        raw = self.function(*p.inputs) if self.kind == "grad" else self.function(v, *p.inputs)
        found = {k: _checked(self.name(k), g, p.inputs[k])
                 for k, g in zip(range(len(p.inputs)), _as_tuple(raw, len(p.inputs))) if k in p.wrt}
        if self.kind == "grad":  # a scalar f: the VJP is v times the gradient, judged in the gradient's own dtype
            scale = float(v)
            found = {k: Gradient(None if g.values is None else g.values * scale, g.finding) for k, g in found.items()}
        return found

    def jacobian(self) -> dict[int, Gradient]:
        """The whole Jacobian of each checked input, (outputs, input size), one VJP per output element."""
        p = self.problem
        rows: dict[int, list[np.ndarray]] = {k: [] for k in p.wrt}
        findings: dict[int, str] = {}
        failed: dict[int, str] = {}
        for i in range(p.size):
            v = np.zeros(p.size)
            v[i] = 1.0
            for k, gradient in self.products(v).items():
                if gradient.values is None:
                    failed.setdefault(k, gradient.finding)
                elif k not in failed:
                    rows[k].append(gradient.values)
                    findings.setdefault(k, gradient.finding)
        return {k: Gradient(None, failed[k]) if k in failed else Gradient(np.stack(rows[k]), findings.get(k, ""))
                for k in p.wrt}


def _as_tuple(raw: object, count: int) -> tuple[object, ...]:
    if isinstance(raw, (tuple, list)):
        if len(raw) != count:
            raise GradcheckInputError(f"gradcheck: the gradient function returned {len(raw)} arrays for {count} inputs")
        return tuple(raw)
    if count != 1:
        raise GradcheckInputError(f"gradcheck: the gradient function returned one array for {count} inputs; "
                                  "return one per input (None where there is no gradient)")
    return (raw,)


def _checked(name: str, gradient: object, x: np.ndarray) -> Gradient:
    """The gradient of input ``name`` as float64 with its findings.

    A gradient of another dtype (float64 for a float32 input, integers) is a
    finding *and* is compared: cast to the input's dtype first, as a framework
    storing it in the parameter would. Non-finite entries are reported directly
    (no difference can judge them).
    """
    if gradient is None:
        return Gradient(None, f"no gradient returned for {name}")
    g = np.asarray(gradient)
    if g.shape != x.shape:
        return Gradient(None, f"gradient of {name} has shape {g.shape}, the input has shape {x.shape}")
    if g.dtype.kind not in "fiub":
        return Gradient(None, f"gradient of {name} has dtype {g.dtype}, expected a real floating dtype")
    finding = ""
    if g.dtype != x.dtype:
        finding = (f"gradient of {name} has dtype {g.dtype}, the input has dtype {x.dtype} "
                   f"(its values are checked after casting to {x.dtype})")
        with np.errstate(all="ignore"):
            g = g.astype(x.dtype)
    if not np.all(np.isfinite(g)):
        return Gradient(None, f"gradient of {name} is not finite: {non_finite_entries(g, name)}")
    return Gradient(g.astype(np.float64).ravel(), finding)
