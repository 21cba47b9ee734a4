r"""Printers of matrix derivations: text, LaTeX, Markdown, HTML (MathML, offline) and JSON.

Every printer says the layout, the let-names, each step's identity and gradient with its check, and each
result with its check. A result whose check failed is printed under "NOT VERIFIED", never as a result.
JSON's ``result`` texts are in the input syntax: :func:`symdl.steps.matrix.parse_matrix` reads them back
and :func:`symdl.steps.matrix.evaluate` evaluates them with NumPy.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.engine import MatrixDerivation, MatrixResult
from symdl.steps.printers.latex import escape_text as _tex_escape

PRINTERS: dict[str, Callable[[MatrixDerivation], str]] = {}


def _printer(name: str) -> Callable[[Callable[[MatrixDerivation], str]], Callable[[MatrixDerivation], str]]:
    def register(function: Callable[[MatrixDerivation], str]) -> Callable[[MatrixDerivation], str]:
        PRINTERS[name] = function
        return function
    return register


def render(derivation: MatrixDerivation, fmt: str) -> str:
    """The derivation in format ``fmt`` (one of :data:`PRINTERS`)."""
    from symdl.steps.matrix.errors import MatrixError

    if fmt not in PRINTERS:
        raise MatrixError(f"unknown format {fmt!r}; known: {', '.join(PRINTERS)}")
    return PRINTERS[fmt](derivation)


def _symbol(d: MatrixDerivation) -> str:
    return "J" if d.kind == "jacobian" else "grad"


def _heading(d: MatrixDerivation) -> str:
    shapes = ", ".join(f"{k}: {n.show_shape(v)}" for k, v in d.shapes.items())
    what = "Jacobian" if d.kind == "jacobian" else "Gradient"
    return f"{what} of f = {d.text} with respect to {', '.join(d.wrt)}   [{shapes}]"


def _result_lines(d: MatrixDerivation, r: MatrixResult) -> list[str]:
    label = f"d f / d {r.wrt}" if d.kind == "gradient" else f"J_{r.wrt} = d f / d {r.wrt}"
    lines = []
    status = "" if r.check.ok else "NOT VERIFIED (finite differences disagree): "
    lines.append(f"  {status}{label} = {n.Node.__str__(r.shown_general)}      shape {n.show_shape(r.shape)}")
    lines.append(f"      {r.check.describe()}")
    if r.assumed_check is not None:
        status = "" if r.assumed_check.ok else "NOT VERIFIED: "
        lines.append(f"  {status}using {', '.join(d.assumptions)}:  {label} = {r.shown}")
        lines.append(f"      {r.assumed_check.describe()} (instances satisfy the assumption)")
    return lines


def _named(d: MatrixDerivation) -> list[n.Named]:
    """The named values used in the printed results (``R``), once each."""
    found: dict[str, n.Named] = {}
    for r in d.results.values():
        for node in (*r.shown_general.walk(), *r.shown.walk()):
            if isinstance(node, n.Named):
                found.setdefault(node.name, node)
    return list(found.values())


def _rewrite_rows(d: MatrixDerivation) -> list[list[str]]:
    rows = []
    for r in d.results.values():
        for i, step in enumerate(r.rewrites, 1):
            rows.append([f"{r.wrt}.{i}", step.rule.replace("_", " "), step.words, step.stage or "none",
                         n.Node.__str__(step.after), f"ok ({step.error:.0e})" if step.ok else "FAILED"])
    return rows


REWRITE_HEAD = ["#", "rewrite", "identity", "assumes", "result after", "both sides equal"]


def _stationary_lines(d: MatrixDerivation) -> list[str]:
    out = []
    for r in d.results.values():
        st = r.stationary
        if st is None:
            continue
        out.append(f"Stationary points in {st.wrt}:")
        out += [f"  {equation}    ({reason})" for equation, reason in st.lines]
        mark = {True: "verified", False: "NOT VERIFIED", None: "not derived"}[st.ok]
        out.append(f"  => {st.conclusion}   [{mark}]")
        if st.detail:
            out.append(f"      {st.detail}")
    return out


def renderables(d: MatrixDerivation) -> list[object]:
    """The terminal output as rich renderables (tables of lets, steps, rewrites; results and notes as lines)."""
    from symdl.steps.rich_tables import heading, line, table

    out: list[object] = [heading(_heading(d)), *(line(note) for note in d.notes[:1])]
    if d.assumptions:
        out.append(line(f"Assuming {', '.join(d.assumptions)}."))
    out.append(line())
    if d.lets or _named(d):
        rows = [[name, d.text_of(node, skip=node), n.show_shape(node.shape)]
                for node, name in sorted(d.lets.items(), key=lambda kv: int(kv[1][1:]))]
        rows += [[v.name, n.Node.__str__(v.value), n.show_shape(v.shape)] for v in _named(d)]
        out += [table(["let", "definition", "shape"], rows, "Let"), line()]
    title = ("Steps, from the output back to the inputs (contributions add where a value is used twice)"
             if d.kind == "gradient" else "Steps, forward (Jacobians in numerator layout)")
    rows = []
    for i, s in enumerate(d.steps, 1):
        sends = "\n".join(f"to {name}: {d.text_of(c)}" for name, c in s.contributions)
        result = f"d {s.name} / d {', '.join(d.wrt)}" if d.kind == "jacobian" else f"gradient of {s.name}"
        rows.append([str(i), f"{s.name} = {d.text_of(s.node, skip=s.node)}", f"{s.rule}: {s.identity}",
                     f"{result}: {d.text_of(s.gradient)}" + (f"\n{sends}" if sends else ""),
                     f"ok ({s.check.error:.0e})" if s.check.ok else "FAILED"])
    out += [table(["#", "node", "identity", "gradient", "finite differences"], rows, title), line()]
    rewrites = _rewrite_rows(d)
    if rewrites:
        out += [table(REWRITE_HEAD, rewrites, "To the textbook form (each rewrite named and verified)"), line()]
    out.append(heading("Result:"))
    for r in d.results.values():
        out += [line(text) for text in _result_lines(d, r)]
    stationary = _stationary_lines(d)
    if stationary:
        out += [line(), *(line(text) for text in stationary)]
    if len(d.notes) > 1:
        out += [line(), *(line("Note: " + note) for note in d.notes[1:])]
    return out


@_printer("text")
def text(d: MatrixDerivation) -> str:
    """Text for the terminal: rich tables rendered without colour (the CLI colours them on a terminal)."""
    from symdl.steps.rich_tables import to_text

    return to_text(renderables(d))


# ----------------------------------------------------------------------------------------------- LaTeX
def _latex_result(d: MatrixDerivation, r: MatrixResult) -> list[str]:
    lhs = rf"\frac{{\partial f}}{{\partial {d.latex_of(n.Var(r.wrt, r.shape))}}}"
    rows = []
    if r.check.ok:
        rows.append(rf"{lhs} &= {d.latex_of(r.shown_general, abbreviate=False)}"
                    rf" && \text{{verified, shape {_tex_escape(n.show_shape(r.shape))}}}")
    else:
        rows.append(rf"&\text{{NOT VERIFIED: finite differences disagree with }} "
                    rf"{d.latex_of(r.shown_general, False)}")
    if r.assumed_check is not None:
        word = "verified" if r.assumed_check.ok else "NOT VERIFIED"
        rows.append(rf"&= {d.latex_of(r.shown, abbreviate=False)} && \text{{using "
                    rf"{_tex_escape(', '.join(d.assumptions))}, {word}}}")
    return rows


def _latex_rewrites(d: MatrixDerivation) -> list[str]:
    """The rewrites to the textbook form, one ``align*`` row each (the rule's name, the assumption used)."""
    rows = []
    for r in d.results.values():
        for i, step in enumerate(r.rewrites):
            word = "verified" if step.ok else "FAILED"
            using = f", using {step.stage}" if step.stage else ""
            lhs = rf"\frac{{\partial f}}{{\partial {_lx(r.wrt)}}} " if i == 0 else ""
            rows.append(rf"{lhs}&= {d.latex_of(step.after, abbreviate=False)} && "
                        rf"\text{{{_tex_escape(step.rule.replace('_', ' ') + using)}: {word}}}")
    return rows


def _latex_named(d: MatrixDerivation) -> list[str]:
    return [rf"{_lx(v.name)} &= {d.latex_of(v.value, abbreviate=False)} && \text{{(named)}}" for v in _named(d)]


def _latex_stationary(d: MatrixDerivation) -> list[str]:
    out = []
    for r in d.results.values():
        st = r.stationary
        if st is None:
            continue
        mark = {True: "verified", False: "NOT VERIFIED", None: "not derived"}[st.ok]
        out += [rf"\paragraph{{Stationary points in \texttt{{{_tex_escape(st.wrt)}}}}}", r"\begin{itemize}"]
        out += [rf"\item \texttt{{{_tex_escape(eq)}}} ({_tex_escape(why)})" for eq, why in st.lines]
        out += [rf"\item $\Rightarrow$ {_tex_escape(st.conclusion)} ({mark})", r"\end{itemize}"]
    return out


def latex_body(d: MatrixDerivation) -> str:
    """The derivation as LaTeX paragraphs and ``align*`` blocks (amsmath)."""
    out = [rf"\noindent {_tex_escape(_heading(d))}\\ {_tex_escape(d.notes[0]) if d.notes else ''}", ""]
    rows = [rf"{_lx(name)} &= {d.latex_of(node, skip=node)}" for node, name in
            sorted(d.lets.items(), key=lambda kv: int(kv[1][1:]))]
    for s in d.steps:
        bar = _bar(s.name) if d.kind == "gradient" else rf"J_{{{_lx(s.name)}}}"
        word = "verified" if s.check.ok else "FAILED"
        rows.append(rf"{bar} &= {d.latex_of(s.gradient)} && \text{{{word}}}")
        rule = _tex_escape(s.rule.replace("_", " "))
        rows += [rf"&\quad\to {_lx(name)}:\ {d.latex_of(c)} && \text{{{rule}}}" for name, c in s.contributions]
    rows += _latex_named(d)
    for r in d.results.values():
        rows += _latex_result(d, r)
    out.append("\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}")
    rewrites = _latex_rewrites(d)
    if rewrites:
        out.append(r"\noindent To the textbook form, each rewrite named and verified:")
        out.append("\\begin{align*}\n" + " \\\\\n".join(rewrites) + "\n\\end{align*}")
    out += _latex_stationary(d)
    out += [_tex_escape(note) + "\n" for note in d.notes[1:]]
    return "\n".join(out) + "\n"


def _bar(name: str) -> str:
    """The gradient's symbol: \bar u_{1} (the bar over the letter, not over the subscript)."""
    head = name.rstrip("0123456789")
    return rf"\bar{{{_lx(head)}}}_{{{name[len(head):]}}}" if head != name else rf"\bar{{{_lx(name)}}}"


def _lx(name: str) -> str:
    from symdl.steps.matrix.printing import _symbol as symbol

    return symbol(name)


@_printer("latex")
def latex(d: MatrixDerivation) -> str:
    """A complete LaTeX document (compiles with amsmath)."""
    return ("% Generated by symdl derive (matrix calculus)\n\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
            "\\usepackage[a4paper,margin=2cm]{geometry}\n\\begin{document}\n" + latex_body(d) + "\\end{document}\n")


@_printer("markdown")
def markdown(d: MatrixDerivation) -> str:
    """GitHub Markdown with ``$$`` math."""
    out = [f"**{_heading(d)}**", "", *d.notes[:1], ""]
    for node, name in sorted(d.lets.items(), key=lambda kv: int(kv[1][1:])):
        out.append(f"- let ${_lx(name)} = {d.latex_of(node, skip=node)}$")
    out.append("")
    for i, s in enumerate(d.steps, 1):
        bar = _bar(s.name) if d.kind == "gradient" else rf"J_{{{_lx(s.name)}}}"
        out.append(f"{i}. *{s.rule.replace('_', ' ')}* ({s.identity}): ${bar} = {d.latex_of(s.gradient)}$ "
                   f"({'verified' if s.check.ok else 'FAILED'})")
    out.append("")
    for v in _named(d):
        out.append(f"- let ${_lx(v.name)} = {d.latex_of(v.value, abbreviate=False)}$")
    for r in d.results.values():
        for row in _latex_result(d, r):
            out += ["$$", row.replace("&", "").replace(r"\text{", r"\quad\text{"), "$$"]
        out.append(f"*{r.check.describe()}*")
    rewrites = _latex_rewrites(d)
    if rewrites:
        out += ["", "To the textbook form, each rewrite named and verified:", ""]
        for row in rewrites:
            out += ["$$", row.replace("&", "").replace(r"\text{", r"\quad\text{"), "$$"]
    out += ["", *(f"- {text}" for text in _stationary_lines(d))]
    out += ["", *(f"> {note}" for note in d.notes[1:])]
    return "\n".join(out) + "\n"


def mathml(tex: str) -> str:
    """MathML for a LaTeX formula (:func:`symdl.printing.mathml.latex_to_mathml`: offline, checked)."""
    from symdl.printing.mathml import latex_to_mathml

    return latex_to_mathml(tex.replace(r"\textstyle", ""))


@_printer("html")
def html_page(d: MatrixDerivation) -> str:
    """A standalone HTML page, math as MathML (renders offline)."""
    body = [f"<h1>{html.escape(_heading(d))}</h1>", *(f"<p>{html.escape(note)}</p>" for note in d.notes[:1])]
    if d.lets:
        body.append("<ul>" + "".join(f"<li>let {mathml(_lx(name) + ' = ' + d.latex_of(node, skip=node))}</li>"
                                     for node, name in sorted(d.lets.items(), key=lambda kv: int(kv[1][1:]))) + "</ul>")
    body.append("<ol>")
    for s in d.steps:
        bar = _bar(s.name) if d.kind == "gradient" else rf"J_{{{_lx(s.name)}}}"
        body.append(f"<li><em>{html.escape(s.rule.replace('_', ' '))}</em> ({html.escape(s.identity)}): "
                    f"{mathml(bar + ' = ' + d.latex_of(s.gradient))} "
                    + ("<span class='ok'>verified</span>" if s.check.ok else "<span class='bad'>FAILED</span>")
                    + "</li>")
    body.append("</ol><h2>Result</h2>")
    for r in d.results.values():
        lhs = rf"\frac{{\partial f}}{{\partial {_lx(r.wrt)}}}"
        if r.check.ok:
            body.append(f"<p>{mathml(lhs + ' = ' + d.latex_of(r.shown_general, False))}</p>")
        else:
            body.append(f"<p class='bad'>NOT VERIFIED: {html.escape(str(r.shown_general))}</p>")
        if r.assumed_check is not None and r.assumed_check.ok:
            body.append(f"<p>using {html.escape(', '.join(d.assumptions))}: "
                        f"{mathml(lhs + ' = ' + d.latex_of(r.shown, False))}</p>")
        body.append(f"<p><small>{html.escape(r.check.describe())}</small></p>")
    named = _named(d)
    if named:
        body.append("<ul>" + "".join(f"<li>let {mathml(_lx(v.name) + ' = ' + d.latex_of(v.value, False))}</li>"
                                     for v in named) + "</ul>")
    steps = [(r, step) for r in d.results.values() for step in r.rewrites]
    if steps:
        body.append("<h2>To the textbook form</h2><ol>")
        for r, step in steps:
            lhs = rf"\frac{{\partial f}}{{\partial {_lx(r.wrt)}}}"
            mark = "<span class='ok'>verified</span>" if step.ok else "<span class='bad'>FAILED</span>"
            using = f" (using {html.escape(step.stage)})" if step.stage else ""
            body.append(f"<li><em>{html.escape(step.rule.replace('_', ' '))}</em>{using}: {html.escape(step.words)}"
                        f"<br>{mathml(lhs + ' = ' + d.latex_of(step.after, False))} {mark}</li>")
        body.append("</ol>")
    for r in d.results.values():
        st = r.stationary
        if st is None:
            continue
        mark = {True: "<span class='ok'>verified</span>", False: "<span class='bad'>NOT VERIFIED</span>",
                None: "not derived"}[st.ok]
        body.append(f"<h2>Stationary points in {html.escape(st.wrt)}</h2><ol>"
                    + "".join(f"<li><code>{html.escape(eq)}</code> ({html.escape(why)})</li>" for eq, why in st.lines)
                    + f"</ol><p>&rArr; {html.escape(st.conclusion)} {mark}</p>"
                    + (f"<p><small>{html.escape(st.detail)}</small></p>" if st.detail else ""))
    body += [f"<p>{html.escape(note)}</p>" for note in d.notes[1:]]
    return ("<!DOCTYPE html>\n<!-- Generated by symdl derive (matrix calculus) -->\n<html><head><meta charset='utf-8'>"
            "<title>symdl derive</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            ".ok{color:#070}.bad{color:#b00}math{font-size:1.1em}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def to_data(d: MatrixDerivation) -> dict[str, Any]:
    """The JSON-ready dictionary."""
    def check(c: Any) -> dict[str, Any]:
        return {"ok": c.ok, "max_relative_error": c.error, "sizes": list(c.sizes)}

    return {
        "expression": d.text, "kind": d.kind, "wrt": list(d.wrt),
        "shapes": {k: list(v) for k, v in d.shapes.items()},
        "layout": "gradient has the variable's shape" if d.kind == "gradient"
        else "numerator layout: J[i, j] = d f_i / d x_j",
        "assumptions": list(d.assumptions),
        "result": {k: str(r.result) for k, r in d.results.items() if r.verified},
        "general": {k: str(r.general) for k, r in d.results.items()},
        "latex": {k: d.latex_of(r.shown, False) for k, r in d.results.items()},
        "checks": {k: check(r.check) for k, r in d.results.items()},
        "lets": {name: d.text_of(node, skip=node) for node, name in d.lets.items()},
        "steps": [{"rule": s.rule, "node": s.name, "expression": d.text_of(s.node, False),
                   "gradient": str(s.gradient), "result": str(s.gradient), "identity": s.identity,
                   "verified": s.check.ok, "method": "finite differences", "children": [],
                   "contributions": {name: str(c) for name, c in s.contributions}} for s in d.steps],
        # the rewrites to the textbook form, shaped as the step engine's rewrite entries (expression = result,
        # reason = the identity), plus the assumption they use
        "rewrites": {k: [{"rule": st.rule, "expression": str(n.expand_names(st.before)),
                          "result": str(n.expand_names(st.after)), "shown": str(st.after), "reason": st.words,
                          "assumes": st.stage or None, "verified": st.ok, "method": "numeric", "children": []}
                         for st in r.rewrites] for k, r in d.results.items()},
        "named": {v.name: str(v.value) for v in _named(d)},
        "shown": {k: str(r.shown) for k, r in d.results.items()},
        "stationary": {k: {"lines": [{"equation": eq, "reason": why} for eq, why in r.stationary.lines],
                           "conclusion": r.stationary.conclusion, "verified": r.stationary.ok,
                           "detail": r.stationary.detail}
                       for k, r in d.results.items() if r.stationary is not None},
        "verified": d.verified, "notes": d.notes,
    }


@_printer("json")
def to_json(d: MatrixDerivation) -> str:
    """JSON (see :func:`to_data`)."""
    return json.dumps(to_data(d), indent=2) + "\n"
