"""Computational graphs: CS231n's staged examples with their published values, forks, gates, files, formats,
the picture, and bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from symdl.cli import main
from symdl.steps.graph import GraphError, derive_graph

NEURON = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"
NEURON_AT = "w0=2,x0=-1,w1=-3,x1=-2,w2=-3"


def test_cs231n_staged_example():
    # CS231n, "Backpropagation, intuitions": f = (x + y) z at x=-2, y=5, z=-4 gives -12 and [-4, -4, 3]
    d = derive_graph("(x + y) * z", "x=-2,y=5,z=-4")
    assert d.value == -12.0
    assert d.gradients == {"x": -4.0, "y": -4.0, "z": 3.0}
    assert [n.definition for n in d.nodes] == ["x + y", "q1 * z"]
    gates = {(r.node, r.operand): r.gate.split(":")[0] for r in d.rows}
    assert gates == {("f", "q1"): "multiply gate", ("f", "z"): "multiply gate", ("q1", "x"): "add gate",
                     ("q1", "y"): "add gate"}
    assert d.verified and all(p.ok for p in d.proofs.values())


def test_cs231n_sigmoid_neuron():
    # CS231n: w = [2, -3, -3], x = [-1, -2]: f = 0.73, dw = [-0.2, -0.39, 0.2], dx = [0.39, -0.59]
    d = derive_graph(NEURON, NEURON_AT)
    g = d.gradients
    assert round(d.value, 2) == 0.73
    assert [round(g["w0"], 2), round(g["w1"], 2), round(g["w2"], 2)] == [-0.2, -0.39, 0.2]
    assert [round(g["x0"], 2), round(g["x1"], 2)] == [0.39, -0.59]
    assert d.verified


@pytest.mark.parametrize(("text", "definitions", "published", "fork"), [
    # Parr & Howard, "The Chain Rules": their intermediate variables u1, u2, ... and their closed forms
    ("sin(x**2)", ["x ** 2", "sin(q1)"], lambda x: math.cos(x**2) * 2 * x, None),
    ("log(sin(x**3)**2)", ["x ** 3", "sin(q1)", "q2 ** 2", "log(q3)"],
     lambda x: 6 * x**2 * math.cos(x**3) / math.sin(x**3), None),
    # the total-derivative chain rule: x is used twice, dy/dx = 1 + 2x (the two paths add)
    ("x + x**2", ["x ** 2", "x + q1"], lambda x: 1 + 2 * x, lambda x: [1, 2 * x]),
    ("sin(x + x**2)", ["x ** 2", "x + q1", "sin(q2)"], lambda x: math.cos(x + x**2) * (1 + 2 * x),
     lambda x: [math.cos(x + x**2), math.cos(x + x**2) * 2 * x]),
    ("x * x**2", ["x ** 2", "x * q1"], lambda x: 3 * x**2, lambda x: [x**2, 2 * x**2]),  # x^2 + x 2x
])
def test_parr_howard_chain_rule_examples(text, definitions, published, fork):
    for x in (0.7, -1.3, 2.0):
        d = derive_graph(text, f"x={x}")
        assert [n.definition for n in d.nodes] == definitions and d.verified
        assert d.gradients["x"] == pytest.approx(published(x), rel=1e-13)
        if fork is None:
            assert d.forks == {}
        else:  # the fork's contributions, one per path, are P&H's two terms
            assert sorted(d.forks["x"]) == pytest.approx(sorted(fork(x)), rel=1e-13)


def test_function_file_written_as_assignments(tmp_path):
    source = tmp_path / "neuron.py"
    source.write_text('def f(w0, x0, w1, x1, w2):\n    """doc"""\n    dot = w0*x0 + w1*x1 + w2\n'
                      '    s = 1 / (1 + exp(-dot))\n    return s\n')
    d = derive_graph(f"{source}:f", NEURON_AT)
    assert "dot" in [n.name for n in d.nodes] and d.output == "s"
    assert d.gradients == pytest.approx(derive_graph(NEURON, NEURON_AT).gradients, rel=1e-14)


def test_fork_sums_and_max_routes():
    # x feeds three uses: its gradient is the sum of the three contributions; max routes to the larger input
    d = derive_graph("max(x, y) * z + x * x", "x=3,y=-4,z=2")
    assert d.gradients == {"x": pytest.approx(2 + 6), "y": 0.0, "z": 3.0}
    assert sorted(d.forks["x"]) == [2.0, 3.0, 3.0]
    assert any(r.gate.startswith("max gate: routes") for r in d.rows)


def test_json_holds_value_and_gradients(capsys):
    assert main(["derive", "--graph", "(x + y) * z", "--at", "x=-2,y=5,z=-4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["value"] == -12.0 and data["gradients"] == {"x": -4.0, "y": -4.0, "z": 3.0}
    assert data["verified"] and data["checks"]["z"]["finite_difference_agrees"]


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "html"])
def test_formats(fmt, capsys):
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT, "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "0.731059" in out and "-0.589836" in out
    if fmt == "html":
        assert "<svg" in out and "multiply gate" in out
    if fmt in ("markdown", "latex"):  # on stdout there is no file beside to reference: the document says so
        assert "no picture: write to a file with -o" in out and "-graph." not in out


def test_picture_files_beside_the_document(tmp_path):
    tex, md = tmp_path / "g.tex", tmp_path / "g.md"
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT, "--format", "latex", "-o", str(tex)]) == 0
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT, "--format", "markdown", "-o", str(md)]) == 0
    assert (tmp_path / "g-graph.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "g-graph.svg").read_bytes()
    assert r"\includegraphics[width=\linewidth]{g-graph.pdf}" in tex.read_text()
    if shutil.which("latexmk") and shutil.which("pdflatex"):
        run = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                             cwd=tmp_path, capture_output=True, timeout=60)
        assert run.returncode == 0, run.stdout[-2000:]
        assert "Overfull" not in (tmp_path / "g.log").read_text(errors="replace")


@pytest.mark.parametrize(("argv", "message"), [
    (["(x+y)*z", "--at", "x=1,y=2"], "no value for z"),
    (["(x+y)*z", "--at", "x=1,y=2,z=3,w=4"], "not an input"),
    (["(x+y)*z"], "needs the point"),
    (["x.__class__", "--at", "x=1"], "attribute access not allowed"),
    (["__import__('os')", "--at", "x=1"], "unknown function '__import__'"),
    (["'abc' * x", "--at", "x=1"], "strings not allowed"),
    (["__import__(x)", "--at", "x=1"], "unknown function '__import__'"),
    (["log(x)", "--at", "x=-1"], "not a finite real number"),
    (["x*y", "--at", "x=one"], "not NAME=NUMBER"),
    (["x * " + "exp(" * 12 + "x" + ")" * 12, "--at", "x=2"], "too large to evaluate"),
    (["exp(exp(exp(exp(x))))", "--at", "x=3"], "too large to evaluate"),  # past float64, not past mpmath
    (["missing.py:f", "--at", "x=1"], "no such file"),
    (["x*y", "--at", "x=1,y=2", "--stationary"], "apply to matrix derivations"),
])
def test_bad_input_one_line_exit_2(argv, message, capsys):
    assert main(["derive", "--graph", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_file_with_statements_outside_the_subset(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text("def f(x):\n    import os\n    return x\n")
    with pytest.raises(GraphError, match="only assignments"):
        derive_graph(f"{source}:f", "x=1")


def docs_blocks(marker: str) -> list[tuple[list[str], str]]:
    """(argv, shown output) of each ``<!-- symdl derive ... -->`` block in docs/derive.md with ``marker``."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "derive.md").read_text()
    found = re.findall(r"<!-- symdl (derive .*?) -->\n```text\n(.*?)```", text, re.DOTALL)
    return [(shlex.split(command), shown) for command, shown in found if marker in command]


