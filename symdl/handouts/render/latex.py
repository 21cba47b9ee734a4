"""A LaTeX article per handout (pdflatex; base and recommended TeX Live packages only).

Figures are PDF files in ``<topic>_files/``. Prose may use the few non-ASCII characters of
:data:`UNICODE`, declared in the preamble so that pdflatex accepts them.
"""

from __future__ import annotations

import textwrap

from symdl.handouts.model import Code, Equation, Exercise, Figure, Handout, Prose, Table
from symdl.handouts.render.walk import BlockRenderer, RenderState, rendered_sections
from symdl.steps.printers.latex import escape_text

#: Non-ASCII characters prose may use, and their LaTeX.
UNICODE: dict[str, str] = {
    "σ": r"\ensuremath{\sigma}", "λ": r"\ensuremath{\lambda}", "η": r"\ensuremath{\eta}",
    "θ": r"\ensuremath{\theta}", "μ": r"\ensuremath{\mu}", "ε": r"\ensuremath{\epsilon}",
    "β": r"\ensuremath{\beta}", "α": r"\ensuremath{\alpha}", "γ": r"\ensuremath{\gamma}", "π": r"\ensuremath{\pi}",
    "ρ": r"\ensuremath{\rho}", "Σ": r"\ensuremath{\Sigma}", "∞": r"\ensuremath{\infty}",
    "⊙": r"\ensuremath{\odot}", "·": r"\ensuremath{\cdot}", "√": r"\ensuremath{\surd}", "ℓ": r"\ensuremath{\ell}",
    "ȳ": r"\ensuremath{\bar y}", "∫": r"\ensuremath{\int}", "‖": r"\ensuremath{\|}", "∇": r"\ensuremath{\nabla}",
    "≤": r"\ensuremath{\le}", "≥": r"\ensuremath{\ge}", "×": r"\ensuremath{\times}", "−": r"\ensuremath{-}",
    "≈": r"\ensuremath{\approx}", "→": r"\ensuremath{\to}", "∂": r"\ensuremath{\partial}", "²": r"\ensuremath{^2}",
    "⊤": r"\ensuremath{^\top}", "—": "---", "–": "--", "’": "'", "“": "``", "”": "''"
}

def escape(text: str) -> str:
    """Plain text as LaTeX (the step printers' escape, :func:`symdl.steps.printers.latex.escape_text`)."""
    return escape_text(text)


def _preamble(title: str) -> str:
    declared = "".join(rf"\DeclareUnicodeCharacter{{{ord(c):04X}}}{{{v}}}" + "\n" for c, v in UNICODE.items())
    return (r"\documentclass[11pt,a4paper]{article}" "\n"
            r"\usepackage[utf8]{inputenc}" "\n"
            r"\usepackage{amsmath,amssymb}\usepackage{graphicx}\usepackage[margin=2cm]{geometry}" "\n"
            r"\usepackage{longtable}\usepackage{array}\usepackage{alltt}" "\n"
            # a line of prose with a long unbreakable word (symdl.optim.SGD) may stretch its spaces, never overflow
            r"\setlength{\emergencystretch}{3em}" "\n"
            r"\usepackage[hidelinks]{hyperref}" "\n"
            + declared + r"\setlength{\parindent}{0pt}\setlength{\parskip}{0.5em}" "\n"
            # a displayed formula wider than the text, or taller than 90% of a page (a long derivation: an
            # aligned block cannot break across pages), is scaled down to fit (never up; resizebox* scales the
            # total height, depth included)
            r"\newsavebox{\fitbox}\newlength{\fitheight}\newcommand{\fitmath}[1]{\sbox{\fitbox}{$\displaystyle #1$}"
            r"\ifdim\wd\fitbox>\linewidth\sbox{\fitbox}{\resizebox{\linewidth}{!}{\usebox{\fitbox}}}\fi"
            r"\setlength{\fitheight}{\ht\fitbox}\addtolength{\fitheight}{\dp\fitbox}"
            r"\ifdim\fitheight>0.9\textheight\sbox{\fitbox}{\resizebox*{!}{0.9\textheight}{\usebox{\fitbox}}}\fi"
            r"\usebox{\fitbox}}" "\n"
            # a derivation (an aligned block) as wide as the text at most is set as align*, which may break
            # across pages: a long one reads at full size instead of scaled down to one page
            r"\allowdisplaybreaks\newcommand{\fitalign}[1]{\sbox{\fitbox}{$\displaystyle\begin{aligned}#1\end{aligned}$}"
            r"\ifdim\wd\fitbox>\linewidth\begin{center}\fitmath{\begin{aligned}#1\end{aligned}}\end{center}"
            r"\else\begin{align*}#1\end{align*}\fi}" "\n"
            rf"\title{{{escape(title)}}}\date{{}}" "\n")


def _prose(block: Prose, state: RenderState) -> str:
    return escape(block.text)


def _equation(block: Equation, state: RenderState) -> str:
    caption = f"{escape(block.caption)}\n" if block.caption else ""
    return caption + _display(block.formula.latex)


#: A derivation: one aligned block (the step printers' and the matrix engine's layout).
_ALIGNED = (r"\begin{aligned}", r"\end{aligned}")


