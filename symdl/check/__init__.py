"""Gradient checking against finite differences: :func:`gradcheck`, :func:`gradgradcheck`.

>>> import numpy as np
>>> from symdl.check import gradcheck
>>> report = gradcheck(lambda x: np.sum(np.tanh(x)), np.linspace(-2, 2, 5), lambda x: 1 - np.tanh(x) ** 2)
>>> report.passed
True

Hand-written layers (an object with forward/backward and parameter dicts, or a
forward/backward pair passing a cache): :mod:`symdl.check.layers`.
Modes, step sizes and tolerances: :mod:`symdl.check.modes`,
:mod:`symdl.check.tolerances`; the user guide is ``docs/gradcheck.md``.
This package imports NumPy only.
"""

from __future__ import annotations

from symdl.check.api import gradcheck, gradgradcheck
from symdl.check.errors import ExpressionError, GradcheckInputError, JacobianTooLargeError
from symdl.check.layers import check_cache_layer, check_layer
from symdl.check.modes import MODES
from symdl.check.report import GradcheckReport, InputReport, NonDifferentiablePoint

__all__ = ["gradcheck", "gradgradcheck", "check_layer", "check_cache_layer", "GradcheckReport", "InputReport",
           "NonDifferentiablePoint", "GradcheckInputError", "JacobianTooLargeError", "ExpressionError", "MODES"]
