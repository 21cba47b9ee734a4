"""Printers of computational graphs: text, Markdown, LaTeX, HTML (tables and the SVG picture) and JSON.

Each shows the forward table (node, definition, value), the backward table (node, operand, local derivative,
upstream gradient, contribution, gate), the sums at forks, and every input's gradient with its two checks
(proof against SymPy's derivative, finite difference). JSON holds ``value`` and ``gradients`` too.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from symdl.steps.exprtext import reading_text
from symdl.steps.graph import BackwardRow, GraphDerivation
from symdl.steps.printers.latex import escape_text as _tex
from symdl.steps.tree import Derivation


def _number(x: float) -> str:
    return f"{x:.6g}"


def _check_words(d: GraphDerivation, x: str) -> str:
    proof = d.proofs[x]
    estimate, ok = d.finite_differences[x]
    method = getattr(proof, "method", "?")
    if x in d.kinks:
        kink = _kink_words(d, x)
        proven = "proven equal to SymPy's derivative" if getattr(proof, "ok", False) else "NOT proven"
        return f"{proven} ({method}); {kink}"
    proven = f"proven equal to SymPy's derivative ({method})" if getattr(proof, "ok", False) else \
        "NOT proven equal to SymPy's derivative"
    return f"{proven}; finite difference {_number(estimate)} {'agrees' if ok else 'DISAGREES'}"


def _short_check(d: GraphDerivation, x: str) -> str:
    """The checks in a few words (LaTeX's line width)."""
    proof = d.proofs[x]
    proven = f"proven ({getattr(proof, 'method', '?')})" if getattr(proof, "ok", False) else "NOT proven"
    if x in d.kinks:
        return f"{proven}; a kink, {'a subgradient' if d.finite_differences[x][1] else 'NOT a subgradient'}"
    return f"{proven}; finite difference {'agrees' if d.finite_differences[x][1] else 'DISAGREES'}"


def _tables(d: GraphDerivation) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    forward = [[x, "input", _number(d.values[x])] for x in d.inputs]
    forward += [[node.name, node.definition, _number(d.values[node.name])] for node in d.nodes]
    backward = [[r.node, r.operand, r.local, r.rule_words, _mark(r), _number(r.local_value), _number(r.upstream),
                 _number(r.contribution), r.gate.split(":")[0].removesuffix(" gate")] for r in d.rows]
    gradients = [[x, _number(d.gradients[x]), reading_text(d.symbolic[x]), _check_words(d, x)] for x in d.inputs]
    return forward, backward, gradients


def _mark(row: BackwardRow) -> str:
    """The step engine's verification of a local derivative: ``verified (expand)`` or ``NOT VERIFIED``."""
    return row.method if row.verified else "NOT VERIFIED"


FORWARD_HEAD = ["node", "definition", "value"]
BACKWARD_HEAD = ["node", "to", "local derivative", "rule (step engine)", "verified", "local value", "upstream",
                 "contribution", "gate"]
GRADIENT_HEAD = ["input", "df/dinput", "symbolic (chain of local derivatives)", "checks"]


def _local_derivations(d: GraphDerivation) -> list[tuple[str, Derivation]]:
    """Each distinct local derivation once (rows with the same operation share one), with the rows it serves."""
    found: dict[int, tuple[list[str], Derivation]] = {}
    for r in d.rows:
        if r.derivation is not None:
            found.setdefault(id(r.derivation), ([], r.derivation))[0].append(f"{r.node} -> {r.operand}")
    return [(", ".join(rows), derivation) for rows, derivation in found.values()]


LOCAL_TITLE = "Local derivatives, step by step (the step-by-step engine; every step verified)"


def _local_markdown(d: GraphDerivation) -> list[str]:
    """The local derivations in the step engine's own Markdown (:mod:`symdl.steps.printers.markdown`)."""
    from symdl.steps.printers.markdown import markdown_body

    out = [f"**{LOCAL_TITLE}**", ""]
    for rows, derivation in _local_derivations(d):
        out += [f"*{derivation.title}* (rows {rows})", "", *markdown_body(derivation), ""]
    return out


def _local_html(d: GraphDerivation) -> list[str]:
    """The local derivations in the step engine's own HTML (MathML; :mod:`symdl.steps.printers.html`)."""
    from symdl.steps.printers.html import html_fragment

    out = [f"<h2>{html.escape(LOCAL_TITLE)}</h2>"]
    for rows, derivation in _local_derivations(d):
        out += [f"<section><p>rows {html.escape(rows)}</p>", html_fragment(derivation), "</section>"]
    return out


def _local_latex(d: GraphDerivation) -> list[str]:
    """The local derivations in the step engine's own LaTeX (:func:`symdl.steps.printers.latex.body`)."""
    from symdl.steps.printers.latex import body

    out = [rf"\subsection*{{{_tex(LOCAL_TITLE)}}}"]
    for rows, derivation in _local_derivations(d):
        out += [rf"\noindent\texttt{{{_tex(derivation.title)}}} (rows \texttt{{{_tex(rows)}}})", "", body(derivation)]
    return out


def _fork_lines(d: GraphDerivation) -> list[str]:
    return [f"{name}: {' + '.join(_number(p) for p in parts)} = {_number(sum(parts))}"
            for name, parts in d.forks.items()]


def _gate_lines(d: GraphDerivation) -> list[str]:
    seen: dict[str, None] = {}
    for r in d.rows:
        seen.setdefault(r.gate, None)
    return list(seen)


def renderables(d: GraphDerivation) -> list[object]:
    """The terminal output as rich renderables: headings, the forward, backward and gradient tables, notes."""
    from symdl.steps.rich_tables import heading, line, table

    forward, backward, _ = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out: list[object] = [heading(f"Computational graph of f = {d.text} at {at}"), line(),
                         table(FORWARD_HEAD, forward, "Forward pass", right=(2,)), line(),
                         table(BACKWARD_HEAD, backward, "Backward pass: contribution = local derivative x upstream "
                               "(each local derivative derived step by step and verified)", right=(5, 6, 7))]
    if d.forks:
        out += [line(), heading("Sums at forks (a value used twice: its gradients add):"),
                *(line("  " + s) for s in _fork_lines(d))]
    out += [line(), heading("Gates:"), *(line("  " + g) for g in _gate_lines(d)), line(),
            heading(f"f = {_number(d.value)}"),
            table(GRADIENT_TEXT_HEAD, [[x, _number(d.gradients[x]), reading_text(d.symbolic[x]), _proof_words(d, x),
                                        _fd_words(d, x)] for x in d.inputs], "Gradients", right=(1,))]
    out += [line(f"{x} is at {_kink_words(d, x)}") for x in d.inputs if x in d.kinks]
    out += [line(f"Note: {note}") for note in d.notes]
    return out


GRADIENT_TEXT_HEAD = ["input", "df/dinput", "symbolic (chain of local derivatives)", "= SymPy's derivative",
                      "finite difference"]


def _proof_words(d: GraphDerivation, x: str) -> str:
    proof = d.proofs[x]
    method = getattr(proof, "method", "?")
    return f"proven ({method})" if getattr(proof, "ok", False) else "NOT proven"


def _fd_words(d: GraphDerivation, x: str) -> str:
    estimate, ok = d.finite_differences[x]
    if x in d.kinks:
        return "a kink: a subgradient" if ok else "a kink: NOT a subgradient"
    return f"{_number(estimate)} {'agrees' if ok else 'DISAGREES'}"


def _kink_words(d: GraphDerivation, x: str) -> str:
    left, right = d.kinks[x]
    ok = d.finite_differences[x][1]
    return (f"a kink: one-sided derivatives {_number(left)} and {_number(right)}, the value is "
            f"{'a subgradient between them' if ok else 'NOT between them'} (PyTorch's convention)")


def text(d: GraphDerivation, picture: str | None = None) -> str:
    """Text for the terminal: rich tables rendered without colour (the CLI colours them on a terminal)."""
    from symdl.steps.rich_tables import to_text

    return to_text(renderables(d))


def _table_markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]


