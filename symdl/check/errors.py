"""Typed errors of the gradient checker and the expression parser (NumPy only)."""

from __future__ import annotations

from symdl.errors import SymdlError


class GradcheckInputError(SymdlError, ValueError):
    """A function, gradient or input handed to the checker breaks a rule (named in the message)."""


class ExpressionError(SymdlError, ValueError):
    """An expression string is not in the safe subset the parser accepts (the rule is named)."""


class JacobianTooLargeError(GradcheckInputError):
    """The entrywise modes would build a Jacobian past the size limit (the message names the way out)."""

    def __init__(self, outputs: int, elements: int, limit: int) -> None:
        self.outputs, self.elements, self.limit = outputs, elements, limit
        super().__init__(f"gradcheck: the full Jacobian has {outputs} x {elements} = {outputs * elements:.3g} entries "
                         f"(limit {limit:.3g}); use mode='fast', check fewer inputs (wrt) or reduce f to a scalar")
