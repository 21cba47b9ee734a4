"""Typed errors raised by symdl (no SymPy, safe to import from the kernels)."""

from __future__ import annotations


class SymdlError(Exception):
    """Base class of every error symdl raises on purpose."""


class OpInputError(SymdlError, ValueError):
    """An array given to an op has the wrong shape, rank or values."""


class OpTypeError(SymdlError, TypeError):
    """An array given to an op has a non-numeric or otherwise wrong dtype."""


class OpParameterError(SymdlError, ValueError):
    """A keyword parameter of an op is unknown or outside its domain."""


class UnknownOpError(SymdlError, KeyError):
    """No op of that name is in the catalog."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""
