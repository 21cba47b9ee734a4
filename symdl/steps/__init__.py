"""Step-by-step derivations: a tree of rules (:mod:`.tree`, :mod:`.rules`), every step verified
(:mod:`.verify`), printed as text, LaTeX, Markdown, HTML or JSON (:mod:`.printers`).

``derive(expr, wrt=...)`` is the entry point (:mod:`.api`).
"""

from symdl.steps.api import DeriveError, derive
from symdl.steps.tree import Check, Derivation, Let, Part, Rewrite, Step

__all__ = ["derive", "DeriveError", "Derivation", "Part", "Step", "Rewrite", "Let", "Check"]