#: Said where a document printed to stdout has no picture file to reference (LaTeX, Markdown).
NO_PICTURE = "(no picture: write to a file with -o to get one beside it)"


def markdown(d: GraphDerivation, picture: str | None = None) -> str:
    """GitHub Markdown tables (and the picture, when a file was written)."""
    forward, backward, gradients = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out = [f"**Computational graph of `f = {d.text}` at {at}**", ""]
    if picture:
        out += [f"![the graph, forward values and gradients on the edges]({picture})", ""]
    else:
        out += [f"<!-- {NO_PICTURE} -->", ""]
    out += ["Forward pass:", "", *_table_markdown(FORWARD_HEAD, forward), "", "Backward pass:", "",
            *_table_markdown(BACKWARD_HEAD, backward), ""]
    if d.forks:
        out += ["Sums at forks: " + "; ".join(_fork_lines(d)), ""]
    out += [f"- {g}" for g in _gate_lines(d)] + [""]
    out += _table_markdown(GRADIENT_HEAD, gradients) + [""] + [f"> {n}" for n in d.notes]
    out += ["", *_local_markdown(d)]
    return "\n".join(out) + "\n"


def _table_latex(head: list[str], rows: list[list[str]], spec: str) -> list[str]:
    return [rf"\begin{{tabular}}{{{spec}}}", r"\hline", " & ".join(rf"\textbf{{{_tex(h)}}}" for h in head) + r" \\",
            r"\hline", *(" & ".join(rf"\texttt{{{_tex(c)}}}" for c in r) + r" \\" for r in rows), r"\hline",
            r"\end{tabular}"]


