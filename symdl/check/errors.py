"""Typed errors of the gradient checker and the expression parser (NumPy only)."""

from __future__ import annotations

from symdl.errors import SymdlError


class GradcheckInputError(SymdlError, ValueError):
    """A function, gradient or input handed to the checker breaks a rule (named in the message)."""


class ExpressionError(SymdlError, ValueError):
    """An expression string is not in the safe subset the parser accepts (the rule is named)."""
