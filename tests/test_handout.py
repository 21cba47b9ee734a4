"""Every handout built once (module fixture) and checked the way a reader meets it.

HTML opened in headless Chromium (math present, no error text, a screenshot that is not blank), LaTeX
compiled to PDF (page counts in range), notebooks executed with nbclient. Tests that need Chromium,
TeX or a Jupyter kernel skip when it is absent (CI installs them).
Set SYMDL_HANDOUT_SCREENSHOTS=DIR to keep the screenshots (docs/handouts.md describes them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from symdl.handouts import TOPICS, build
from symdl.handouts.model import Code, Equation, Figure, Handout
from symdl.handouts.output import compile_pdf, write, write_index
from symdl.handouts.render import RENDERERS
from symdl.handouts.render.latex import UNICODE
from symdl.printing.mathml import unconverted

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
TEX = shutil.which("pdflatex")

#: Expected PDF page counts (measured: activations 16, calculus 12, backpropagation 9 (with the matrix engine's
#: derivations), optimizers 8, probability 7, others 5).
PAGES = {"linear-algebra": (3, 9), "calculus": (8, 16), "probability": (4, 10), "gradient-descent": (3, 8),
         "backpropagation": (6, 12), "activations": (10, 20), "convolution": (3, 8), "optimizers": (5, 12)}


@pytest.fixture(scope="module")
def handouts() -> dict[str, Handout]:
    """Every topic built once, seed 0, with solutions."""
    return {topic: build(topic, seed=0) for topic in TOPICS}


@pytest.fixture(scope="module")
def folder(handouts: dict[str, Handout], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every handout written in every text format, plus the index page."""
    out = tmp_path_factory.mktemp("handouts")
    for handout in handouts.values():
        write(handout, list(RENDERERS), out)
    write_index(list(handouts.values()), list(RENDERERS), out)
    return out


def _blocks(handout: Handout, kind: type) -> list:
    return [b for s in handout.sections for b in s.blocks if isinstance(b, kind)]


# --------------------------------------------------------------------------- the model
def test_the_eight_topics_of_the_issue_in_order() -> None:
    from symdl.cli.handout import TOPIC_NAMES

    assert tuple(TOPICS) == TOPIC_NAMES == ("linear-algebra", "calculus", "probability", "gradient-descent",
                                            "backpropagation", "activations", "convolution", "optimizers")


@pytest.mark.parametrize("topic", list(TOPICS))
def test_each_handout_has_goals_verified_formulas_examples_plots_and_exercises(
        handouts: dict[str, Handout], topic: str) -> None:
    handout = handouts[topic]
    assert len(handout.goals) >= 3
    assert len(handout.formulas) >= 4
    for formula in handout.formulas:
        assert formula.source and formula.method, formula.key
    assert _blocks(handout, Figure), "every handout has a plot"
    assert len(handout.exercises) >= 2
    outputs = "".join(b.output for b in _blocks(handout, Code))
    assert "finite differences agree" in outputs, "worked examples are checked against finite differences"
    keys = [f.key for f in handout.formulas]
    assert len(keys) == len(set(keys))


def test_activations_cover_every_catalog_activation(handouts: dict[str, Handout]) -> None:
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    keys = {f.key.split(".")[0].split("[")[0] for f in handouts["activations"].formulas}
    assert {name for name, op in ACTIVATIONS_AND_LOSSES.items() if op.family == "activation"} <= keys


def test_every_catalog_activation_is_plotted(handouts: dict[str, Handout]) -> None:
    """Issue 19: every catalog activation and its derivative plotted, the row ones (softmax, ...) included.

    Matplotlib's SVG keeps each drawn text as a comment before its glyphs: every activation's name is a panel title.
    """
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    titles = set(re.findall(r"<!-- ([a-z0-9_]+) -->", "".join(f.svg for f in _blocks(handouts["activations"], Figure))))
    names = {name for name, op in ACTIVATIONS_AND_LOSSES.items() if op.family == "activation"}
    assert {"softmax", "log_softmax", "softmin", "relu", "gelu"} <= names
    assert names <= titles, sorted(names - titles)


