"""Proofs of the catalog's closed forms: one bounded prover, one proof cache, one module per family.

* :mod:`~symdl.proofs.proof`: is ``lhs == rhs``? Symbolically within a CPU-time limit (enforced in
  every thread and process), else a 50-digit numeric identity;
* :mod:`~symdl.proofs.cache`: proofs kept on disk, keyed by everything they depend on;
* :mod:`~symdl.proofs.ops`: activations and losses (elementwise, row-wise, class losses);
* :mod:`~symdl.proofs.layers`: layers, on symbolic instances of their index-level definitions.

The optimizers' rules are checked by evaluating them (:mod:`symdl.verify.rule_eval`), and the
facts about them carry their own derivations (:mod:`symdl.catalog.facts`).
"""

from __future__ import annotations

from symdl.proofs import cache, layers, ops, proof

__all__ = ["cache", "layers", "ops", "proof"]