def latex(d: GraphDerivation, picture: str | None = None) -> str:
    """A LaTeX document (amsmath, graphicx; the picture included when a PDF/PNG file was written)."""
    import sympy as sp

    forward, backward, _ = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out = ["% Generated by symdl derive --graph", r"\documentclass{article}", r"\usepackage{amsmath,amssymb,graphicx}",
           r"\usepackage[a4paper,margin=1.5cm]{geometry}", r"\begin{document}",
           rf"\noindent Computational graph of \texttt{{{_tex('f = ' + d.text)}}} at \texttt{{{_tex(at)}}}.", ""]
    if picture:
        out += [r"\begin{center}", rf"\includegraphics[width=\linewidth]{{{picture}}}", r"\end{center}"]
    else:
        out += [f"% {NO_PICTURE}"]
    out += [r"\paragraph{Forward pass}", r"\begin{center}", *_table_latex(FORWARD_HEAD, forward, "lll"),
            r"\end{center}", r"\paragraph{Backward pass} contribution = local derivative $\times$ upstream.",
            r"\begin{center}\scriptsize", *_table_latex(BACKWARD_HEAD, backward, "lllllrrrl"), r"\end{center}"]
    if d.forks:
        out += [r"\noindent Sums at forks: \texttt{" + _tex("; ".join(_fork_lines(d))) + "}", ""]
    out += [r"\begin{itemize}", *(rf"\item {_tex(g)}" for g in _gate_lines(d)), r"\end{itemize}", r"\begin{align*}"]
    rows = [rf"\frac{{\partial f}}{{\partial {sp.latex(sp.Symbol(x))}}} &= {sp.latex(d.symbolic[x])} \\"
            "\n" rf"&= {_number(d.gradients[x])} \quad \text{{{_tex(_short_check(d, x))}}}" for x in d.inputs]
    out += [" \\\\\n".join(rows), r"\end{align*}", *(_tex(n) for n in d.notes), *_local_latex(d),
            r"\end{document}"]
    return "\n".join(out) + "\n"


