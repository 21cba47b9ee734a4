"""Every catalog activation and loss derived step by step: each step verified, the textbook endpoints
reached, kinks stated, and the LaTeX compiled on A4 without an overfull line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import sympy as sp

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.functions import normal_cdf, sigmoid
from symdl.steps import Derivation, Rewrite
from symdl.steps.catalog import catalog_names, derive_op

ENTRIES = [(name, variant) for name in catalog_names()
           for variant in (ACTIVATIONS_AND_LOSSES[name].formulas if ACTIVATIONS_AND_LOSSES[name].variant_param else [""])]
#: Overfull boxes up to this wide are TeX's rounding, not a formula off the page.
OVERFULL_POINTS = 3.0


@cache
def _derived(name: str, variant: str) -> Derivation:
    return derive_op(name, variant)


@pytest.mark.parametrize(("name", "variant"), ENTRIES, ids=[f"{n}-{v}" if v else n for n, v in ENTRIES])
def test_every_step_verifies(name: str, variant: str) -> None:
    derivation = _derived(name, variant)
    assert derivation.verified, [(s.rule_name(), c) for s, c in derivation.failures()]
    rules = {s.rule_name() for s in derivation.steps()}
    assert "sympy_diff" not in rules  # the rules cover the catalog: no fallback step
    assert derivation.parts[0].title.startswith(("textbook case", "by the known"))  # the textbook case first
    if ACTIVATIONS_AND_LOSSES[name].formula(variant).stable is not None:
        assert any(p.title == "what the kernel computes" for p in derivation.parts)


#: Catalog parameters that SymPy's parse_expr reads as its own functions (the Beta and Gamma functions) unless told.
SYMPY_NAMES = ("beta", "gamma")


def _texts(step: dict) -> list[str]:
    return [step["expression"], step["result"], *(t for c in step["children"] for t in _texts(c))]


def test_every_json_text_of_every_entry_parses_with_both_parsers() -> None:
    """Issue 17: every expression and result text in JSON is read by symdl's parser and by SymPy's (the kernels'
    masks printed as where(c, 1, 0): `indicator` is no name either parser knows). SymPy's reads them with the
    local_dict the JSON's own ``symbols`` give, nothing else: it reads beta and gamma as its functions."""
    from sympy.parsing.sympy_parser import parse_expr

    from symdl.expr import parse

    failures, named = [], set()
    for name, variant in ENTRIES:
        data = json.loads(_derived(name, variant).render("json"))
        local = {symbol: sp.Symbol(symbol) for symbol in data["symbols"]}
        named |= set(data["symbols"])
        texts = [data["expression"], *data["result"].values(), *(t for s in data["steps"] for t in _texts(s))]
        for text in dict.fromkeys(texts):
            for reader in (parse, lambda t: parse_expr(t, local_dict=local)):
                try:
                    parsed = reader(text)
                    assert {s.name for s in parsed.free_symbols} <= set(data["symbols"]), "a symbol not listed"
                except Exception as error:  # noqa: BLE001 - every failure is collected and reported
                    failures.append((name, variant, text[:80], f"{type(error).__name__}: {error}"[:120]))
    assert not failures, failures[:10]
    assert set(SYMPY_NAMES) <= named  # the names that need the local_dict are among the catalog's


def _final(derivation: Derivation, title_start: str) -> sp.Expr:
    return next(p for p in derivation.parts if p.title.startswith(title_start)).result


def test_sigmoid_reaches_sigma_one_minus_sigma_from_its_definition() -> None:
    x = sp.Symbol("x", real=True)
    derivation = _derived("sigmoid", "")
    part = next(p for p in derivation.parts if p.title.startswith("from the definition"))
    assert part.tree.expr == 1 / (1 + sp.exp(-x))
    assert part.tree.eval() == sp.exp(-x) / (1 + sp.exp(-x)) ** 2
    assert part.result == sigmoid(x) * (1 - sigmoid(x))  # structurally: the textbook form itself
    assert [r.reason.split(":")[0] for r in part.rewrites][:2] == ["split the square in the denominator",
                                                                    "name sigma(x) = 1/(1 + exp(-x))"]


def test_textbook_identities() -> None:
    x = sp.Symbol("x", real=True)
    assert _final(_derived("tanh", ""), "by the known") == 1 - sp.tanh(x) ** 2
    assert _final(_derived("softplus", ""), "by the known") == sigmoid(x)
    gelu = _final(_derived("gelu", "none"), "textbook case")
    assert gelu == normal_cdf(x) + x * sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


