"""symdl.printing.mathml: LaTeX to MathML for offline HTML, and the detector of unconverted LaTeX."""

from __future__ import annotations

import re

import pytest

from symdl.printing.mathml import MathMLError, latex_to_mathml, unconverted

latex2mathml = pytest.importorskip("latex2mathml.converter")


def test_a_formula_becomes_one_math_element() -> None:
    html = latex_to_mathml(r"\frac{\partial y}{\partial x} = \sigma(x) \left(1 - \sigma(x)\right)", display=True)
    assert html.startswith("<math") and html.endswith("</math>")
    assert 'display="block"' in html and "<mfrac>" in html and "&#x003C3;" in html  # sigma
    assert unconverted(html) == []
    assert 'display="inline"' in latex_to_mathml("x^2", display=False)


def test_aligned_is_laid_out_as_a_table_not_one_line_with_ampersands() -> None:
    source = r"\begin{aligned} a &= b + c \\ &= d \end{aligned}"
    # the pitfall this module exists for: latex2mathml alone prints the alignment points as tokens
    raw = latex2mathml.convert(source)
    assert "&" in unconverted(raw)
    html = latex_to_mathml(source, display=True)
    assert unconverted(html) == []
    assert html.count("<mtr>") == 2 and "<mtable" in html


def test_gathered_and_arg_are_mended() -> None:
    assert unconverted(latex2mathml.convert(r"\arg\max_x f")) == [r"\arg"]
    assert unconverted(latex_to_mathml(r"\arg\max_x f(x)")) == []
    assert latex_to_mathml(r"\begin{gathered} a \\ b \end{gathered}").count("<mtr>") == 2


def test_an_unknown_command_is_refused_naming_it() -> None:
    with pytest.raises(MathMLError, match=r"\\foo"):
        latex_to_mathml(r"\foo{x} + 1")


@pytest.mark.parametrize(("html", "found"), [
    (r"<p>the loss \frac{1}{2}</p>", [r"\frac"]),
    ("<math><mi>&</mi><mo>=</mo></math>", ["&"]),
    ("<math><mo>&amp;</mo></math>", ["&"]),
    ("<p>a & b</p>", ["&"]),
    ("<p>a &amp; b &#x3C3; &lt;</p>", []),
    (r"<pre><code>print('\n')</code></pre><svg><text>\alpha</text></svg>", []),
])
def test_unconverted_reports_commands_and_stray_ampersands_outside_code(html: str, found: list[str]) -> None:
    assert unconverted(html) == found


def test_a_named_function_is_an_identifier_beside_its_bracket_as_sin_is() -> None:
    # latex2mathml alone makes \operatorname{relu} an operator, which MathML spaces like '+': "relu ( u )"
    assert "<mo>relu</mo>" in latex2mathml.convert(r"\operatorname{relu}(u)")
    html = latex_to_mathml(r"\operatorname{relu}(u) + \sin(u) + \operatorname{step}(u_{1})")
    assert "<mi>relu</mi>" in html and "<mi>step</mi>" in html and "<mi>sin</mi>" in html
    assert re.search(r"<mo>[A-Za-z]{2,}</mo>", html) is None
    assert "<mo>&#x0002B;</mo>" in html  # a real operator stays one
