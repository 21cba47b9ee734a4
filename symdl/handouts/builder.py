"""Building a handout: topics call a :class:`Builder`, which runs their code and collects the blocks.

Worked examples and plots are Python source run here, in one namespace per
handout that starts with :data:`SETUP` (the notebook's first cell): the numbers
a reader sees are what that code printed, and the notebook holds the same
cells. An example that raises (an ``assert`` of a finite-difference check, say)
fails the build with :class:`~symdl.handouts.model.HandoutError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from symdl.handouts.model import (Block, Code, Equation, Exercise, Figure, Formula, Handout, HandoutError, Prose,
                                  Section, Table)

#: The first cell of every handout's notebook, run before its examples.
SETUP = '''\
import numpy as np
import matplotlib.pyplot as plt
import symdl.kernels as K
from symdl.check import gradcheck

np.set_printoptions(precision=4, suppress=True)


def fd_check(f, inputs, vjp):
    """Check a gradient against central finite differences (symdl.check.gradcheck); print the worst error."""
    report = gradcheck(f, inputs, vjp)
    assert report.passed, report
    worst = max(i.max_rel_error for i in report.inputs)
    print(f"finite differences agree: max relative error {worst:.1e}")
'''


def _figure_files(fig: Any) -> tuple[str, bytes]:  # noqa: ANN401 - a matplotlib Figure
    """The figure as inline SVG text (no XML prolog) and as PDF bytes, both without dates."""
    svg, pdf = io.StringIO(), io.BytesIO()
    fig.savefig(svg, format="svg", metadata={"Date": None}, bbox_inches="tight")
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None}, bbox_inches="tight")
    text = svg.getvalue()
    return text[text.index("<svg"):], pdf.getvalue()


class Builder:
    """Collects one handout's blocks; topics call its methods in reading order."""

    def __init__(self, topic: str, title: str, summary: str, *, seed: int, solutions: bool) -> None:
        import matplotlib

        matplotlib.use("Agg")  # no display: the build only saves figures
        matplotlib.rcParams["svg.hashsalt"] = f"symdl-{topic}"  # stable element ids between builds
        self.topic, self.title, self.summary = topic, title, summary
        self.seed, self.solutions = seed, solutions
        self.rng = np.random.default_rng(seed)
        self.goals: list[str] = []
        self.sections: list[Section] = []
        self.namespace: dict[str, Any] = {"__name__": f"symdl_handout_{topic.replace('-', '_')}"}
        self._figures = 0
        self.run(SETUP, show=False)

    # -- structure
    def goal(self, *goals: str) -> None:
        """Learning goals (what the reader can do afterwards)."""
        self.goals.extend(goals)

    def section(self, title: str) -> None:
        """Start a section."""
        self.sections.append(Section(title))

    def _add(self, block: Block) -> None:
        if not self.sections:
            raise HandoutError(f"{self.topic}: a block before the first section")
        self.sections[-1].blocks.append(block)

    def prose(self, *paragraphs: str) -> None:
        """Paragraphs of plain text (whitespace normalised)."""
        for text in paragraphs:
            self._add(Prose(" ".join(text.split())))

    def equation(self, formula: Formula, caption: str = "") -> None:
        """A displayed, verified formula."""
        if not isinstance(formula, Formula):
            raise HandoutError(f"{self.topic}: equations must be verified Formula objects, got {type(formula)}")
        self._add(Equation(formula, caption))

    def table(self, header: tuple[str, ...], rows: list[tuple[str, ...]], caption: str = "") -> None:
        """A table of formatted cells."""
        self._add(Table(tuple(header), tuple(tuple(r) for r in rows), caption))

    # -- code
    def run(self, source: str, title: str = "", *, show: bool = True) -> str:
        """Run ``source`` in the handout's namespace; add it (with what it printed) as a code block."""
        source = textwrap.dedent(source).strip("\n") + "\n"
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(source, f"<{self.topic}: {title or 'setup'}>", "exec"), self.namespace)  # noqa: S102
        except Exception as error:  # the handout's own code: any failure is a build failure, with its place
            raise HandoutError(f"{self.topic}: example {title or 'setup'!r} failed: "
                               f"{type(error).__name__}: {error}") from error
        if show:
            self._add(Code(source, out.getvalue(), title))
        return out.getvalue()

    def value(self, name: str) -> Any:  # noqa: ANN401 - whatever the example computed
        """A variable an example computed."""
        return self.namespace[name]

    def plot(self, source: str, caption: str) -> None:
        """Run plotting code that leaves a matplotlib figure in ``fig``; add it as a figure."""
        import matplotlib.pyplot as plt

        self.namespace.pop("fig", None)
        self.run(source, caption, show=False)
        fig = self.namespace.get("fig")
        if fig is None:
            raise HandoutError(f"{self.topic}: plot {caption!r} left no figure in `fig`")
        svg, pdf = _figure_files(fig)
        plt.close(fig)
        self._figures += 1
        self._add(Figure(textwrap.dedent(source).strip("\n") + "\n", caption, svg, pdf,
                         f"{self.topic}-figure-{self._figures}"))

    # -- exercises
    def exercise(self, question: str, answer: float, reference: float | Callable[[], float], *, how: str,
                 digits: int = 4, rtol: float = 1e-9) -> None:
        """An exercise whose answer (computed by symdl) agrees with an independent ``reference``.

        Args:
            question: the question, with the student's numbers in it.
            answer: the answer symdl computed, printed to ``digits`` significant digits.
            reference: the same quantity computed independently (mpmath, SymPy, exact fractions, counting),
                or a callable returning it.
            how: how the reference was computed (goes into the answer key).

        Raises:
            HandoutError: the answer and the reference differ by more than ``rtol``.
        """
        expected = float(reference() if callable(reference) else reference)
        if not math.isclose(float(answer), expected, rel_tol=rtol, abs_tol=rtol):
            raise HandoutError(f"{self.topic}: exercise answer {answer!r} disagrees with its reference "
                               f"{expected!r} ({how})")
        self._add(Exercise(" ".join(question.split()), f"{float(answer):.{digits}g}", how))

    def handout(self) -> Handout:
        """The finished handout."""
        return Handout(self.topic, self.title, self.summary, list(self.goals), self.sections, SETUP, self.seed,
                       self.solutions)
