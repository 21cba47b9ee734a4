"""Matrix calculus in steps: a safe parser for NumPy-syntax matrix expressions with declared shapes,
derivation by named identities (reverse mode for gradients, forward for Jacobians), simplification, and a
finite-difference check of every step and result at random sizes. Entry point: :func:`derive_matrix`.
"""

from __future__ import annotations

from symdl.steps.matrix.engine import Check, MatrixDerivation, MatrixResult, MatrixStep, derive_matrix
from symdl.steps.matrix.errors import (MatrixError, MatrixSyntaxError, NoIdentityError, NotScalarError, ShapeError,
                                       UndeclaredNameError, VerificationError)
from symdl.steps.matrix.numeric import evaluate
from symdl.steps.matrix.parser import parse_matrix, parse_shapes

__all__ = ["derive_matrix", "MatrixDerivation", "MatrixResult", "MatrixStep", "Check", "parse_matrix",
           "parse_shapes", "evaluate", "MatrixError", "MatrixSyntaxError", "NoIdentityError", "NotScalarError",
           "ShapeError", "UndeclaredNameError", "VerificationError"]
