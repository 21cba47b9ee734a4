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


class UsageError(SymdlError):
    """Bad command-line usage: the ``symdl`` command reports it on one line, exit code 2.

    Defined here rather than in ``symdl.cli`` so that it is one class however the
    CLI module is run (``python -m symdl.cli`` makes that module ``__main__``).
    """