def _table_html(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _step_style() -> str:
    """The step engine's stylesheet, for its derivations in the page."""
    from symdl.steps.printers.html import STYLE

    return STYLE


def html_page(d: GraphDerivation, picture: str | None = None) -> str:
    """A standalone HTML page with the graph drawn inline as SVG."""
    from symdl.steps.graph_picture import draw

    forward, backward, gradients = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    svg = draw(d, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]
    parts = [f"<h1>Computational graph of <code>f = {html.escape(d.text)}</code> at {html.escape(at)}</h1>",
             f"<figure>{svg}<figcaption>forward values (green, above) and gradients (red, below) on the edges"
             f"</figcaption></figure>",
             "<h2>Forward pass</h2>", _table_html(FORWARD_HEAD, forward),
             "<h2>Backward pass</h2><p>contribution = local derivative &times; upstream gradient</p>",
             _table_html(BACKWARD_HEAD, backward)]
    if d.forks:
        parts.append("<p>Sums at forks: " + html.escape("; ".join(_fork_lines(d))) + "</p>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(g)}</li>" for g in _gate_lines(d)) + "</ul>")
    parts += ["<h2>Gradients</h2>", _table_html(GRADIENT_HEAD, gradients)]
    parts += [f"<p>{html.escape(n)}</p>" for n in d.notes]
    parts += _local_html(d)
    return ("<!DOCTYPE html>\n<!-- Generated by symdl derive --graph -->\n<html><head><meta charset='utf-8'>"
            "<title>symdl derive --graph</title><style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:2px 8px}"
            "figure svg{max-width:100%;height:auto}" + _step_style() + "</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def to_data(d: GraphDerivation) -> dict[str, Any]:
    """The JSON-ready dictionary: ``value`` and ``gradients`` beside the tables and checks."""
    return {
        "expression": d.text, "at": d.point, "value": d.value, "gradients": d.gradients,
        "forward": [{"node": x, "definition": "input", "value": d.values[x]} for x in d.inputs]
        + [{"node": nd.name, "definition": nd.definition, "op": nd.op, "value": d.values[nd.name]} for nd in d.nodes],
        "backward": [{"node": r.node, "to": r.operand, "local": r.local, "rule": r.rule, "verified": r.verified,
                      "local_value": r.local_value, "upstream": r.upstream, "contribution": r.contribution,
                      "gate": r.gate, "derivation": _local_data(r)} for r in d.rows],
        "forks": d.forks,
        "symbolic": {x: str(d.symbolic[x]) for x in d.inputs},
        "checks": {x: {"proof": getattr(d.proofs[x], "method", "?"), "proven": getattr(d.proofs[x], "ok", False),
                       "finite_difference": d.finite_differences[x][0],
                       "finite_difference_agrees": d.finite_differences[x][1],
                       "kink": list(d.kinks[x]) if x in d.kinks else None} for x in d.inputs},
        "verified": d.verified, "notes": d.notes,
    }


def _local_data(row: BackwardRow) -> dict[str, Any] | None:
    """The local derivative in the step engine's own JSON (``expression``, ``wrt``, ``result``, ``steps``, ...)."""
    if row.derivation is None:
        return None
    from symdl.steps.printers.json import to_data as step_data

    data = step_data(row.derivation)
    data.pop("latex", None)  # the document's LaTeX is per derivation, not per table row
    return data


def to_json(d: GraphDerivation, picture: str | None = None) -> str:
    return json.dumps(to_data(d), indent=2) + "\n"


PRINTERS: dict[str, Callable[[GraphDerivation, str | None], str]] = {
    "text": text, "markdown": markdown, "latex": latex, "html": html_page, "json": to_json,
}


def render(d: GraphDerivation, fmt: str, picture: str | None = None) -> str:
    """The derivation in ``fmt``; ``picture``: the path of a written picture to reference (LaTeX, Markdown)."""
    from symdl.steps.graph import GraphError

    if fmt not in PRINTERS:
        raise GraphError(f"unknown format {fmt!r}; known: {', '.join(PRINTERS)}")
    return PRINTERS[fmt](d, picture)
