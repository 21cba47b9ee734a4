"""One module per handout topic, in the order of the article the project grew from.

Each module defines ``TITLE``, ``SUMMARY`` and ``build(builder)``, which adds the
handout's goals, sections, verified formulas, examples, plots and exercises
through a :class:`~symdl.handouts.builder.Builder`.
"""

from __future__ import annotations

from types import ModuleType

from symdl.handouts.topics import (activations, backpropagation, calculus, convolution, gradient_descent,
                                   linear_algebra, optimizers, probability)

#: Topic name (as the CLI spells it) -> module, in reading order.
TOPICS: dict[str, ModuleType] = {
    "linear-algebra": linear_algebra,
    "calculus": calculus,
    "probability": probability,
    "gradient-descent": gradient_descent,
    "backpropagation": backpropagation,
    "activations": activations,
    "convolution": convolution,
    "optimizers": optimizers,
}
