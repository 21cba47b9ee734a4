"""Typed errors of the matrix-calculus engine (each one line, naming what was wrong)."""

from __future__ import annotations

from symdl.errors import SymdlError


class MatrixError(SymdlError, ValueError):
    """Base class: a matrix expression, its shapes or its derivative request is wrong."""


class MatrixSyntaxError(MatrixError):
    """The text is not in the matrix expression syntax (the rule broken and the column are named)."""


class ShapeError(MatrixError):
    """Operands do not conform (``X @ w`` with mismatched sizes), or a shape declaration is malformed."""


class UndeclaredNameError(MatrixError):
    """A name in the expression has no declared shape."""


class NotScalarError(MatrixError):
    """A gradient was asked of an expression that is not a scalar (a Jacobian may be offered instead)."""


class NoIdentityError(MatrixError):
    """No identity is known for a subexpression (the engine says which, rather than guess)."""


class VerificationError(MatrixError):
    """A derived result failed its finite-difference check: it is never printed as true."""
