"""Gradient checking against finite differences: :func:`gradcheck`, :func:`gradgradcheck`.

>>> import numpy as np
>>> from symdl.check import gradcheck
>>> report = gradcheck(lambda x: np.sum(np.tanh(x)), np.linspace(-2, 2, 5), lambda x: 1 - np.tanh(x) ** 2)
>>> report.passed
True

Modes, step sizes and tolerances: :mod:`symdl.check.modes`,
:mod:`symdl.check.tolerances`; the user guide is ``docs/gradcheck.md``.
This package imports NumPy only.
"""

from __future__ import annotations

from symdl.check.api import gradcheck, gradgradcheck
from symdl.check.errors import ExpressionError, GradcheckInputError
from symdl.check.modes import MODES
from symdl.check.report import GradcheckReport, InputReport, NonDifferentiablePoint

__all__ = ["gradcheck", "gradgradcheck", "GradcheckReport", "InputReport", "NonDifferentiablePoint",
           "GradcheckInputError", "ExpressionError", "MODES"]
