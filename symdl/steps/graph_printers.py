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

from symdl.steps.graph import GraphDerivation


def _number(x: float) -> str:
    return f"{x:.6g}"


def _check_words(d: GraphDerivation, x: str) -> str:
    proof = d.proofs[x]
    estimate, ok = d.finite_differences[x]
    method = getattr(proof, "method", "?")
    if x in d.kinks:
        left, right = d.kinks[x]
        kink = f"a kink: one-sided derivatives {_number(left)} and {_number(right)}, the value is " \
               f"{'a subgradient between them' if ok else 'NOT between them'} (PyTorch's convention)"
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
    backward = [[r.node, r.operand, r.local, _number(r.local_value), _number(r.upstream), _number(r.contribution),
                 r.gate.split(":")[0]] for r in d.rows]
    gradients = [[x, _number(d.gradients[x]), str(d.symbolic[x]), _check_words(d, x)] for x in d.inputs]
    return forward, backward, gradients


FORWARD_HEAD = ["node", "definition", "value"]
BACKWARD_HEAD = ["node", "to", "local derivative", "local value", "upstream", "contribution", "gate"]
GRADIENT_HEAD = ["input", "df/dinput", "symbolic (chain of local derivatives)", "checks"]


def _fork_lines(d: GraphDerivation) -> list[str]:
    return [f"{name}: {' + '.join(_number(p) for p in parts)} = {_number(sum(parts))}"
            for name, parts in d.forks.items()]


def _gate_lines(d: GraphDerivation) -> list[str]:
    seen: dict[str, None] = {}
    for r in d.rows:
        seen.setdefault(r.gate, None)
    return list(seen)


def _table_text(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def text(d: GraphDerivation, picture: str | None = None) -> str:
    """Plain text for the terminal."""
    forward, backward, gradients = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out = [f"Computational graph of f = {d.text} at {at}", "", "Forward pass:", *_table_text(FORWARD_HEAD, forward),
           "", "Backward pass (contribution = local derivative x upstream gradient):",
           *_table_text(BACKWARD_HEAD, backward)]
    if d.forks:
        out += ["", "Sums at forks (a value used twice: its gradients add):", *("  " + s for s in _fork_lines(d))]
    out += ["", "Gates:", *("  " + g for g in _gate_lines(d)), "", f"f = {_number(d.value)}", "Gradients:"]
    out += [f"  df/d{x} = {_number(d.gradients[x])}    = {d.symbolic[x]}\n      {_check_words(d, x)}"
            for x in d.inputs]
    out += [f"Note: {note}" for note in d.notes]
    return "\n".join(out) + "\n"


def _table_markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]


def markdown(d: GraphDerivation, picture: str | None = None) -> str:
    """GitHub Markdown tables (and the picture, when a file was written)."""
    forward, backward, gradients = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out = [f"**Computational graph of `f = {d.text}` at {at}**", ""]
    if picture:
        out += [f"![the graph, forward values and gradients on the edges]({picture})", ""]
    out += ["Forward pass:", "", *_table_markdown(FORWARD_HEAD, forward), "", "Backward pass:", "",
            *_table_markdown(BACKWARD_HEAD, backward), ""]
    if d.forks:
        out += ["Sums at forks: " + "; ".join(_fork_lines(d)), ""]
    out += [f"- {g}" for g in _gate_lines(d)] + [""]
    out += _table_markdown(GRADIENT_HEAD, gradients) + [""] + [f"> {n}" for n in d.notes]
    return "\n".join(out) + "\n"


def _tex(text: str) -> str:
    return "".join({"_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "^": r"\^{}", "{": r"\{", "}": r"\}",
                    "~": r"\~{}", "\\": r"\textbackslash{}", "$": r"\$"}.get(c, c) for c in text)


