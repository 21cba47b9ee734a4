"""Printers of derivations, one module per format; importing this package registers them all."""

from symdl.steps.printers import json, latex, markdown, text  # noqa: F401 - registration

try:  # HTML needs the MathML converter (symdl.printing.mathml)
    from symdl.steps.printers import html  # noqa: F401
except ImportError:  # pragma: no cover - only while the converter is absent
    pass