def test_docs_show_the_real_output(capsys):
    blocks = docs_blocks("--graph")
    assert blocks, "docs/derive.md shows the CS231n staged example"
    for argv, shown in blocks:
        assert main(argv) == 0
        assert capsys.readouterr().out == shown


def test_kinks_take_pytorchs_subgradient_and_say_so():
    relu = derive_graph("relu(x) * y", "x=0,y=2")
    assert relu.gradients["x"] == 0.0  # relu'(0) = 0, as PyTorch
    assert relu.kinks["x"] == (0.0, 2.0) and relu.verified
    assert "a kink: one-sided derivatives 0 and 2" in relu.render("text")
    tie = derive_graph("max(x, y)", "x=2,y=2")  # torch.maximum splits a tie equally
    assert tie.gradients == {"x": 0.5, "y": 0.5} and tie.notes


def test_cli_function_file(tmp_path, capsys):
    source = tmp_path / "staged.py"
    source.write_text("def f(x, y, z):\n    q = x + y\n    return q * z\n")
    assert main(["derive", "--graph", f"{source}:f", "--at", "x=-2,y=5,z=-4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gradients"] == {"x": -4.0, "y": -4.0, "z": 3.0}
    assert [row["definition"] for row in data["forward"]] == ["input", "input", "input", "x + y", "q * z"]


def test_picture_edges_carry_values_and_gradients():
    from symdl.steps.graph_picture import _graph, _positions, draw

    d = derive_graph(NEURON, NEURON_AT)
    g = _graph(d)
    edge = g.edges["x0", "q1"]
    assert edge["value"] == -1.0 and round(edge["grad"], 2) == 0.39  # CS231n's figure: -1 above, 0.39 below
    assert round(g.edges["q7", "f"]["grad"], 2) == -0.53
    position = _positions(g, d.output)
    assert position["w2"][0] == position["q4"][0] - 1  # an input sits one column left of its first user
    assert draw(d, "png").startswith(b"\x89PNG") and draw(d, "svg") == draw(d, "svg")  # deterministic


# ----------------------------------------------------------------------------------------------- issue 18 gaps
def test_local_derivatives_are_verified_derivations_of_the_step_engine():
    import sympy as sp

    d = derive_graph(NEURON, NEURON_AT)
    rules = {(r.node, r.operand): r.rule for r in d.rows}
    assert rules[("f", "q7")] == "power" and rules[("q6", "q5")] == "exp"  # 1/q7 and exp(q5)
    assert rules[("q4", "w2")] == "sum" and rules[("q1", "w0")] == "constant_multiple"
    node = {nd.name: nd for nd in d.nodes}
    for row in d.rows:
        assert row.derivation is not None and row.derivation.verified and row.method in ("expand", "simplify")
        # ground truth: SymPy's own derivative of the node's operation, independent of the step engine
        local = node[row.node].local
        slot = node[row.node].slots[node[row.node].operands.index(row.operand)]
        names = {sp.Symbol(f"_a{i}", real=True): sp.Symbol(o, real=True)
                 for i, o in zip(node[row.node].slots, node[row.node].operands, strict=True)}
        truth = sp.diff(local, sp.Symbol(f"_a{slot}", real=True)).xreplace(names)
        assert sp.simplify(next(iter(row.derivation.result.values())) - truth) == 0
    sigmoid = derive_graph("sigmoid(w*x)", "w=2,x=-1")
    assert [r.rule for r in sigmoid.rows if r.node == "f"] == ["sigmoid"]
    assert "sigmoid rule" in sigmoid.render("text")


def test_an_unverified_local_derivative_is_never_shown_as_verified(monkeypatch):
    from symdl.steps import api
    from symdl.steps.tree import Check

    real = api.derive_expression

    def planted(*args, **kwargs):  # the engine reports the exp step as failed
        derivation = real(*args, **kwargs)
        if "exp" in str(derivation.expression):
            for step in derivation.steps():
                derivation.checks[id(step)] = Check(False, "failed", "planted")
        return derivation

    monkeypatch.setattr(api, "derive_expression", planted)
    d = derive_graph(NEURON, NEURON_AT)
    assert not d.verified
    assert [r.verified for r in d.rows].count(False) == 1
    assert "NOT VERIFIED" in d.render("text")
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT]) == 1


