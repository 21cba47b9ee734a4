"""One renderer per format: ``render(handout) -> {relative path: text or bytes}``.

``RENDERERS`` maps a format name (as ``symdl handout --format`` spells it) to its renderer. A renderer
returns every file it needs (the HTML is one self-contained file; Markdown and LaTeX put their figures
in ``<topic>_files/``), and never writes: :mod:`symdl.handouts.output` writes them atomically.
"""

from __future__ import annotations

from collections.abc import Callable

from symdl.handouts.model import Handout
from symdl.handouts.render import html, latex, markdown, notebook

Files = dict[str, str | bytes]

RENDERERS: dict[str, Callable[[Handout], Files]] = {
    "html": html.render,
    "md": markdown.render,
    "tex": latex.render,
    "ipynb": notebook.render,
}

__all__ = ["Files", "RENDERERS"]
