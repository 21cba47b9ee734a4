"""Course handouts on the math behind deep learning, built from symdl's verified objects.

``build(topic, seed=0, solutions=True)`` returns a :class:`~symdl.handouts.model.Handout`;
:mod:`symdl.handouts.render` prints it as HTML, Markdown, LaTeX or a notebook and
:mod:`symdl.handouts.output` writes the files. ``TOPICS`` maps each CLI name to its topic
module (one per topic in :mod:`symdl.handouts.topics`), which defines ``TITLE``,
``SUMMARY`` and ``build(builder)``.

Imports SymPy, NumPy and matplotlib (the CLI imports this package only when it builds).
"""

from __future__ import annotations

from types import ModuleType

from symdl.handouts.builder import Builder
from symdl.handouts.model import Handout, HandoutError
from symdl.handouts.topics import TOPICS

__all__ = ["TOPICS", "Handout", "HandoutError", "build"]


def topic_module(topic: str) -> ModuleType:
    """The module of ``topic``, or :class:`HandoutError` naming the topics."""
    try:
        return TOPICS[topic]
    except KeyError:
        raise HandoutError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)} or all") from None


def build(topic: str, *, seed: int = 0, solutions: bool = True) -> Handout:
    """Build one topic's handout: run its examples, check its formulas and answers."""
    module = topic_module(topic)
    builder = Builder(topic, module.TITLE, module.SUMMARY, seed=seed, solutions=solutions)
    module.build(builder)
    return builder.handout()