def test_kl_between_gaussians_is_derived_with_every_step_verified(handouts: dict[str, Handout]) -> None:
    """Issue 19: the KL divergence's closed form derived: the log-ratio identity and p's second moment, each
    proven symbolically, lead to the closed form, which quadrature checks as a whole."""
    formulas = {f.key: f for f in handouts["probability"].formulas}
    keys = list(formulas)
    assert keys.index("kl.log_ratio") < keys.index("kl.second_moment") < keys.index("kl.gaussians")
    assert formulas["kl.log_ratio"].method.startswith("symbolic")
    assert "symbolic (SymPy integrate)" in formulas["kl.second_moment"].method
    assert r"\sigma_{1}^{2} + \left(\mu_{1} - m\right)^{2}" in formulas["kl.second_moment"].latex
    assert "quadrature" in formulas["kl.gaussians"].method


def test_gaussian_maximum_likelihood_is_derived_from_the_log_likelihood(handouts: dict[str, Handout]) -> None:
    """Issue 19: a Gaussian's mean and variance derived: the log-likelihood and its two partial derivatives, each
    checked against SymPy's own, come before the estimates; a wrong derivative is refused."""
    import sympy as sp

    from symdl.handouts.topics.probability import i, loglikelihood_check, n, variance, xs

    keys = [f.key for f in handouts["probability"].formulas]
    steps = ["mle.loglikelihood", "mle.gradient_mean", "mle.gradient_variance", "mle.mean", "mle.variance"]
    assert [keys.index(k) for k in steps] == sorted(keys.index(k) for k in steps)
    squares = sp.Sum((xs[i] - sp.Symbol("mu", real=True)) ** 2, (i, 1, n))
    right = -n / (2 * variance) + squares / (2 * variance ** 2)
    wrong = -n / variance + squares / (2 * variance ** 2)  # the log's 1/2 forgotten
    assert loglikelihood_check(right, variance)()[0]
    holds, why = loglikelihood_check(wrong, variance)()
    assert not holds and "fails with 1 points" in why


def test_normal_equations_follow_the_least_squares_gradient(handouts: dict[str, Handout]) -> None:
    """Issue 19: the normal equations derived: printed as a formula right after the verified gradient."""
    formulas = {f.key: f for f in handouts["linear-algebra"].formulas}
    keys = list(formulas)
    assert keys.index("least_squares.normal_equations") == keys.index("least_squares.gradient") + 1
    assert formulas["least_squares.normal_equations"].latex == r"X^{\top} X w = X^{\top} y"
    # one spelling of the transpose in the handout, the matrix engine's (SymPy's own is X^{T})
    assert not any("^{T}" in f.latex for f in formulas.values())
    assert formulas["least_squares.normal_equations"].method.startswith("symbolic (expand)")


def test_backpropagation_derives_the_matrix_form_with_the_matrix_engine(handouts: dict[str, Handout]) -> None:
    """Issue 19: D = W X gives dW = dD X^T and dX = W^T dD, derived step by step by symdl.steps.matrix (not the
    catalog's layer formulas), and the engine's formulas evaluated at the kernels' numbers agree with them."""
    formulas = {f.key: f for f in handouts["backpropagation"].formulas}
    layer = formulas["backprop.linear_matrix"]
    assert layer.source.startswith("matrix derivation of sum(dD * (W @ X))") and "symdl.steps.matrix" in layer.method
    assert r"\frac{\partial f}{\partial W} &= \mathrm{dD} X^\top" in layer.latex
    assert r"\frac{\partial f}{\partial X} &= W^\top \mathrm{dD}" in layer.latex
    assert layer.latex.count("[verified") == 3  # every step's check shown
    network = formulas["backprop.network_matrix"].latex
    assert r"\operatorname{step}" in network and r"\left(\left(W_{2}^\top \mathrm{dZ}\right) \odot" in network
    assert "sum(y) = 1" in formulas["backprop.cross_entropy_matrix"].method
    assert not [k for k in formulas if k.startswith(("linear", "relu", "cross_entropy"))], "catalog forms replaced"
    outputs = "".join(b.output for b in _blocks(handouts["backpropagation"], Code))
    assert "the engine's dW1, db1, dW2, db2, dX agree with the kernels" in outputs
    assert outputs.count("finite differences agree") >= 3  # the neuron, dW1 and dX


