"""The walk over a handout every renderer shares: sections in order, each block rendered by the format's
table, exercises numbered as they come and figure files kept beside the document."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from symdl.handouts.model import Handout

Out = TypeVar("Out")


@dataclass
class RenderState:
    """One rendering of one handout, as its blocks are rendered in order.

    Attributes:
        folder: where the document's own files go (``<topic>_files``), relative to the document.
        files: those files so far, by relative path.
        exercises: how many exercises have been numbered.
    """

    folder: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    exercises: int = 0

    @classmethod
    def of(cls, handout: Handout) -> RenderState:
        """A fresh state for rendering ``handout``."""
        return cls(f"{handout.topic}_files")

    def next_exercise(self) -> int:
        """The number of the exercise rendered now (1, 2, ... in the order of the handout)."""
        self.exercises += 1
        return self.exercises

    def add_file(self, name: str, data: str | bytes) -> str:
        """Keep ``data`` as the file ``name`` beside the document; its path relative to the document."""
        path = f"{self.folder}/{name}"
        self.files[path] = data
        return path


#: A format's rendering of one kind of block (``BLOCKS[type(block)](block, state)``).
BlockRenderer = Callable[[Any, RenderState], Out]


def rendered_sections(handout: Handout, blocks: Mapping[type, BlockRenderer[Out]], state: RenderState
                      ) -> Iterator[tuple[int, str, list[Out]]]:
    """Each section's number (from 1), title and blocks rendered by ``blocks[type(block)]``, in order."""
    for number, section in enumerate(handout.sections, 1):
        yield number, section.title, [blocks[type(b)](b, state) for b in section.blocks]
