"""Step-by-step derivations: the textbook corpus, planted errors, random expressions, the printers' contracts.

Ground truth comes from outside the code under test: the corpus's answers are written by hand
(tests/derive_corpus.py) and every result is also compared with mpmath's numerical derivative of
the function (or central differences on an index instance).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import mpmath
import pytest
import sympy as sp
from hypothesis import example, given
from hypothesis import strategies as st
from sympy.parsing.sympy_parser import parse_expr

from symdl.expr import FUNCTIONS, MAX_LENGTH, ExpressionError, parse
from symdl.functions import to_textbook
from symdl.steps import Derivation, Part, Rewrite, derive
from symdl.steps.rules import ChainRule, PowerRule, steps
from symdl.steps.tree import Step
from tests.derive_corpus import CASES, Case

POINTS = (0.63, -1.27, 1.91, -0.41)
mpmath.mp.dps = 30


def _value(expr: sp.Expr, values: dict[sp.Symbol, float]) -> complex:
    return complex(sp.N(to_textbook(expr).xreplace({s: sp.Float(v, 30) for s, v in values.items()}).doit(), 30))


def _node(tree: Step, path: tuple[int, ...]) -> Step:
    for position in path:
        tree = tree.children[position]
    return tree


def _scalar_points(case: Case, symbols: list[sp.Symbol]) -> list[dict[sp.Symbol, float]]:
    points = []
    for shift in range(len(POINTS)):
        point = {s: POINTS[(shift + k) % len(POINTS)] for k, s in enumerate(symbols)}
        if case.name in ("log", "square root", "x^x", "log1p"):
            point = {s: abs(v) for s, v in point.items()}
        if all(min(abs(v - kink) for kink in case.kinks) > 0.05 for v in point.values()) if case.kinks else True:
            points.append(point)
    return points


def _instance(expr: sp.Expr, i: int, j: int, n: int = 4) -> sp.Expr:
    n_symbol = sp.Symbol("n", integer=True, positive=True)
    i_symbol, j_symbol = sp.symbols("i j", integer=True, positive=True)
    concrete = expr.subs({n_symbol: n, i_symbol: i, j_symbol: j}).doit()
    return concrete.xreplace({x: sp.Symbol(f"{x.base}{x.indices[0]}", real=True) for x in concrete.atoms(sp.Indexed)})


# --------------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: Case) -> None:
    if isinstance(case.expr, str):
        derivation = derive(case.expr, wrt=case.wrt)
        expr = parse(case.expr)
    else:
        expr, var = case.expr()
        derivation = derive(expr, wrt=[var])
    assert derivation.verified, derivation.failures()
    tree = derivation.parts[0].tree
    for path, rule in case.rules:
        assert _node(tree, path).rule_name() == rule, (path, _node(tree, path))
    result = derivation.result[f"d/d{case.wrt}"] if isinstance(case.expr, str) else tree.eval()
    if isinstance(case.expr, str):
        symbols = sorted(expr.free_symbols | parse(case.expected).free_symbols, key=lambda s: s.name)
        expected = parse(case.expected, [s.name for s in symbols])
        var = next((s for s in symbols if s.name == case.wrt), sp.Symbol(case.wrt, real=True))
        checked = 0
        for point in _scalar_points(case, symbols):
            got, want = _value(result, point), _value(expected, point)
            function = sp.lambdify(var, to_textbook(expr).xreplace({s: v for s, v in point.items() if s != var}),
                                   "mpmath")
            numeric = complex(mpmath.diff(function, mpmath.mpf(point.get(var, 0.5))))
            assert abs(got - want) <= 1e-20 * max(1, abs(want)), (point, got, want)
            assert abs(got - numeric) <= 1e-15 * max(1, abs(numeric)), (point, got, numeric)
            checked += 1
        assert checked >= 2
    else:  # index sums: on instances n = 4, j = 2, for two choices of the free component i
        for i in (2, 3):
            got, want = _instance(result, i, 2), _instance(case.expected(), i, 2)
            instance = _instance(expr, i, 2)
            variable = next(s for s in instance.free_symbols if s.name == f"{var.base}2")
            values = {s: 0.3 + 0.17 * k for k, s in enumerate(sorted(instance.free_symbols, key=lambda s: s.name))}
            exact = complex(sp.N(got.subs(values)))
            assert abs(exact - complex(sp.N(want.subs(values)))) < 1e-12
            h = 1e-6
            plus = complex(sp.N(instance.subs({**values, variable: values[variable] + h})))
            minus = complex(sp.N(instance.subs({**values, variable: values[variable] - h})))
            assert abs(exact - (plus - minus) / (2 * h)) < 1e-7


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- planted errors
@dataclass(frozen=True, eq=False)
class _WrongPower(PowerRule):
    """d/dx x^n = n x^n (wrong on purpose)"""

    def combine(self) -> sp.Expr:
        return self.expr.exp * self.var**self.expr.exp


def test_planted_wrong_step_is_caught() -> None:
    x = sp.Symbol("x", real=True)
    right = steps(sp.sin(x**3), x)
    assert isinstance(right, ChainRule)
    wrong_inner = _WrongPower(right.inner_step.expr, x)
    planted = replace(right, inner_step=wrong_inner)
    derivation = Derivation(sp.sin(x**3), (x,), [Part("d/dx", planted, key="d/dx")]).verify()
    assert not derivation.verified
    failed = {id(s) for s, _ in derivation.failures()}
    assert id(wrong_inner) in failed and id(planted) in failed  # the step and what it feeds
    assert id(planted.outer) not in failed  # the correct sibling still verifies
    assert derivation.check(wrong_inner).method == "failed"
    assert "differ at" in derivation.check(wrong_inner).detail


def test_planted_wrong_rewrite_is_caught() -> None:
    x = sp.Symbol("x", real=True)
    tree = steps(sp.exp(-x) / (1 + sp.exp(-x)), x)
    bad = Rewrite(tree.eval(), None, -tree.eval(), "flip the sign")
    derivation = Derivation(tree.expr, (x,), [Part("d/dx", tree, (bad,), key="d/dx")]).verify()
    assert [s for s, _ in derivation.failures()] == [bad]
    assert "NOT VERIFIED" in derivation.render("text") and "[FAILED]" in derivation.render("text")


def test_rewrite_under_assumption_needs_it() -> None:
    k = sp.Symbol("k", integer=True, positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    t, p = sp.IndexedBase("t"), sp.Symbol("p", real=True)
    total = sp.Sum(t[k], (k, 1, n))
    assumed = Rewrite(p * total, None, p, "use sum_k t_k = 1", ((total, sp.S.One),))
    unassumed = Rewrite(p * total, None, p, "no assumption")
    derivation = Derivation(p, (p,), [Part("x", None, (assumed, unassumed))]).verify()
    assert derivation.check(assumed).ok and not derivation.check(unassumed).ok


# --------------------------------------------------------------------------- random expressions
_ATOMS = st.sampled_from(["x", "y", "2", "3", "0.5", "x", "x"])
_UNARY = ["exp", "sin", "cos", "tanh", "sigmoid", "softplus", "atan", "erf"]


def _grow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(_UNARY), children).map(lambda p: f"{p[0]}({p[1]})"),
        st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        st.tuples(children, children).map(lambda p: f"{p[0]}/(2 + sin({p[1]}))"),
        st.tuples(children, st.sampled_from(["2", "3"])).map(lambda p: f"({p[0]})**{p[1]}"),
        children.map(lambda c: f"log(1 + ({c})**2)"),
        children.map(lambda c: f"where({c} > 0.1, {c}, 0.3*{c})"),
    )


EXPRESSIONS = st.recursive(_ATOMS, _grow, max_leaves=6)


@given(EXPRESSIONS)
# SymPy's simplify raised KeyError from solveset on this piecewise condition; a give-up is "not simplified"
@example("where((x/(2 + sin(x)))**3 > 0.1, (x/(2 + sin(x)))**3, 0.3*(x/(2 + sin(x)))**3)")
# a 300-character leaky ReLU of a leaky ReLU of one: its derivative's text (2,600) exceeds the parser's length cap
@example("where(where(where(x > 0.1, x, 0.3*x) > 0.1, where(x > 0.1, x, 0.3*x), 0.3*where(x > 0.1, x, 0.3*x)) > 0.1, "
         "where(where(x > 0.1, x, 0.3*x) > 0.1, where(x > 0.1, x, 0.3*x), 0.3*where(x > 0.1, x, 0.3*x)), "
         "0.3*where(where(x > 0.1, x, 0.3*x) > 0.1, where(x > 0.1, x, 0.3*x), 0.3*where(x > 0.1, x, 0.3*x)))")
def test_random_expression_derives_verifies_and_matches_sympy(text: str) -> None:
    expr = parse(text, ["x", "y"])
    if not expr.has(sp.Symbol("x", real=True)):
        text, expr = f"x*({text})", parse(f"x*({text})", ["x", "y"])
    derivation = derive(text, wrt="x")
    assert derivation.verified, derivation.failures()
    x, y = sp.symbols("x y", real=True)
    truth = sp.diff(expr, x)
    result = derivation.result["d/dx"]
    digits = 1e-12 if expr.atoms(sp.Float) else 1e-20  # decimal numbers carry 15 digits
    for point in ({x: 0.37, y: -0.81}, {x: -1.13, y: 0.29}):
        want, got = _value(truth, point), _value(result, point)
        assert abs(got - want) <= digits * max(1, abs(want))
    derivation.render("latex")  # every printer handles it
    derivation.render("html")
    data = json.loads(derivation.render("json"))
    point = {x: 0.37, y: -0.81}
    text = data["result"]["d/dx"]
    # SymPy reads every text, of any length, with the JSON's symbols and the language's functions
    local = {name: function for name, (function, _) in FUNCTIONS.items()}
    local |= {name: sp.Symbol(name, real=True) for name in data["symbols"]}
    assert abs(_value(parse_expr(text, local_dict=local), point) - _value(result, point)) < 1e-12
    if len(text) <= MAX_LENGTH:  # symdl's parser, within the caps it sets on every text
        assert abs(_value(parse(text, ["x", "y"]), point) - _value(result, point)) < 1e-12
    else:
        with pytest.raises(ExpressionError, match="characters long"):
            parse(text, ["x", "y"])


# --------------------------------------------------------------------------- API
def test_wrt_defaults_to_every_variable_and_is_checked() -> None:
    derivation = derive("x*y + y**2")
    assert set(derivation.result) == {"d/dx", "d/dy"}
    from symdl.steps import DeriveError

    with pytest.raises(DeriveError, match="not a variable name"):
        derive("x*y", wrt="1x")


def test_no_rule_falls_back_to_a_labelled_sympy_step() -> None:
    x = sp.Symbol("x", real=True)
    derivation = derive(sp.besselj(0, x), wrt=[x])
    root = derivation.parts[0].tree
    assert root.rule_name() == "sympy_diff" and derivation.verified
    assert "no step-by-step rule for" in derivation.render("text")


def test_size_limit_refuses_an_explosion_quickly() -> None:
    import time

    from symdl.steps import DeriveError

    text = "*".join(f"sin(x+{k})" for k in range(150))
    start = time.monotonic()
    with pytest.raises(DeriveError, match="explode"):
        derive(text)
    assert time.monotonic() - start < 20


# --------------------------------------------------------------------------- printers
def _texts(step: dict) -> list[str]:
    return [step["expression"], step["result"], *(t for c in step["children"] for t in _texts(c))]


@pytest.mark.parametrize("target", ["x*sigmoid(x) + log(1 + x**2)/x", "max(x, 0)*y", "cross_entropy", "sigmoid",
                                    "adam_bias_correction"])
def test_json_contract_and_every_text_parses(target: str) -> None:
    derivation = derive(target)
    data = json.loads(derivation.render("json"))
    assert set(data) == {"expression", "wrt", "result", "steps", "verified", "latex", "symbols"}
    assert data["verified"] is True and "\\begin{align*}" in data["latex"]
    local = {name: sp.Symbol(name) for name in data["symbols"]}
    for step in data["steps"]:
        assert {"rule", "expression", "result", "verified", "children"} <= set(step)
        for text in [*_texts(step), *data["result"].values()]:
            ours = parse(text)  # symdl's parser
            theirs = parse_expr(text, local_dict=local)  # and SymPy's, with the symbols the JSON names
            assert {s.name for s in ours.free_symbols} == {s.name for s in theirs.free_symbols} <= set(local)
    for key, text in data["result"].items():
        value = derivation.substitute(derivation.result[key])
        parsed = parse(text)
        point = {s: 0.4 + 0.1 * k for k, s in enumerate(sorted(parsed.free_symbols, key=lambda s: s.name))}
        if value.atoms(sp.Sum, sp.Indexed):
            continue  # index-level results are printed on their instance, compared by the instance tests
        assert abs(_value(parsed, point) - _value(value, {s: point[s] for s in value.free_symbols
                                                           if s in point} | {s: point.get(
            next((p for p in point if p.name == s.name), s), 0.4) for s in value.free_symbols})) < 1e-12


def test_printers_never_leak_internal_names() -> None:
    for name in ("sigmoid", "gelu", "cross_entropy", "softplus"):
        derivation = derive(name)
        for fmt in ("text", "latex", "markdown", "json", "html"):
            out = derivation.render(fmt)
            for internal in ("DERIVATIVE", "Dummy", "Indexed(", "IndexedBase", "Piecewise((", "KroneckerDelta"):
                assert internal not in out, (name, fmt, internal)


def test_text_output_reads_as_steps() -> None:
    out = derive("sin(x**2)").render("text")
    assert "chain rule with u = x**2" in out
    assert "d/du[sin(u)] = cos(u)" in out
    assert "[verified (expand)]" in out and out.rstrip().endswith("every step verified")


def test_terminal_text_is_styled_with_rich() -> None:
    """The CLI prints rich text on a terminal: headings bold (each of them, not only the first line), marks green."""
    from symdl.steps.printers.text import rich_text

    styled = rich_text(derive("sin(x**2)"))
    spans = {(styled.plain[span.start:span.end], str(span.style)) for span in styled.spans}
    assert {("sin(x**2)", "bold"), ("d/dx", "bold"), ("every step verified", "green")} <= spans
    assert ("[verified (expand)]", "green") in spans


def test_terminal_text_wraps_with_hanging_indents() -> None:
    """On a terminal the CLI wraps each long line at its spaces to the console's width, continuation rows
    past the line's own indent (the terminal's wrap would start them at column 0): a formula's eight columns,
    deeper than its justification at four, and a justification's one, under its text: no word lost or
    reordered, verification marks whole and still green."""
    from symdl.steps.printers.text import rich_text, text

    derivation = derive("softplus")
    plain, width = text(derivation), 80
    styled = rich_text(derivation, width=width)
    rows = styled.plain.split("\n")
    assert styled.plain.split() == plain.split()
    assert all(len(row) <= width or " " not in row.strip() for row in rows)
    depth = lambda row: len(row) - len(row.lstrip(" "))  # noqa: E731
    long_lines, position = 0, 0
    for line in plain.split("\n"):  # each line: its first row, then continuation rows until its words are in
        assert line.startswith(rows[position]), (line, rows[position])
        words, position = rows[position].split(), position + 1
        while len(words) < len(line.split()):
            assert depth(rows[position]) == depth(line) + (1 if line.lstrip().startswith("(") else 8), rows[position]
            words, position = words + rows[position].split(), position + 1
        assert words == line.split()
        long_lines += len(line) > width
    assert position == len(rows) and long_lines >= 3
    marks = [styled.plain[span.start:span.end] for span in styled.spans if str(span.style) == "green"]
    assert marks.count("[verified (expand)]") == plain.count("[verified (expand)]")


def test_markdown_and_html() -> None:
    from symdl.printing.mathml import unconverted

    derivation = derive("cross_entropy")
    md = derivation.render("markdown")
    assert "**textbook case" in md and "$" in md and "Every step verified." in md
    page = derivation.render("html")
    assert page.startswith("<!DOCTYPE html>") and "<math" in page and unconverted(page) == []
    assert "<script" not in page  # offline: MathML, no JavaScript
    assert derivation._repr_html_().startswith("<h2>") and derivation._repr_latex_().startswith("$$")


# --------------------------------------------------------------------------- PyTorch's conventions at kinks
def test_kink_conventions_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    x, y = sp.symbols("x y", real=True)
    tie = derive("max(x, y)").result["d/dx"].subs({x: 1, y: 1})
    a, b = torch.tensor(1.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    torch.maximum(a, b).backward()
    assert float(tie) == float(a.grad) == 0.5
    low = derive("min(x, y)").result["d/dy"].subs({x: 2, y: 2})
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    torch.minimum(a, b).backward()
    assert float(low) == float(b.grad)
    at_zero = derive("abs(x)").result["d/dx"].subs(x, 0)
    z = torch.tensor(0.0, requires_grad=True)
    torch.abs(z).backward()
    assert float(at_zero) == float(z.grad) == 0.0


# --------------------------------------------------------------------------- docs/derive.md
DOC = Path(__file__).resolve().parent.parent / "docs" / "derive.md"


def test_docs_list_every_rule() -> None:
    from symdl.steps.rules import RULES, TABLE

    text = DOC.read_text()
    for name in [r.rule for r in RULES if r.rule != "function"] + sorted(set(TABLE.values())) + ["rewrite"]:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("name", ["sigmoid", "cross_entropy"])
def test_docs_show_what_the_terminal_prints(name: str) -> None:
    text = DOC.read_text()
    block = text.split(f"$ symdl derive {name}\n", 1)[1].split("\n```", 1)[0]
    assert _methods_dropped(block) == _methods_dropped(derive(name).render("text"))


def test_docs_show_what_the_terminal_prints_for_a_python_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The third derivation of docs/derive.md: its file written out, the command run as the docs show it."""
    from symdl.cli import main

    section = DOC.read_text().split("### A Python function", 1)[1]
    (tmp_path / "neuron.py").write_text(section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n")
    command = "symdl derive neuron.py:loss --wrt w --check neuron.py:grad"
    block = section.split(f"$ {command}\n", 1)[1].split("\n```", 1)[0]
    monkeypatch.chdir(tmp_path)
    assert main(command.split()[1:]) == 0
    printed = capsys.readouterr().out
    # the gradient check's error columns are rounding noise (their last digits may differ between machines)
    noise = re.compile(r"\d\.\d{3}e-\d\d")
    assert noise.sub("E", _methods_dropped(block)) == noise.sub("E", _methods_dropped(printed))
    assert "gradcheck PASS" in block


def _methods_dropped(text: str) -> str:
    """Text output with ``simplify``/``numeric`` marks merged: whether a small claim simplifies within its
    CPU-time bound depends on the machine."""
    return re.sub(r"\[verified \((simplify|numeric)\)\]", "[verified]", text).strip()


# --------------------------------------------------------------------------- HTML as a reader sees it
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_html_renders_offline_in_chromium(tmp_path: Path) -> None:
    import matplotlib.image

    from symdl.steps.printers.lines import part_lines

    derivation = derive("cross_entropy")
    page = tmp_path / "ce.html"
    page.write_text(derivation.render("html"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    rows = sum(len(part_lines(derivation, p)) for p in derivation.parts)
    assert dom.count("<tr>") == rows  # one table row per printed line
    assert dom.count("<math") >= rows + len(derivation.lets) + len(derivation.assumptions)
    assert "\\frac" not in dom and "\\sum" not in dom  # no LaTeX left unconverted
    shot = tmp_path / "ce.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    pixels = matplotlib.image.imread(shot)[..., :3].mean(axis=2)
    assert 0.01 < (pixels < 0.8).mean() < 0.5  # ink on the page: neither blank nor black


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (apt: texlive-latex-base)")
def test_jupyter_latex_compiles(tmp_path: Path) -> None:
    display = derive("sigmoid")._repr_latex_()
    assert display.startswith("$$") and "\\intertext" not in display  # MathJax renders math only
    source = tmp_path / "j.tex"
    source.write_text("\\documentclass{article}\\usepackage{amsmath}\\begin{document}\n"
                      f"\\[{display[2:-2]}\\]\n\\end{{document}}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-500:]


def test_a_derivation_renders_itself_in_an_executed_notebook(tmp_path: Path) -> None:
    """Issue 17: in Jupyter a derivation renders itself; the notebook is executed as a reader's would be."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from symdl.printing.mathml import unconverted

    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import symdl\nsymdl.derive('sigmoid')")])
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (shown,) = [o for o in book.cells[0].outputs if o["output_type"] == "execute_result"]
    latex, page = shown["data"]["text/latex"], shown["data"]["text/html"]
    assert latex.startswith("$$\\begin{gathered}") and latex.count("\\begin{aligned}") == 3  # one block per part
    assert r"\sigma" in latex and "verified" in latex
    assert page.startswith("<h2>sigmoid") and page.count("<math") > 20 and unconverted(page) == []
    assert "Every step verified." in page


def test_derives_and_verifies_off_the_main_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a worker thread (a server, a notebook kernel's executor)
        derivation = pool.submit(derive, "sigmoid").result(timeout=120)
    assert derivation.verified
    assert _methods_dropped(derivation.render("text")) == _methods_dropped(derive("sigmoid").render("text"))