def test_softmax_cross_entropy_is_p_minus_t_under_the_stated_assumption() -> None:
    derivation = _derived("cross_entropy", "")
    p, t = sp.IndexedBase("p", real=True), sp.IndexedBase("t", real=True)
    j = sp.Symbol("j", integer=True, positive=True)
    assert derivation.result["d/dx_j"] == p[j] - t[j]
    (lhs, rhs, words), = derivation.assumptions
    assert rhs == 1 and isinstance(lhs, sp.Sum) and "distribution" in words
    last = next(p for p in derivation.parts if p.key == "d/dx_j").rewrites[-1]
    assert last.given == ((lhs, 1),) and "sum_k t_k = 1" in last.reason
    text = derivation.render("text")
    assert "assume sum[k=1..n](t_k) = 1" in text and "= p_j - t_j" in text
    assert any(p.title == "general case" for p in derivation.parts)  # weights and label smoothing after


def test_softmax_jacobian() -> None:
    derivation = _derived("softmax", "")
    p = sp.IndexedBase("p", real=True)
    i, j = sp.symbols("i j", integer=True, positive=True)
    assert derivation.result["d/dx_j"] == p[i] * (sp.KroneckerDelta(i, j) - p[j])


def test_named_subexpressions_print_by_their_names_not_written_out_again() -> None:
    """Issue 17: a derivation names recurring subexpressions (let p_j = softmax_j(x), q_k, u) instead of repeating
    them: after the let, every step prints the name (13 more copies of q_k's value and 11 of u's before)."""
    text = _derived("cross_entropy", "").render("text")
    assert text.count("exp(x_j)/sum") == 2  # the let, and the rewrite taking p_j out of the sum says what it is
    assert text.count("label_smoothing/n") == 1  # the let q_k alone
    assert "  = p_j   [verified (instance)]" in text  # d/dx_j log sum_l exp(x_l), whose sum runs over l, not k
    assert "-sum[k=1..n](log(p_k)*q_k*weight_k)" in text  # the definition, in the names
    gelu = _derived("gelu", "tanh").render("text")
    assert gelu.count("(8943*x**3/200000 + x)/sqrt(pi)") == 2  # the let u, and the chain rule that names it
    assert "d/dx[tanh(u)] = d/du[tanh(u)]*d/dx[u]" in gelu  # the chain rule's factors in the rule's order


def test_kinks_are_stated_with_pytorchs_subgradient() -> None:
    text = _derived("relu", "").render("text")
    assert "kink at x = 0: PyTorch's subgradient there is 0" in text
    assert "kink at x = 3" in _derived("hardsigmoid", "").render("text")


def test_clamps_are_named_once() -> None:
    derivation = _derived("gelu", "tanh")
    x = sp.Symbol("x", real=True)
    (let,) = [let for let in derivation.lets if let.value.has(sp.Max)]
    assert let.value == sp.Max(-30, sp.Min(30, x))
    text = derivation.render("text")
    assert text.count("Max(-30, Min(30, x))") == 1 and "clamped to [-30, 30]" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (apt: texlive-latex-base)")
def test_every_catalog_derivation_compiles_on_a4_without_overfull_lines(tmp_path: Path) -> None:
    failures = []
    for name, variant in ENTRIES:
        source = tmp_path / f"{name}{variant}.tex"
        source.write_text(_derived(name, variant).render("latex"))
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        log = source.with_suffix(".log").read_text(errors="replace")
        if run.returncode != 0:
            failures.append(f"{name}{variant}: does not compile: {run.stdout[-300:]}")
            continue
        wide = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
        if any(w > OVERFULL_POINTS for w in wide):
            failures.append(f"{name}{variant}: overfull by {max(wide)} pt")
        assert "[verified" in source.read_text()
    assert not failures, failures


@pytest.mark.parametrize("name", ["adam_bias_correction", "momentum_steady_state"])
def test_optimizer_facts_step_by_step_from_the_catalogs_rules(name: str) -> None:
    from symdl.steps import derive

    derivation = derive(name)
    assert derivation.verified, derivation.failures()
    g, lr, mu = sp.Symbol("g", real=True), sp.Symbol("lr", real=True), sp.Symbol("mu", positive=True)
    expected = {"adam_bias_correction": {"m_hat": g, "v_hat": g**2},
                "momentum_steady_state": {"step": -lr * g / (1 - mu)}}[name]
    assert {k: sp.simplify(v - expected[k]) for k, v in derivation.result.items()} == dict.fromkeys(expected, 0)
    assert all(isinstance(s, Rewrite) for s in derivation.steps())
    assert any(r.given for r in derivation.steps())  # the induction hypothesis / fixed point, stated and checked


def test_a_wrong_induction_hypothesis_is_caught() -> None:
    from symdl.steps.facts import adam_bias_correction

    derivation = adam_bias_correction()
    first = derivation.parts[0].rewrites[0]
    (previous, hypothesis), = first.given
    wrong = replace(first, given=((previous, hypothesis * 2),))  # m_(t-1) twice too large
    derivation.parts[0] = replace(derivation.parts[0], rewrites=(wrong, *derivation.parts[0].rewrites[1:]))
    derivation.verify()
    assert not derivation.check(wrong).ok
