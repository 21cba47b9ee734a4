"""LaTeX to MathML for self-contained HTML (handouts, step-by-step derivations): no network, no JavaScript.

Browsers render MathML Core natively, so a page whose math is MathML needs no
KaTeX or MathJax download. The converter is latex2mathml (pure Python); this
module mends the constructs it gets wrong before converting (DESIGN.md,
measured on every derivation block):

* ``aligned`` prints as one line with a literal ``&`` per row: rewritten to
  ``split``, which it lays out as a table with the same right/left columns;
* ``gathered`` is unsupported: rewritten to ``matrix`` (one centred column);
* ``\\arg`` stays raw: rewritten to ``\\operatorname{arg}``;
* ``\\operatorname{relu}`` becomes an operator, ``<mo>relu</mo>``, which MathML spaces
  like a binary operator ("relu ( u )"): made an identifier, ``<mi>relu</mi>``, as
  ``\\sin`` already is, so a named function sits against its bracket.

API:

* :func:`latex_to_mathml` converts one formula and raises :class:`MathMLError`
  when the result still holds LaTeX (an unknown command) or a stray alignment
  ``&``, so a bad formula fails the build instead of reaching a reader;
* :func:`unconverted` scans a whole HTML page for the same faults (tests run it
  on every generated page).
"""

from __future__ import annotations

import re

from symdl.errors import SymdlError

__all__ = ["MathMLError", "latex_to_mathml", "unconverted"]


class MathMLError(SymdlError, ValueError):
    """A formula the converter could not turn into MathML completely."""


#: Source rewrites applied before conversion, in order: (pattern, replacement).
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\(begin|end)\{aligned\}"), r"\\\1{split}"),
    (re.compile(r"\\(begin|end)\{gathered\}"), r"\\\1{matrix}"),
    (re.compile(r"\\arg(?![A-Za-z])"), r"\\operatorname{arg}"),
)

#: Elements whose text is not math a reader sees as such (code, pictures, styles).
_OPAQUE = re.compile(r"<(svg|pre|code|script|style|annotation)\b.*?</\1>", re.DOTALL | re.IGNORECASE)
#: A LaTeX command name left in text (``\frac``), outside the opaque elements.
_COMMAND = re.compile(r"\\[A-Za-z]+")
#: An alignment ``&`` that became a token (``<mi>&</mi>``, ``<mo>&amp;</mo>``), or any bare ``&``
#: that starts no character reference.
_STRAY_AMPERSAND = re.compile(r"<(m[ionst]|mtext)\b[^>]*>\s*&(amp;)?\s*</\1>"
                              r"|&(?!(?:[A-Za-z][A-Za-z0-9]*|#\d+|#x[0-9A-Fa-f]+);)")


#: A word the converter made an operator (``\\operatorname``); bare ``<mo>`` only (``\\lim`` carries attributes).
_WORD_OPERATOR = re.compile(r"<mo>([A-Za-z]{2,})</mo>")


def _prepare(latex: str) -> str:
    for pattern, replacement in _REWRITES:
        latex = pattern.sub(replacement, latex)
    return latex


def latex_to_mathml(latex: str, display: bool = False) -> str:
    """One ``<math>`` element for ``latex``.

    Args:
        latex: a formula body (no ``$`` delimiters).
        display: a block formula (``display="block"``) rather than inline.

    Raises:
        MathMLError: naming the formula and what was left unconverted.
    """
    from latex2mathml.converter import convert

    try:
        mathml = convert(_prepare(latex), display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises bare exceptions of its own on bad input
        raise MathMLError(f"cannot convert {latex!r} to MathML: {type(error).__name__}: {error}") from None
    mathml = _WORD_OPERATOR.sub(r"<mi>\1</mi>", mathml)
    faults = unconverted(mathml)
    if faults:
        raise MathMLError(f"MathML of {latex!r} still holds {', '.join(sorted(set(faults)))}")
    return mathml


def unconverted(html: str) -> list[str]:
    """The LaTeX commands and stray ``&`` left in ``html``'s text (empty when clean).

    Code, SVG, script and style elements are skipped: a backslash there is not math.
    """
    text = _OPAQUE.sub("", html)
    found = _COMMAND.findall(text)
    found += ["&" for _ in _STRAY_AMPERSAND.finditer(text)]
    return found