def test_prose_uses_only_characters_the_latex_renderer_declares(handouts: dict[str, Handout]) -> None:
    for handout in handouts.values():
        texts = [handout.title, handout.summary, *handout.goals]
        for section in handout.sections:
            texts.append(section.title)
            texts += [getattr(b, attr) for b in section.blocks for attr in ("text", "caption", "question", "answer")
                      if isinstance(getattr(b, attr, None), str)]
        strange = {c for text in texts for c in text if not c.isascii() and c not in UNICODE}
        assert not strange, (handout.topic, strange)


# --------------------------------------------------------------------------- HTML as a reader sees it
@pytest.mark.parametrize("topic", list(TOPICS))
def test_html_is_self_contained_and_holds_only_converted_math(
        folder: Path, handouts: dict[str, Handout], topic: str) -> None:
    html = (folder / f"{topic}.html").read_text(encoding="utf-8")
    assert unconverted(html) == []
    assert not re.search(r"""(src|href)=["']?(https?:|//)|<script|<link|@import|url\((?!#)""", html)
    handout = handouts[topic]
    equations = len(_blocks(handout, Equation))
    assert html.count("<math") == equations + len(handout.formulas)  # the body, then the verification table
    assert html.count("<svg") >= len(_blocks(handout, Figure))
    assert html.count('class="exercise"') == len(handout.exercises)
    answers = html[html.index('id="answers"'):]
    for exercise in handout.exercises:
        assert f"<li>{exercise.answer} " in answers


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("topic", [*TOPICS, "index"])
def test_chromium_renders_the_math_and_a_page_that_is_not_blank(
        folder: Path, handouts: dict[str, Handout], topic: str, tmp_path: Path) -> None:
    import matplotlib.image

    page = (folder / f"{topic}.html").resolve()
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert "</body>" in dom
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(svg|pre|style)\b.*?</\1>", " ", dom, flags=re.S))
    for bad in ("Traceback", "Error:", "Exception", "undefined", "NaN"):
        assert bad not in text, bad
    if topic != "index":
        assert len(re.findall(r"<math\b", dom)) == len(_blocks(handouts[topic], Equation)) + len(
            handouts[topic].formulas)
        assert len(re.findall(r"<(mfrac|msub|msup|mrow)\b", dom)) > 10
    else:
        assert all(f'href="{t}.html"' in dom for t in TOPICS)
    keep = os.environ.get("SYMDL_HANDOUT_SCREENSHOTS")
    shot = (Path(keep) if keep else tmp_path) / f"{topic}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    _chromium(f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", page.as_uri(),
              profile=tmp_path / "profile")
    pixels = matplotlib.image.imread(shot)[..., :3].mean(axis=2)
    assert pixels.shape == (1600, 1200)
    inked = (pixels < 0.8).mean()
    assert 0.01 < inked < 0.5, f"screenshot is blank or black: {inked:.3f} of pixels dark"
    assert pixels[:200].std() > 0.05  # the title area holds text