def test_json_rows_hold_the_step_engines_derivation(capsys):
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["backward"]
    first = rows[0]
    assert first["rule"] == "power" and first["verified"]
    local = first["derivation"]
    assert local["wrt"] == ["q7"] and local["result"] == {"d/dq7": "-1/q7**2"} and local["verified"]
    assert local["steps"][0]["children"][0]["rule"] == "power"


def test_text_is_rich_tables_with_the_rule_per_row(capsys):
    assert main(["derive", "--graph", NEURON, "--at", NEURON_AT]) == 0
    out = capsys.readouterr().out
    assert out.count("╭") == 3 and out.count("╰") == 3  # forward, backward and gradient tables
    row = next(line for line in out.splitlines() if line.startswith("│ q6 ") and "rule" in line)
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[:5] == ["q6", "q5", "exp(q5)", "exp rule", "expand"]
    assert max(len(line) for line in out.splitlines()) <= 120


def test_timeout_bounds_the_graph(capsys, monkeypatch):
    # A local derivation that never returns stands in for SymPy stuck on a hard expression: the bound must
    # not depend on how fast this machine is, nor on what SymPy's caches already hold from earlier tests.
    import time

    from symdl.steps import api

    def stuck(*args, **kwargs):
        while True:  # pure Python that never checks the deadline itself
            sum(range(1000))

    monkeypatch.setattr(api, "derive_expression", stuck)
    start = time.monotonic()
    assert main(["derive", "--graph", "x * sin(x * x)", "--at", "x=0.5", "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not finish within 0.3 s" in err
    assert time.monotonic() - start < 5


def test_a_name_given_twice_in_at_is_refused(capsys):
    assert main(["derive", "--graph", "x*x", "--at", "x=1,x=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x is given twice" in err


def test_budget_stops_a_long_computation_and_leaves_nothing_pending():
    import time

    from symdl.steps import budget

    start = time.monotonic()
    with pytest.raises(budget.TimeoutRefused, match="the loop did not finish within 0.2 s"):
        with budget.within(0.2, "the loop"):
            while True:  # a pure-Python computation that never checks the deadline itself
                sum(range(1000))
    assert time.monotonic() - start < 2
    with budget.within(5.0):
        assert 0 < budget.remaining() <= 5.0
    time.sleep(0.1)  # a finished block's watchdog raises nothing later
    assert budget.remaining() is None
