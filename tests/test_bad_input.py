"""Bad input: typed errors that name the op and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.errors import OpInputError, OpParameterError, OpTypeError, UnknownOpError
from symdl.sampling import draw_inputs

#: A value that breaks each rule kind.
BREAKS = {"positive": -1.0, "nonnegative": -0.5, "real": float("nan"), "choice": "bogus",
          "integer": 1.5, "bool": "yes", "interval": 7.5}

PARAMS = [pytest.param(op, p, id=f"{op.name}.{p.name}") for op in ACTIVATIONS_AND_LOSSES.values() for p in op.params
          if p.rule.kind in BREAKS and not (p.rule.kind == "interval" and p.rule.args[1] >= 7.5)]


def _inputs(op):  # noqa: ANN001, ANN202
    return draw_inputs(op, np.random.default_rng(0), (3, 4))


@pytest.mark.parametrize(("op", "param"), PARAMS)
def test_out_of_domain_parameter_names_op_and_parameter(op, param) -> None:  # noqa: ANN001
    for function in (getattr(kernels, op.name), lambda *a, **k: getattr(kernels, f"{op.name}_vjp")(1.0, *a, **k)):
        with pytest.raises(OpParameterError, match=rf"^{op.name}: {param.name} "):
            function(*_inputs(op), **{param.name: BREAKS[param.rule.kind]})


@pytest.mark.parametrize("op", ACTIVATIONS_AND_LOSSES.values(), ids=ACTIVATIONS_AND_LOSSES.keys())
def test_non_numeric_input_is_a_type_error(op) -> None:  # noqa: ANN001
    inputs = _inputs(op)
    inputs[0] = np.array([["a", "b"]])
    with pytest.raises(OpTypeError, match=rf"^{op.name}: {op.inputs[0].name} must be"):
        getattr(kernels, op.name)(*inputs)


@pytest.mark.parametrize("op", ACTIVATIONS_AND_LOSSES.values(), ids=ACTIVATIONS_AND_LOSSES.keys())
def test_unknown_keyword_is_rejected(op) -> None:  # noqa: ANN001
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        getattr(kernels, op.name)(*_inputs(op), bogus=1)


@pytest.mark.parametrize("op", [op for op in ACTIVATIONS_AND_LOSSES.values() if op.family == "activation"],
                         ids=[n for n, op in ACTIVATIONS_AND_LOSSES.items() if op.family == "activation"])
def test_upstream_gradient_of_wrong_shape(op) -> None:  # noqa: ANN001
    x = np.zeros((3, 4))
    with pytest.raises(OpInputError, match=rf"^{op.name}: grad has shape \(4, 3\)"):
        getattr(kernels, f"{op.name}_vjp")(np.zeros((4, 3)), x)


def test_softmax_dim_out_of_range() -> None:
    with pytest.raises(OpParameterError, match="softmax: dim=2 is out of range"):
        kernels.softmax(np.zeros((3, 4)), dim=2)


def test_integer_input_is_promoted_like_numpy() -> None:
    assert kernels.relu(np.array([-1, 2])).dtype == np.float64


def test_unknown_op() -> None:
    from symdl.catalog import get

    with pytest.raises(UnknownOpError, match="unknown op 'reluu'"):
        get("reluu")


# --------------------------------------------------------------------------- files, folders, expressions, user code
def test_read_npz_turns_every_damage_into_one_error(tmp_path: Path) -> None:
    from symdl.files import UnreadableFileError, read_npz

    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(3.0))
    data = good.read_bytes()
    damaged = {"truncated.npz": data[: len(data) // 2], "zeros.npz": bytes(100), "empty.npz": b"",
               "crc.npz": data[:60] + bytes(40) + data[100:]}
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnreadableFileError, match=rf"^{tmp_path / name}: not a readable \.npz archive"):
            read_npz(tmp_path / name)
    np.savez(tmp_path / "objects.npz", x=np.array([{}], dtype=object))
    np.save(tmp_path / "plain.npy", np.arange(3.0))
    for name in ("objects.npz", "plain.npy"):
        with pytest.raises(UnreadableFileError, match="not a readable"):
            read_npz(tmp_path / name)
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_npz(tmp_path / "missing.npz")
    with pytest.raises(UnreadableFileError, match="not a file"):
        read_npz(tmp_path)
    with pytest.raises(UnreadableFileError, match="the limit is"):
        read_npz(good, max_bytes=10)
    assert read_npz(good)["x"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("where", ["afile/out", "afile", "/proc/out", "x" * 300])
def test_unwritable_places_are_typed_errors(tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from symdl.errors import SymdlError
    from symdl.files import UnwritableFolderError, writable_folder, write_atomically

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file", encoding="utf-8")
    with pytest.raises(UnwritableFolderError, match=rf"^{where[:30]}"):
        writable_folder(Path(where))
    with pytest.raises(SymdlError, match="cannot write there") as caught:
        write_atomically(Path(where) / "out.txt", "text")
    assert isinstance(caught.value, OSError)  # still an OSError for callers that catch those
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "a file"


def test_stale_temporaries_of_one_target_only(tmp_path: Path) -> None:
    from symdl.files import remove_stale_temporaries

    for name in (".a.npz.1.tmp", ".a.npz.2.tmp", ".b.npz.1.tmp", "a.npz"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path / "a.npz")
    assert sorted(p.name for p in removed) == [".a.npz.1.tmp", ".a.npz.2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.npz.1.tmp", "a.npz"]


def test_flat_sums_are_not_deep_but_nesting_is() -> None:
    from symdl.check.errors import ExpressionError
    from symdl.expr import parse

    x = parse("+".join(["x"] * 999), {"x"})
    assert str(x) == "999*x"
    mixed = parse("-".join(["x/y"] * 300) + "*y", {"x", "y"})
    assert str(mixed) == "-x - 297*x/y"  # x/y - 298 x/y - (x/y) y, left to right
    for deep in ("(" * 101 + "x" + ")" * 101, "-" * 101 + "x", "x**" * 101 + "x", "exp(" * 101 + "x" + ")" * 101):
        with pytest.raises(ExpressionError, match="more than 100 deep"):
            parse(deep, {"x"})


def test_unicode_names_are_normalised_nfkc() -> None:
    from symdl.expr import parse

    micro, mu = "\u00b5", "\u03bc"
    assert parse(f"{micro}*{micro}", {mu}) == parse(f"{mu}*{mu}", {micro})
    assert str(parse("\uff58\uff0b\uff11", {"x"})) == "x + 1"  # full-width x+1


def test_user_code_runner_reports_exits_hangs_and_errors_on_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    import os
    import re
    import sys
    import time

    from symdl.check.errors import GradcheckInputError
    from symdl.cli.usercode import UserCodeError, run_guarded

    assert run_guarded(lambda: np.arange(3).sum(), 5) == 3
    cases = {"sys.exit(0)": (lambda: sys.exit(0), "called sys.exit(0)"),
             "os._exit(0)": (lambda: os._exit(0), "ended the process before the check finished"),
             "loop": (lambda: time.sleep(60), "did not finish within --timeout 0.5 s"),
             "error": (lambda: 1 / 0, "failed: ZeroDivisionError: division by zero")}
    for name, (work, message) in cases.items():
        start = time.perf_counter()
        with pytest.raises(UserCodeError, match=re.escape(message)):
            run_guarded(work, 0.5)
        assert time.perf_counter() - start < 5, name
    with pytest.raises(GradcheckInputError, match="^typed$"):  # symdl's own errors keep their type
        run_guarded(lambda: (_ for _ in ()).throw(GradcheckInputError("typed")), 5)

    def prints() -> int:
        print("from the user")
        return 7

    assert run_guarded(prints, 5) == 7
    out, err = capfd.readouterr()
    assert "from the user" in err and "from the user" not in out


def _sleep_and_return(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_an_interrupted_process_pool_stops_at_once() -> None:
    """Ctrl-C in ``symdl verify`` waited for every queued job of ``with ProcessPoolExecutor()`` (up to minutes)."""
    import time

    from symdl.pools import process_pool

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), process_pool(2) as pool:
        futures = [pool.submit(_sleep_and_return, 1.0) for _ in range(20)]  # 10 s of work on 2 workers
        futures[0].result()
        processes = list(pool._processes.values())  # the workers, to check they are gone
        raise KeyboardInterrupt
    left = time.perf_counter()
    assert left - start < 5  # one job's second and the start of the pool, not ten seconds
    for process in processes:
        # the executor's own thread reaps the workers too; whichever reaps one first records its exit code (a
        # join racing it can return before the code is set, and is_alive() then read "alive" once in CI).
        # Each worker was 1 s into a job: left alone it would live about a second more, terminated a moment.
        deadline = left + 0.5
        while process.exitcode is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert process.exitcode is not None
    assert sum(f.cancelled() for f in futures) >= 10  # the queued jobs never ran (a few were already handed over)
    with process_pool(2) as pool:  # and without an exception it is an ordinary pool
        assert list(pool.map(_sleep_and_return, [0.0, 0.01])) == [0.0, 0.01]
