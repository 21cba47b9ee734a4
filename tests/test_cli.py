"""The real ``symdl`` command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def symdl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symdl.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_kernels_lists_every_op_and_layer() -> None:
    from symdl.catalog import ACTIVATIONS_AND_LOSSES, LAYERS

    result = symdl("kernels")
    assert result.returncode == 0
    listed = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2}
    assert set(ACTIVATIONS_AND_LOSSES) | {layer.name for layer in LAYERS} <= listed
    # one vocabulary: an op is anything with a kernel pair, activations and losses or layers
    count = len(ACTIVATIONS_AND_LOSSES) + len(LAYERS)
    assert (f"{count} ops ({len(ACTIVATIONS_AND_LOSSES)} activations and losses, {len(LAYERS)} layers)"
            in " ".join(result.stdout.split()))


def test_verify_ops_of_every_section_as_json() -> None:
    result = symdl("verify", "--ops", "sigmoid,softmax,flatten,adam,one_cycle_anneal", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["op"] for r in rows] == ["sigmoid", "softmax", "flatten", "adam", "one_cycle_anneal"]
    assert all(r["passed"] for r in rows)


def test_show_prints_latex() -> None:
    result = symdl("show", "sigmoid")
    assert result.returncode == 0
    assert r"\frac{\partial y}{\partial x}" in result.stdout


@pytest.mark.parametrize("args", [("verify", "--ops", "reluu"), ("show", "nope"), ("frobnicate",),
                                  ("show", "gelu", "--variant", "cubic"), ("show", "relu", "--format", "pdf"), ()])
def test_bad_usage_is_one_line_on_stderr_and_exit_2(args: tuple[str, ...]) -> None:
    result = symdl(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("symdl: error: ")
    assert "Traceback" not in result.stderr


def test_python_dash_m_symdl_is_the_command() -> None:
    # `python -m symdl` as `python -m pip`: the same subcommands, the same one-line errors
    ran = subprocess.run([sys.executable, "-m", "symdl", "--help"], capture_output=True, text=True, timeout=300,
                         check=False)
    assert ran.returncode == 0 and "gradcheck" in ran.stdout and "derive" in ran.stdout
    bad = subprocess.run([sys.executable, "-m", "symdl", "gradcheck", "x", "--seed", "-1"], capture_output=True,
                         text=True, timeout=300, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--seed" in bad.stderr
