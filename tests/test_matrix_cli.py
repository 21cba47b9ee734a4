"""Matrix calculus from the command line: every format, bad input on one line with exit 2, and random
compositions of the operations (hypothesis) whose derived gradient matches finite differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symdl.cli import main
from symdl.steps.matrix import derive_matrix, evaluate, parse_matrix, parse_shapes

LSQ = ["norm(X@w - y)**2", "--wrt", "w", "--shape", "X=n,d", "--shape", "w=d", "--shape", "y=n"]


@pytest.mark.parametrize("fmt", ["text", "latex", "markdown", "html", "json"])
def test_every_format(fmt, capsys):
    assert main(["derive", *LSQ, "--format", fmt]) == 0
    out = capsys.readouterr().out
    marker = {"text": "2 * X.T @ (X @ w - y)", "latex": r"2 X^\top \left(X w - y\right)",
              "markdown": r"2 X^\top", "html": "<math", "json": '"w": "2 * X.T @ (X @ w - y)"'}[fmt]
    assert marker in out
    if fmt == "json":
        data = json.loads(out)
        assert data["verified"] and data["layout"] == "gradient has the variable's shape"
    if fmt == "latex":
        assert out.count(r"\begin{align*}") == out.count(r"\end{align*}") == 1


def test_output_file_and_softmax_regression(tmp_path):
    path = tmp_path / "out.json"
    assert main(["derive", "-sum(y * log(softmax(W @ x)))", "--wrt", "W", "--shape", "W=k,d", "--shape", "x=d",
                 "--shape", "y=k", "--assume", "sum(y)=1", "--format", "json", "-o", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["result"] == {"W": "outer(softmax(W @ x) - y, x)"}
    assert data["general"] == {"W": "outer(sum(y) * softmax(W @ x) - y, x)"}


@pytest.mark.parametrize(("argv", "message"), [
    (["X @ w", "--shape", "X=n,d", "--shape", "w=k"], "do not conform"),
    (["sum(X @ v)", "--shape", "X=n,d"], "name 'v' has no declared shape"),
    (["X @ w", "--shape", "X=n,d", "--shape", "w=d"], "not a scalar"),
    (["__import__('os').system('true')", "--shape", "X=n,d"], "only named functions"),
    (["__import__('os')", "--shape", "X=n,d"], "unknown function '__import__'"),
    (["X.__class__", "--shape", "X=n,d"], "attribute .__class__ not allowed"),
    (["sum(X)", "--shape", "X=n,d,k"], "scalars, vectors and matrices only"),
    (["sum(X)", "--shape", "X"], "must read NAME=SIZES"),
    (["trace(X)", "--shape", "X=n,d"], "square matrix"),
    (["sum(X)", "--shape", "X=n,d", "--wrt", "Y"], "not a declared variable"),
    (["sum(X @ w)", "--shape", "X=n,d", "--shape", "w=d", "--shape", "A=d,d", "--wrt", "A"],
     "--wrt A: sum(X @ w) does not read it (it reads X, w)"),  # a silent zero gradient: likely a typo
    (["sum(X @ v)", "--shape", "X=n,d"], "(--shape v= for a scalar)"),
    (["sum(X)", "--shape", "X=n,d", "--assume", "X > 0"], "not understood"),
    (["sum(X)" + "+1" * 1000, "--shape", "X=n,d"], "limit"),
    (["W @ x", "--shape", "W=m,n", "--shape", "x=n", "--wrt", "W", "--jacobian"], "tensor"),
    (["x*x", "--shape", "x=,,,"], "empty size in the shape of x"),
    (["sum(X)", "--shape", "X=n,,d"], "empty size in the shape of X"),
    (["x @ x", "--shape", "x=n", "--assume", "symmetric(x)"], "must be a declared square matrix"),
    (["x @ A @ x", "--shape", "x=n", "--shape", "A=n,n", "--assume", "symmetric(B)"], "square matrix"),
    (["A @ x", "--shape", "x=n", "--shape", "A=n,n", "--wrt", "x", "--jacobian", "--stationary"],
     "--stationary applies to gradients"),
    ([*LSQ, "--timeout", "0.001"], "did not finish within 0.001 s"),
])
def test_bad_input_one_line_exit_2(argv, message, capsys):
    assert main(["derive", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("symdl: error:") and message in err



def test_the_default_variables_are_those_the_expression_reads(capsys):
    # shapes declared once for several expressions: the unused ones get no zero gradient and no note
    shapes = ["--shape", "X=n,d", "--shape", "A=d,d", "--shape", "w=d", "--shape", "B=d,d"]
    assert main(["derive", "w @ A @ w", *shapes, "--format", "json"]) == 0
    derivation = json.loads(capsys.readouterr().out)
    assert list(derivation["result"]) == ["A", "w"]
    notes = " ".join(derivation["notes"])
    assert "A is treated as unconstrained (its d^2 entries independent)" in notes and "B is" not in notes

# ----------------------------------------------------------------------------------------------- hypothesis
VECTORS = st.recursive(st.sampled_from(["x", "v"]), lambda inner: st.one_of(
    st.builds("A @ ({})".format, inner), st.builds("A.T @ ({})".format, inner),
    st.builds("tanh({})".format, inner), st.builds("sigmoid({})".format, inner), st.builds("silu({})".format, inner),
    st.builds("leaky_relu({})".format, inner), st.builds("relu({}) + 0.5 * ({})".format, inner, inner),
    st.builds("({}) * ({})".format, inner, inner), st.builds("({}) + ({})".format, inner, inner),
    st.builds("({}) - 0.5 * ({})".format, inner, inner), st.builds("softmax({})".format, inner),
    st.builds("outer({}, {}) @ v".format, inner, inner)), max_leaves=3)
SCALARS = st.one_of(
    st.builds("sum({})".format, VECTORS), st.builds("({}) @ ({})".format, VECTORS, VECTORS),
    st.builds("norm({})**2".format, VECTORS), st.builds("logsumexp({})".format, VECTORS),
    st.builds("trace(outer({}, {}) @ A)".format, VECTORS, VECTORS),
    st.builds("v @ inv(A @ A.T + eye(n)) @ ({})".format, VECTORS),
)
SHAPES = ["x=n", "v=n", "A=n,n"]


def _central(text: str, values: dict, sizes: dict, name: str) -> np.ndarray:
    expr = parse_matrix(text, parse_shapes(SHAPES))
    base, grad = values[name], np.zeros_like(values[name])
    for i in np.ndindex(*base.shape):
        step = np.zeros_like(base)
        step[i] = 1e-6
        grad[i] = (evaluate(expr, {**values, name: base + step}, sizes)
                   - evaluate(expr, {**values, name: base - step}, sizes)) / 2e-6
    return grad


@settings(max_examples=12, deadline=None)
@given(text=SCALARS.filter(lambda t: "x" in t and len(t) < 70), seed=st.integers(0, 2**16))
def test_random_compositions_match_finite_differences(text, seed):
    d = derive_matrix(text, ["x", "A"], SHAPES, seed=seed)
    assert d.verified, d.render("text")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    values = {"x": rng.standard_normal(n), "v": rng.standard_normal(n), "A": rng.standard_normal((n, n))}
    for name in ("x", "A"):
        derived = evaluate(parse_matrix(json.loads(d.render("json"))["result"][name], parse_shapes(SHAPES)), values,
                           {"n": n})
        reference = _central(text, values, {"n": n}, name)
        np.testing.assert_allclose(np.broadcast_to(derived, reference.shape), reference, rtol=1e-5,
                                   atol=1e-6 * max(1.0, float(np.max(np.abs(reference)))))


def test_axis_sums_and_broadcast_operands():
    d = derive_matrix("sum(sum(X * X, 1) * a) + sum(sum(X, 0) * c)", "X", ["X=n,d", "a=n", "c=d"])
    assert d.verified
    rng = np.random.default_rng(4)
    X, a, c = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(4)
    np.testing.assert_allclose(evaluate(d.results["X"].result, {"X": X, "a": a, "c": c}),
                               2 * X * a[:, None] + c[None, :], rtol=1e-12)


def test_no_identity_is_said_not_guessed(capsys):
    assert main(["derive", "sum(diag(x) @ v)", "--shape", "x=n", "--shape", "v=n", "--wrt", "x"]) == 2
    assert "no identity is known for the derivative through diag(x)" in capsys.readouterr().err


def test_latex_compiles_without_overfull_boxes(tmp_path):
    import shutil
    import subprocess

    if not (shutil.which("latexmk") and shutil.which("pdflatex")):
        pytest.skip("latexmk/pdflatex not installed")
    tex = tmp_path / "softmax.tex"
    assert main(["derive", "-sum(y * log(softmax(W @ x)))", "--wrt", "W", "--shape", "W=k,d", "--shape", "x=d",
                 "--shape", "y=k", "--assume", "sum(y)=1", "--format", "latex", "-o", str(tex)]) == 0
    run = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path,
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull" not in (tmp_path / "softmax.log").read_text(errors="replace")


def test_html_is_mathml_and_renders_in_chromium(tmp_path):
    import shutil
    import subprocess

    from symdl.printing.mathml import unconverted

    page = tmp_path / "lsq.html"
    assert main(["derive", *LSQ, "--format", "html", "-o", str(page)]) == 0
    text = page.read_text()
    assert "<math" in text and unconverted(text) == []
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed")
    shot = tmp_path / "lsq.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1000,800", page.as_uri()], capture_output=True, timeout=60)
    assert shot.stat().st_size > 10_000  # a page with content, not a blank one (viewed by hand: steps and result)


def test_docs_show_the_real_output(capsys):
    from tests.test_graph import docs_blocks

    blocks = docs_blocks("--shape")
    assert blocks, "docs/derive.md shows the softmax-regression gradient"
    for argv, shown in blocks:
        assert main(argv) == 0
        assert capsys.readouterr().out == shown


def test_cli_jacobian(capsys):
    assert main(["derive", "sigmoid(W @ x + b)", "--wrt", "x", "--shape", "W=m,n", "--shape", "x=n",
                 "--shape", "b=m", "--jacobian", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "jacobian" and data["layout"].startswith("numerator layout")
    assert data["result"]["x"] == "diag(sigmoid(W @ x + b) * (1 - sigmoid(W @ x + b))) @ W"


def test_an_exploding_derivative_is_refused_quickly(capsys):
    import time

    start = time.perf_counter()
    text = "norm(" + "softmax(" * 12 + "x" + ")" * 12 + ")**2"
    assert main(["derive", text, "--shape", "x=n"]) == 2
    assert "grows past" in capsys.readouterr().err
    assert time.perf_counter() - start < 10


def test_notebooks_render_derivations():
    from symdl.steps.graph import derive_graph

    matrix = derive_matrix("trace(A @ X)", "X", ["A=n,n", "X=n,n"])._repr_markdown_()
    assert "$$" in matrix and r"A^\top" in matrix
    graph = derive_graph("(x + y) * z", "x=-2,y=5,z=-4")._repr_html_()
    assert graph.lstrip().startswith("<h1>") and "<svg" in graph and "</body>" not in graph


def test_a_jupyter_kernel_displays_both_derivations(tmp_path):
    # what a notebook's reader gets: the kernel's display data for the last expression of each cell
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import nbformat

    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('from symdl.steps.graph import derive_graph\n'
                                  'derive_graph("(x + y) * z", "x=-2,y=5,z=-4")'),
        nbformat.v4.new_code_cell('from symdl.steps.matrix import derive_matrix\n'
                                  'derive_matrix("norm(X @ w - y)**2", "w", ["X=n,d", "w=d", "y=n"])')])
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    graph, matrix = ([o for o in cell.outputs if o["output_type"] == "execute_result"] for cell in book.cells)
    assert "<svg" in graph[0]["data"]["text/html"] and "multiply gate" in graph[0]["data"]["text/html"]
    shown = matrix[0]["data"]["text/markdown"]
    assert r"2 X^\top \left(X w - y\right)" in shown and "$$" in shown and "NOT VERIFIED" not in shown


def test_cli_stationary_and_symmetric_assumption(capsys):
    assert main(["derive", "x @ A @ x / (x @ x)", "--wrt", "x", "--shape", "x=n", "--shape", "A=n,n",
                 "--assume", "symmetric(A)", "--stationary", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["assumptions"] == ["symmetric(A)"] and data["verified"]
    assert data["stationary"]["x"]["verified"] is True
    assert [line["equation"] for line in data["stationary"]["x"]["lines"]][1] == "A @ x = R * x"
    assert main(["derive", "x @ A @ x", "--wrt", "x", "--shape", "x=n", "--shape", "A=n,n", "--stationary"]) == 0
    out = capsys.readouterr().out
    assert "no stationary-point rule is known for this form" in out and "[not derived]" in out
    from symdl.printing.mathml import unconverted

    assert main(["derive", "x @ A @ x / (x @ x)", "--wrt", "x", "--shape", "x=n", "--shape", "A=n,n",
                 "--assume", "symmetric(A)", "--stationary", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert unconverted(page) == [] and "<h2>Stationary points in x</h2>" in page and "To the textbook form" in page


def test_text_is_rich_tables(capsys):
    assert main(["derive", *LSQ]) == 0
    out = capsys.readouterr().out
    assert out.count("╭") == out.count("╰") == 2  # the lets and the steps
    row = next(line for line in out.splitlines() if line.startswith("│ 3 │"))
    assert [c.strip() for c in row.strip("│").split("│")][:2] == ["3", "u1 = X @ w"]
    assert "matrix_product" in row and "ok (" in row
    assert max(len(line) for line in out.splitlines()[1:]) <= 120
