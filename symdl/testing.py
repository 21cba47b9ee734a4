"""Gradient assertions for your own tests.

>>> import numpy as np
>>> from symdl.testing import assert_grad_close
>>> x = np.linspace(-2.0, 2.0, 5)
>>> report = assert_grad_close(lambda x: np.sum(np.tanh(x)), lambda x: 1 - np.tanh(x) ** 2, x)

On a wrong gradient the ``AssertionError`` says which input, where, by how
much and against what tolerance, then shows the full report. Pair it with
the hypothesis strategies of :mod:`symdl.strategies` (``well_conditioned_arrays``)
to check a gradient on many drawn inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from symdl.check import GradcheckReport, InputReport, gradcheck
from symdl.check.api import ModeName
from symdl.check.report import element_name

__all__ = ["assert_grad_close"]


def assert_grad_close(f: Callable[..., object], vjp: Callable[..., object], *inputs: np.ndarray,
                      mode: ModeName = "full", rtol: float | None = None, wrt: Sequence[int] | None = None,
                      seed: int = 0, names: Sequence[str] | None = None) -> GradcheckReport:
    """Assert that ``vjp`` (``vjp(v, *inputs)``, or ``grad(*inputs)`` for scalar ``f``) is the gradient of ``f``.

    Runs :func:`symdl.check.gradcheck` (same modes, tolerances and kink
    handling) and returns its report when the gradient matches.

    Raises:
        AssertionError: naming the worst entry of each failing input, with the
            analytic and numeric values, their difference and the allowed error.
    """
    report = gradcheck(f, inputs, vjp, mode=mode, rtol=rtol, wrt=wrt, seed=seed, names=names)
    if not report.passed:
        raise AssertionError("\n".join([*map(_headline, (r for r in report.inputs if not r.passed)),
                                        "", report.to_text()]))
    return report


def _headline(r: InputReport) -> str:
    if r.analytic is None or r.numeric is None:
        return f"gradient of {r.name} is wrong: {r.detail}"
    if r.detail:  # a finding beside the values (another dtype; f jumping: not differentiable)
        return f"gradient of {r.name} fails: {r.detail}"
    where = "" if r.worst_index is None else f" at {element_name(r.name, r.worst_index)}" + (
        f" (output {element_name('out', r.worst_output)})" if r.worst_output else "")
    return (f"gradient of {r.name} is wrong{where}: analytic {r.analytic:.6g} vs numeric {r.numeric:.6g}, "
            f"off by {abs(r.analytic - r.numeric):.3g} (allowed {r.allowed:.3g}); max abs error "
            f"{r.max_abs_error:.3g}, normwise relative error {r.max_rel_error:.3g}")