def _display(latex: str) -> str:
    """A centred displayed formula, scaled down when wider than the text (``\\fitmath``); a derivation
    (one aligned block) that fits the width is set as ``align*`` instead, breaking across pages
    (``\\fitalign``)."""
    begin, end = _ALIGNED
    body = latex.strip()[len(begin):-len(end)] if latex.strip().startswith(begin) and latex.strip().endswith(end) else None
    if body is not None and begin not in body:
        return r"\fitalign{" + body + "}"
    return r"\begin{center}\fitmath{" + latex + r"}\end{center}"


#: Columns of code that fit the text width (footnotesize typewriter, 11pt A4 with 2 cm margins: 101 fit).
CODE_COLUMNS = 100
_ALLTT = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}"}


def _code_line(line: str) -> list[str]:
    """One code line as ``alltt`` rows: a line wider than :data:`CODE_COLUMNS` is broken at spaces, each
    broken row ending in a hook arrow and the continuation indented four more columns (the PDF shows the
    code whole; the notebook keeps the line as written)."""
    indent = line[:len(line) - len(line.lstrip(" "))]
    if len(line) <= CODE_COLUMNS:
        return ["".join(_ALLTT.get(c, c) for c in line)]
    pieces = textwrap.wrap(line.strip(), width=CODE_COLUMNS - len(indent) - 6, break_on_hyphens=False,
                           drop_whitespace=True)
    rows = [indent + piece if i == 0 else indent + "    " + piece for i, piece in enumerate(pieces)]
    escaped = ["".join(_ALLTT.get(c, c) for c in row) for row in rows]
    return [row + r" \ensuremath{\hookleftarrow}" for row in escaped[:-1]] + escaped[-1:]


def _verbatim(text: str) -> str:
    """Code or printed output, set as typed (``alltt``: verbatim but for ``\\ { }``), long lines wrapped."""
    rows = [row for line in text.rstrip().splitlines() for row in _code_line(line)]
    return "\\begin{alltt}\n" + "\n".join(rows) + "\n\\end{alltt}"


def _code(block: Code, state: RenderState) -> str:
    title = rf"\paragraph{{{escape(block.title)}}}" + "\n" if block.title else ""
    output = "\nOutput:\n" + _verbatim(block.output) if block.output.strip() else ""
    return title + r"{\footnotesize" + "\n" + _verbatim(block.source) + output + "}"


def _figure(block: Figure, state: RenderState) -> str:
    path = state.add_file(f"{block.name}.pdf", block.pdf)
    return (r"\begin{figure}[htbp]\centering" "\n"
            rf"\includegraphics[width=0.9\linewidth,height=0.4\textheight,keepaspectratio]{{{path}}}" "\n"
            rf"\caption{{{escape(block.caption)}}}" "\n" r"\end{figure}")


def _table(block: Table, state: RenderState) -> str:
    columns = "l" * len(block.header)
    rows = [" & ".join(escape(c) for c in block.header) + r" \\ \hline"]
    rows += [" & ".join(escape(c) for c in row) + r" \\" for row in block.rows]
    return (r"\begin{center}{\small " + (f"{escape(block.caption)}\n\n" if block.caption else "")
            + rf"\begin{{tabular}}{{{columns}}}" + "\n" + "\n".join(rows) + "\n" + r"\end{tabular}}\end{center}")


def _exercise(block: Exercise, state: RenderState) -> str:
    return rf"\textbf{{Exercise {state.next_exercise()}.}} {escape(block.question)}"


BLOCKS: dict[type, BlockRenderer[str]] = {
    Prose: _prose, Equation: _equation, Code: _code, Figure: _figure, Table: _table, Exercise: _exercise}


def render(handout: Handout) -> dict[str, str | bytes]:
    """The handout as ``<topic>.tex`` plus its figures (PDF)."""
    state = RenderState.of(handout)
    parts = [f"% Generated by symdl handout {handout.topic} --seed {handout.seed}; do not edit by hand.",
             _preamble(handout.title), r"\begin{document}", r"\maketitle",
             rf"\begin{{center}}\emph{{{escape(handout.summary)}}}\end{{center}}",
             r"\section*{Learning goals}", r"\begin{itemize}"
             + "".join(rf"\item {escape(g)}" + "\n" for g in handout.goals) + r"\end{itemize}"]
    for _, title, blocks in rendered_sections(handout, BLOCKS, state):
        parts += [rf"\section{{{escape(title)}}}", *blocks]
    if handout.answers:
        parts.append(rf"\section*{{Answer key (seed {handout.seed})}}")
        parts.append(r"\begin{enumerate}" + "".join(rf"\item {escape(e.answer)} (checked: {escape(e.check)})" + "\n"
                                                     for e in handout.answers) + r"\end{enumerate}")
    parts.append(r"\section*{Formulas and how they were verified}" "\n" r"\begingroup\raggedright")
    parts += [rf"\textbf{{{escape(f.key)}}} ({escape(f.source)}; verified: {escape(f.method)})" "\n"
              + _display(f.latex) for f in handout.formulas]
    parts.append(r"\endgroup")
    parts.append(r"\end{document}")
    state.files[f"{handout.topic}.tex"] = "\n\n".join(parts) + "\n"
    return state.files
