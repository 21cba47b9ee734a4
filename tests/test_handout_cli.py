"""``symdl handout``: the command, its errors, and the checks that stop a wrong handout being built."""

from __future__ import annotations

import sympy as sp
import pytest

from symdl.cli import main
from symdl.handouts import verified
from symdl.handouts.builder import Builder
from symdl.handouts.model import Formula, HandoutError


def test_one_topic_in_one_format_is_written_and_listed(tmp_path, capsys) -> None:
    assert main(["handout", "gradient-descent", "--format", "html", "-o", str(tmp_path), "--seed", "3"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "gradient-descent.html")]
    html = (tmp_path / "gradient-descent.html").read_text(encoding="utf-8")
    assert "Answer key (seed 3)" in html
    assert [p.name for p in tmp_path.iterdir()] == ["gradient-descent.html"]  # no temporary files left behind


def test_the_same_seed_builds_the_same_files(tmp_path, capsys) -> None:
    for name in ("a", "b"):
        assert main(["handout", "convolution", "--format", "md,ipynb", "-o", str(tmp_path / name),
                     "--no-solutions"]) == 0
    for suffix in (".md", ".ipynb"):
        first = (tmp_path / "a" / f"convolution{suffix}").read_bytes()
        assert first == (tmp_path / "b" / f"convolution{suffix}").read_bytes()
    assert b"Answer key" not in (tmp_path / "a" / "convolution.md").read_bytes()


@pytest.mark.parametrize(("argv", "message"), [
    (["handout", "topology"], "unknown topic 'topology'; topics: linear-algebra, calculus"),
    (["handout", "calculus", "--format", "docx"], "unknown format docx; formats: html, md, tex, ipynb, pdf"),
    (["handout", "calculus", "--seed", "-1"], "--seed must be >= 0"),
    (["handout", "calculus", "--seed", str(2**70)], "an integer from 0 to 18446744073709551615"),
    (["handout", "calculus", "--seed", str(2**64)], "--seed must be >= 0 and <= 2**64-1"),
    (["handout", "calculus", "--seed", "2**70"], "--seed must be >= 0 and <= 2**64-1"),
    (["handout", "calculus", "--seed", "1.5"], "got '1.5'"),
    (["handout", "calculus", "-o", ""], "-o/--out must name a folder"),
    (["handout", "calculus", "-o", "  "], "-o/--out must name a folder"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_an_unwritable_folder_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["handout", "calculus", "-o", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write to {blocker / 'out'}" in err


# --------------------------------------------------------------------------- what a handout refuses
def test_a_false_identity_is_refused() -> None:
    x = sp.Symbol("x", real=True)
    with pytest.raises(HandoutError, match="does not hold"):
        verified.chain("wrong", sp.Derivative(sp.sin(x) ** 2, x), ("=", 2 * sp.cos(x)))
    with pytest.raises(HandoutError, match="not proven"):
        verified.chain("wrong_bound", sp.sin(x), ("<=", sp.Rational(1, 2)))
    right = verified.chain("right", sp.Derivative(sp.sin(x) ** 2, x), ("=", 2 * sp.sin(x) * sp.cos(x)))
    assert right.latex.endswith(r"2 \sin{\left(x \right)} \cos{\left(x \right)}") and "symbolic" in right.method


def test_a_wrong_integral_is_refused() -> None:
    x = sp.Symbol("x", real=True)
    with pytest.raises(HandoutError, match="quadrature disagrees"):
        verified.integral("wrong", sp.exp(-x ** 2), (x, -sp.oo, sp.oo), sp.sqrt(2 * sp.pi))


def test_a_failed_check_or_example_or_answer_stops_the_build() -> None:
    b = Builder("test", "Test", "a test", seed=0, solutions=True)
    b.section("one")
    with pytest.raises(HandoutError, match="failed its check"):
        verified.computed("never", sp.Symbol("a"), sp.Symbol("b"), lambda: (False, "a counter-example"))
    with pytest.raises(HandoutError, match="equations must be verified Formula objects"):
        b.equation(r"\frac{1}{2}")  # type: ignore[arg-type]
    with pytest.raises(HandoutError, match="example 'broken' failed: AssertionError"):
        b.run("assert 1 + 1 == 3", "broken")
    with pytest.raises(HandoutError, match="disagrees with its reference"):
        b.exercise("What is 1 + 1?", 3.0, 2.0, how="arithmetic")
    b.equation(Formula("ok", "x", "test", "by hand in a test"))
    assert [e.question for e in b.handout().exercises] == []


def test_help_lists_the_subcommand(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "handout" in capsys.readouterr().out
