"""The handout model: a handout is a title, learning goals and sections of blocks; renderers print it.

Blocks are plain data. Every piece of math is a :class:`Formula`, made only by
:mod:`symdl.handouts.verified` from an object symdl checked (a catalog entry, a
derived fact, a proven identity); prose is text without math markup. Code
blocks hold the Python that computed their output during the build, so the
notebook renderer can hand a reader the same cells to run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symdl.errors import SymdlError

__all__ = ["Block", "Code", "Equation", "Exercise", "Figure", "Formula", "Handout", "HandoutError", "Prose",
           "Section", "Table"]


class HandoutError(SymdlError, ValueError):
    """A handout cannot be built: an unknown topic, a formula that failed its check, an example that failed."""


@dataclass(frozen=True)
class Formula:
    """One verified piece of math.

    Attributes:
        key: a short unique name within the handout (``sigmoid.gradient``).
        latex: the formula's LaTeX, printed from the SymPy object (or the catalog's LaTeX of a checked entry).
        source: where it comes from (``catalog op sigmoid``, ``fact gd_quadratic_hessian``, ``handout claim``).
        method: how it was verified (``symbolic``, ``numeric (50 digits, 40 points)``, ...).
    """

    key: str
    latex: str
    source: str
    method: str


@dataclass(frozen=True)
class Prose:
    """A paragraph of plain text (no markup; renderers escape it)."""

    text: str


@dataclass(frozen=True)
class Equation:
    """A displayed formula with an optional lead-in sentence."""

    formula: Formula
    caption: str = ""


@dataclass(frozen=True)
class Code:
    """Python run during the build (the notebook runs it again) and what it printed."""

    source: str
    output: str
    title: str = ""


@dataclass(frozen=True)
class Figure:
    """A plot: the code that drew it, its caption and its renderings."""

    source: str
    caption: str
    svg: str
    pdf: bytes
    name: str


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Exercise:
    """A question with its numbers drawn from the student's seed, and its verified answer."""

    question: str
    answer: str
    check: str  # how the answer was verified


Block = Prose | Equation | Code | Figure | Table | Exercise


@dataclass
class Section:
    """A titled run of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Handout:
    """One topic's handout, built for one seed.

    Attributes:
        topic: the CLI name (``linear-algebra``).
        title: the heading.
        summary: one line for the index page.
        goals: what a reader can do afterwards.
        sections: the body, in order.
        setup: code run before every example (the notebook's first cell).
        seed: the seed the exercises' numbers were drawn with.
        solutions: whether the answer key is included.
    """

    topic: str
    title: str
    summary: str
    goals: list[str]
    sections: list[Section]
    setup: str
    seed: int
    solutions: bool

    @property
    def formulas(self) -> list[Formula]:
        """Every formula of the handout, once each, in order of first appearance."""
        seen: dict[str, Formula] = {}
        for section in self.sections:
            for block in section.blocks:
                if isinstance(block, Equation):
                    seen.setdefault(block.formula.key, block.formula)
        return list(seen.values())

    @property
    def exercises(self) -> list[Exercise]:
        """The exercises, in order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, Exercise)]

    @property
    def answers(self) -> list[Exercise]:
        """The exercises the answer key lists: every one with ``solutions``, else none."""
        return self.exercises if self.solutions else []
