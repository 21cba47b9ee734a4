"""Terminal output of graphs and matrix derivations with rich: tables and lines, coloured on a terminal.

The same renderables give both outputs, as for scalar derivations (:func:`symdl.steps.printers.text.rich_text`):
:func:`to_text` renders them without colour at a fixed width (files, pipes, tests, docs/derive.md), and
:func:`print_rich` prints them coloured on a terminal. The marks are coloured as the scalar printer colours
them: ``verified (...)`` and ``agrees`` green, ``NOT VERIFIED``, ``FAILED``, ``DISAGREES`` bold red.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["WIDTH", "table", "line", "heading", "to_text", "print_rich"]

#: The width of the uncoloured text (deterministic: the output does not depend on the terminal).
WIDTH = 120

_GOOD = r"verified(?: \([a-z ]+\))?|proven(?: \([a-z]+\))?|agrees|\bok\b|every step verified"
_BAD = r"NOT VERIFIED.*|NOT proven|FAILED|DISAGREES|NOT a subgradient"


def _styled(value: object) -> Text:
    styled = Text(str(value))
    styled.highlight_regex(_GOOD, "green")
    styled.highlight_regex(_BAD, "bold red")
    return styled


def table(head: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None,
          right: Sequence[int] = ()) -> Table:
    """A table with a header row; ``right``: the columns (by index) aligned right (numbers)."""
    result = Table(title=title, title_justify="left", box=box.ROUNDED, show_lines=False, pad_edge=True,
                   title_style="bold")
    for i, name in enumerate(head):
        result.add_column(name, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        result.add_row(*(_styled(cell) for cell in row))
    return result


def line(text: str = "") -> Text:
    """A line of text (never wrapped), its marks coloured."""
    return _styled(text)


def heading(text: str) -> Text:
    """A bold line (a heading, as the scalar printer's titles)."""
    return Text(text, style="bold")


def to_text(renderables: Iterable[RenderableType]) -> str:
    """The renderables as plain text, :data:`WIDTH` columns, trailing spaces removed."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=WIDTH, color_system=None, force_terminal=False, highlight=False,
                      emoji=False, markup=False, legacy_windows=False)
    for item in renderables:
        console.print(item, soft_wrap=isinstance(item, Text))
    return "\n".join(text.rstrip() for text in buffer.getvalue().splitlines()) + "\n"


def print_rich(renderables: Iterable[RenderableType]) -> None:
    """The renderables printed on the terminal, coloured."""
    console = Console(highlight=False, emoji=False, markup=False)
    for item in renderables:
        console.print(item, soft_wrap=isinstance(item, Text))