#: Appended to a copy of a page: lists every formula, code block or table cell wider than its box (which would
#: scroll sideways), measured by Chromium's layout after the page loaded.
_OVERFLOW_SCRIPT = """<script>window.addEventListener('load', () => { const wide = [];
document.querySelectorAll('math, pre, td').forEach((e) => { if (e.scrollWidth > e.clientWidth + 1)
  wide.push(e.tagName + ' ' + e.scrollWidth + '>' + e.clientWidth + ' ' + e.textContent.slice(0, 60)); });
const out = document.createElement('div'); out.id = 'too-wide'; out.textContent = JSON.stringify(wide);
document.body.appendChild(out); });</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("topic", list(TOPICS))
def test_nothing_scrolls_sideways_in_chromium(folder: Path, topic: str, tmp_path: Path) -> None:
    """Issue 19: long derivatives and code lines fit the page's column at the screenshot's window size."""
    import html as html_module

    page = tmp_path / f"{topic}.html"
    page.write_text((folder / f"{topic}.html").read_text(encoding="utf-8").replace("</body>",
                                                                                 _OVERFLOW_SCRIPT + "</body>"))
    dom = _chromium("--window-size=1200,1600", "--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    found = re.search(r'<div id="too-wide">(.*?)</div>', dom, re.S)
    assert found, "the measuring script did not run"
    assert json.loads(html_module.unescape(found.group(1))) == []


def test_long_code_lines_are_wrapped_in_the_latex_without_losing_a_character(
        handouts: dict[str, Handout]) -> None:
    from symdl.handouts.render.latex import CODE_COLUMNS, _code_line

    marker = r" \ensuremath{\hookleftarrow}"
    wrapped = 0
    for handout in handouts.values():
        for block in _blocks(handout, Code):
            for line in (block.source + block.output).splitlines():
                rows = _code_line(line)
                assert all(len(r.removesuffix(marker).replace(r"\textbackslash{}", "\\").replace(r"\{", "{")
                               .replace(r"\}", "}")) <= CODE_COLUMNS for r in rows), rows
                assert all(r.endswith(marker) for r in rows[:-1]) and not rows[-1].endswith(marker)
                joined = " ".join(r.removesuffix(marker).strip() for r in rows)
                unescaped = joined.replace(r"\textbackslash{}", "\\").replace(r"\{", "{").replace(r"\}", "}")
                assert unescaped.split() == line.split()  # every character kept, in order
                wrapped += len(rows) > 1
    assert wrapped > 0  # the handouts do have lines wider than the page: the wrapping is exercised


# --------------------------------------------------------------------------- LaTeX compiled
def pdf_pages(data: bytes) -> int:
    """Page count read from the PDF itself (the page tree's /Count, object streams decompressed)."""
    chunks = [data]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            chunks.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    counts = [int(c) for chunk in chunks for pattern in (rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)",
                                                          rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")
              for c in re.findall(pattern, chunk)]
    return max(counts)


@pytest.mark.skipif(TEX is None, reason="TeX not installed (apt-get install texlive-latex-base latexmk)")
@pytest.mark.parametrize("topic", list(TOPICS))
def test_latex_compiles_to_a_pdf_of_the_expected_length(folder: Path, topic: str) -> None:
    tex = folder / f"{topic}.tex"
    assert tex.read_text(encoding="utf-8").startswith("% Generated by symdl handout")
    compiled = compile_pdf(tex)
    low, high = PAGES[topic]
    assert low <= pdf_pages(compiled.pdf.read_bytes()) <= high
    # formulas wider (or taller) than the text are scaled to fit, long code lines are wrapped, long words in prose
    # may stretch the spaces: nothing sticks into the margin by more than a reader would notice
    overfull = [float(w) for w in re.findall(r"Overfull \\hbox \(([0-9.]+)pt too wide", compiled.log)]
    assert max(overfull, default=0.0) < 2.0, overfull


@pytest.mark.skipif(TEX is None, reason="TeX not installed (apt-get install texlive-latex-base latexmk)")
def test_a_long_derivation_breaks_across_pages_and_a_wide_one_is_scaled(tmp_path: Path) -> None:
    """A derivation (one aligned block) as wide as the text at most is set as align*, at full size across
    pages (it was scaled down to fit one page); one wider than the text is scaled to its width."""
    from symdl.handouts.render.latex import _display, _preamble

    long = r"\begin{aligned}" + r" \\ ".join(rf"u_{{{k}}} &= u_{{{k - 1}}} + {k}" for k in range(1, 120)) + r"\end{aligned}"
    wide = r"\begin{aligned}v &= " + " + ".join(rf"x_{{{k}}}^{{2}}" for k in range(60)) + r"\end{aligned}"
    assert r"\fitalign{" in _display(long) and r"\begin{aligned}" not in _display(long)
    tex = tmp_path / "derivations.tex"
    tex.write_text(_preamble("Derivations") + "\\begin{document}\n" + _display(long) + "\n" + _display(wide)
                   + "\n\\end{document}\n", encoding="utf-8")
    compiled = compile_pdf(tex)
    assert pdf_pages(compiled.pdf.read_bytes()) >= 3  # 119 lines at full size: more than two pages
    overfull = [float(w) for w in re.findall(r"Overfull \\hbox \(([0-9.]+)pt too wide", compiled.log)]
    assert max(overfull, default=0.0) < 2.0, overfull


@pytest.mark.skipif(TEX is None or shutil.which("pdftotext") is None,
                    reason="TeX or pdftotext not installed (apt-get install texlive-latex-base latexmk poppler-utils)")
def test_comparisons_and_bars_in_prose_read_as_written_in_the_pdf(tmp_path: Path) -> None:
    """The default (OT1) text font sets ``>`` as an inverted question mark, ``<`` as an inverted exclamation
    mark and ``|`` as a dash ("the integral runs over z ¿ 0" in the calculus handout): the escape writes
    them as text commands, and the PDF's own text reads as written."""
    from symdl.handouts.render.latex import _preamble, escape

    sentence = "the integral runs over z > 0, where p < 1 and |x| = 2"
    tex = tmp_path / "prose.tex"
    tex.write_text(_preamble("Prose") + "\\begin{document}\n" + escape(sentence) + "\n\\end{document}\n",
                   encoding="utf-8")
    compiled = compile_pdf(tex)
    text = subprocess.run(["pdftotext", str(compiled.pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert sentence in " ".join(text.split()), text


def test_pdf_without_tex_says_how_to_install_it(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from symdl.handouts.output import TexMissingError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TexMissingError, match="apt-get install texlive-latex-base"):
        compile_pdf(folder / "convolution.tex")


# --------------------------------------------------------------------------- notebooks executed
@pytest.mark.parametrize("topic", list(TOPICS))
def test_markdown_and_notebook_hold_the_math_and_every_example(
        folder: Path, handouts: dict[str, Handout], topic: str) -> None:
    import nbformat

    handout = handouts[topic]
    markdown = (folder / f"{topic}.md").read_text(encoding="utf-8")
    assert markdown.count("$$\n") == 2 * (len(_blocks(handout, Equation)) + len(handout.formulas))
    for figure in _blocks(handout, Figure):
        assert (folder / f"{topic}_files" / f"{figure.name}.svg").read_text(encoding="utf-8").startswith("<svg")
    book = nbformat.read(folder / f"{topic}.ipynb", as_version=4)
    nbformat.validate(book)
    sources = [c.source for c in book.cells if c.cell_type == "code"]
    assert len(sources) == 1 + len(_blocks(handout, Code)) + len(_blocks(handout, Figure))


def _execute(path: Path) -> list[dict]:
    """Run a notebook with nbclient in its folder; the code cells' outputs (in a worker process)."""
    import nbclient
    import nbformat

    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return [dict(o) for c in book.cells if c.cell_type == "code" for o in c.outputs]


@pytest.fixture(scope="module")
def executed(folder: Path) -> dict[str, list[dict]]:
    """Every notebook executed once, two at a time (each in its own kernel)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2) as pool:
        runs = {topic: pool.submit(_execute, folder / f"{topic}.ipynb") for topic in TOPICS}
        return {topic: run.result() for topic, run in runs.items()}


@pytest.mark.parametrize("topic", list(TOPICS))
def test_notebook_runs_without_error(executed: dict[str, list[dict]], topic: str) -> None:
    outputs = executed[topic]
    assert not [o for o in outputs if o["output_type"] == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "finite differences agree" in printed
    assert any(o["output_type"] == "display_data" and "image/png" in o["data"] for o in outputs), "plots are drawn"


# --------------------------------------------------------------------------- seeds and the answer key
def test_seed_changes_the_numbers_and_no_solutions_drops_the_key(handouts: dict[str, Handout]) -> None:
    other = build("convolution", seed=7, solutions=False)
    assert [e.question for e in other.exercises] != [e.question for e in handouts["convolution"].exercises]
    html = RENDERERS["html"](other)["convolution.html"]
    markdown = RENDERERS["md"](other)["convolution.md"]
    tex = RENDERERS["tex"](other)["convolution.tex"]
    notebook = json.loads(RENDERERS["ipynb"](other)["convolution.ipynb"])
    cells = "".join("".join(c["source"]) for c in notebook["cells"])
    for text in (html, markdown, tex, cells):
        assert "Answer key" not in text
        assert "Exercise 3" in text
    assert "Answer key (seed 0)" in RENDERERS["html"](handouts["convolution"])["convolution.html"]


def test_rendering_is_deterministic(handouts: dict[str, Handout]) -> None:
    handout = handouts["gradient-descent"]
    for render in RENDERERS.values():
        assert render(handout) == render(handout)