def _table_latex(head: list[str], rows: list[list[str]], spec: str) -> list[str]:
    return [rf"\begin{{tabular}}{{{spec}}}", r"\hline", " & ".join(rf"\textbf{{{_tex(h)}}}" for h in head) + r" \\",
            r"\hline", *(" & ".join(rf"\texttt{{{_tex(c)}}}" for c in r) + r" \\" for r in rows), r"\hline",
            r"\end{tabular}"]


def latex(d: GraphDerivation, picture: str | None = None) -> str:
    """A LaTeX document (amsmath, graphicx; the picture included when a PDF/PNG file was written)."""
    import sympy as sp

    forward, backward, _ = _tables(d)
    at = ", ".join(f"{k}={_number(v)}" for k, v in d.point.items())
    out = ["% Generated by symdl derive --graph", r"\documentclass{article}", r"\usepackage{amsmath,graphicx}",
           r"\usepackage[a4paper,margin=1.5cm]{geometry}", r"\begin{document}",
           rf"\noindent Computational graph of \texttt{{{_tex('f = ' + d.text)}}} at \texttt{{{_tex(at)}}}.", ""]
    if picture:
        out += [r"\begin{center}", rf"\includegraphics[width=\linewidth]{{{picture}}}", r"\end{center}"]
    else:
        out += ["% (no picture: write to a file with -o to get one)"]
    out += [r"\paragraph{Forward pass}", r"\begin{center}", *_table_latex(FORWARD_HEAD, forward, "lll"),
            r"\end{center}", r"\paragraph{Backward pass} contribution = local derivative $\times$ upstream.",
            r"\begin{center}\small", *_table_latex(BACKWARD_HEAD, backward, "lllrrrl"), r"\end{center}"]
    if d.forks:
        out += [r"\noindent Sums at forks: \texttt{" + _tex("; ".join(_fork_lines(d))) + "}", ""]
    out += [r"\begin{itemize}", *(rf"\item {_tex(g)}" for g in _gate_lines(d)), r"\end{itemize}", r"\begin{align*}"]
    rows = [rf"\frac{{\partial f}}{{\partial {sp.latex(sp.Symbol(x))}}} &= {sp.latex(d.symbolic[x])} \\"
            "\n" rf"&= {_number(d.gradients[x])} \quad \text{{{_tex(_short_check(d, x))}}}" for x in d.inputs]
    out += [" \\\\\n".join(rows), r"\end{align*}", *(_tex(n) for n in d.notes), r"\end{document}"]
    return "\n".join(out) + "\n"


def _table_html(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


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
    return ("<!DOCTYPE html>\n<!-- Generated by symdl derive --graph -->\n<html><head><meta charset='utf-8'>"
            "<title>symdl derive --graph</title><style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:2px 8px}"
            "figure svg{max-width:100%;height:auto}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def to_data(d: GraphDerivation) -> dict[str, Any]:
    """The JSON-ready dictionary: ``value`` and ``gradients`` beside the tables and checks."""
    return {
        "expression": d.text, "at": d.point, "value": d.value, "gradients": d.gradients,
        "forward": [{"node": x, "definition": "input", "value": d.values[x]} for x in d.inputs]
        + [{"node": nd.name, "definition": nd.definition, "op": nd.op, "value": d.values[nd.name]} for nd in d.nodes],
        "backward": [{"node": r.node, "to": r.operand, "local": r.local, "local_value": r.local_value,
                      "upstream": r.upstream, "contribution": r.contribution, "gate": r.gate} for r in d.rows],
        "forks": d.forks,
        "symbolic": {x: str(d.symbolic[x]) for x in d.inputs},
        "checks": {x: {"proof": getattr(d.proofs[x], "method", "?"), "proven": getattr(d.proofs[x], "ok", False),
                       "finite_difference": d.finite_differences[x][0],
                       "finite_difference_agrees": d.finite_differences[x][1],
                       "kink": list(d.kinks[x]) if x in d.kinks else None} for x in d.inputs},
        "verified": d.verified, "notes": d.notes,
    }


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
