"""Fuzz of the command line: malformed, extreme and hostile arguments for every subcommand.

Each invocation must end with exit code 2 and exactly one line on stderr
(``symdl: error: ...``): no traceback, no second line (warnings), no hang.
The invocations are every bad value of :data:`BAD` once (so each is covered),
then random combinations of one to three of them on valid bases, drawn by a
seeded generator (:data:`SEED`), :data:`RANDOM_ROUNDS` of them.

Speed: each invocation runs ``symdl.cli.main`` in a process forked from this
one (NumPy, SymPy and the catalog are imported once, before the first fork),
with its stdout and stderr in files, killed after :data:`HANG_SECONDS`; an
exception escaping ``main`` is printed as the interpreter would (a traceback,
exit 1). A few cases whose point is the real process (``os._exit``, Ctrl-C)
run ``python -m symdl.cli`` in a subprocess. The whole module takes about a
minute on one core.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SEED = 23
RANDOM_ROUNDS = 160
#: An invocation still running after this many seconds is a hang (each bad input fails in well under one).
HANG_SECONDS = 30.0

USER_CODE = '''
import os, sys
import numpy as np

def f(x):
    return np.sum(np.tanh(x))

def df(x):
    return 1 - np.tanh(x) ** 2

def modifies(x):
    x += 1.0
    return np.sum(x)

def exits0(x):
    sys.exit(0)

def exits3(x):
    sys.exit(3)

def os_exit(x):
    os._exit(0)

def never_returns(x):
    while True:
        pass

def interrupts(x):
    raise KeyboardInterrupt

def raises(x):
    raise ValueError("no\\nsecond line")

def text(x):
    return "not a number"

def loud(x):
    print("a print from f")
    return np.sum(np.tanh(x))

def big(x):
    return np.sum(np.exp(x))

def dbig(x):
    return np.exp(x)

def dbig_off(x):
    return np.exp(x) * (1 + 1e-7)
'''


#: A function in latexify-py's subset, for ``symdl derive FILE.py:g``.
DERIVABLE = '''
import numpy as np

def g(w, x):
    z = w * x + 1
    return np.tanh(z) ** 2
'''


@dataclass
class Run:
    """One invocation's result."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float
    hung: bool

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def one_line(self) -> bool:
        return self.stderr.count("\n") == 1 and self.stderr.startswith("symdl: error: ")

    def problem(self) -> str:
        """'' when the invocation behaved (exit 2, one line), else what went wrong."""
        if self.hung:
            return "hang"
        if self.traceback:
            return "traceback"
        if not self.one_line:
            return "not one line"
        if self.code != 2:
            return f"exit {self.code}"
        return ""


def run_forked(argv: Sequence[str], cwd: Path, scratch: Path, limit: float = HANG_SECONDS) -> Run:
    """``symdl.cli.main(argv)`` in a forked child, as the console script would run it."""
    out, err = scratch / "stdout", scratch / "stderr"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.chdir(cwd)
            os.setpgid(0, 0)  # its own group: a hang is killed with everything it started
            for fd, path in ((1, out), (2, err)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(handle, fd)
                os.close(handle)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            from symdl.cli import main

            try:
                code = main(list(argv))
            except SystemExit as exit_:  # as the interpreter: sys.exit(n) ends with n
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # noqa: BLE001 - what the console script would print
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    hung = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - start > limit:
            hung = True
            os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    code = os.waitstatus_to_exitcode(status)
    return Run(tuple(argv), code, out.read_text(errors="replace"), err.read_text(errors="replace"),
               time.perf_counter() - start, hung)


def run_process(argv: Sequence[str], cwd: Path, limit: float = HANG_SECONDS) -> Run:
    """``python -m symdl.cli argv`` in a fresh interpreter."""
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "symdl.cli", *argv], capture_output=True, text=True,
                                cwd=cwd, timeout=limit, check=False)
    except subprocess.TimeoutExpired as expired:
        return Run(tuple(argv), -9, str(expired.stdout or ""), str(expired.stderr or ""), limit, True)
    return Run(tuple(argv), result.returncode, result.stdout, result.stderr, time.perf_counter() - start, False)


# --------------------------------------------------------------------------- the inputs
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """User code, data files (good and damaged) and crafted checkpoints, shared by every invocation."""
    from symdl.train import TrainConfig, Trainer, checkpoint

    root = tmp_path_factory.mktemp("fuzz")
    (root / "t.py").write_text(USER_CODE, encoding="utf-8")
    (root / "hang_import.py").write_text("while True:\n    pass\n", encoding="utf-8")
    (root / "exit_import.py").write_text("import sys\nsys.exit(0)\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    np.savez(root / "good.npz", x=x, y=y)
    good = (root / "good.npz").read_bytes()
    (root / "truncated.npz").write_bytes(good[: len(good) // 2])
    (root / "zeros.npz").write_bytes(bytes(4096))
    for name, label in (("label1e9.npz", 10**9), ("label2p62.npz", 2**62)):
        labels = y.copy()
        labels[0] = label
        np.savez(root / name, x=x, y=labels)
    np.savez(root / "nofeatures.npz", x=np.zeros((60, 0)), y=y)
    np.savez(root / "scaled1e300.npz", x=x * 1e300, y=y)
    np.savez(root / "scalars.npz", x=np.array(1.0), y=np.array(1))
    np.savez(root / "pickled.npz", x=np.array([{"a": 1}] * 60, dtype=object), y=y)
    np.save(root / "plain.npy", x)
    (root / "afile").write_text("not a folder", encoding="utf-8")
    (root / "adir").mkdir()
    os.mkfifo(root / "fifo")  # stands for /dev/null: an -o that is no regular file must be refused, never replaced
    (root / "d.py").write_text(DERIVABLE, encoding="utf-8")
    # checkpoints of the wrong type and of a negative epoch, for --resume (the dataset named as the CLI names it)
    config = TrainConfig(dataset="good.npz", epochs=2)
    changes = {"epoch_negative": lambda s: {**s, "epoch": -5}, "state_list": lambda s: [1, 2, 3],
               "history_text": lambda s: {**s, "history": "abc"}, "config_list": lambda s: {**s, "config": [1]},
               "history_rows": lambda s: {**s, "history": [{}] * len(s["history"])},
               "history_nan": lambda s: {**s, "history": [{**r, "test_loss": float("nan")} for r in s["history"]]}}
    here = Path.cwd()
    os.chdir(root)
    try:
        for name, change in changes.items():
            Trainer(config, Path(name)).fit()
            state = checkpoint.load(Path(name) / "checkpoint.npz")
            checkpoint.save(Path(name) / "checkpoint.npz", change(state))
    finally:
        os.chdir(here)
    return root


#: Valid starting points per subcommand, for the bad options (MODIFIERS) to join.
BASES: dict[str, list[list[str]]] = {
    "gradcheck": [["x*sigmoid(x)", "--at", "x=0.5"], ["tanh(x)", "--range", "x=-2:2", "--samples", "20"],
                  ["t.py:f", "--vjp", "t.py:df", "--shape", "x=3"], ["--op", "gelu"], ["--op", "leaky_relu"]],
    "train": [["--dataset", "good.npz", "--epochs", "1", "--out", "RUN"]],
    "derive": [["x*sigmoid(x)"], ["sigmoid"], ["d.py:g"]],
    "handout": [["calculus", "--format", "md", "-o", "RUN"], ["backpropagation", "--format", "html,tex", "-o", "RUN"]],
    "export": [["relu", "--to", "torch", "-o", "RUN.py"]],
}

HOSTILE_EXPRESSIONS = ["9**9**9**9", "x**(10**10)", "(" * 200 + "x" + ")" * 200, "x+" * 1500 + "x",
                       "__import__('os').system('touch pwned')", "x.real", "lambda: x", "x[0]", "'x'", "", "   ",
                       "x" * 3000, "1/0*x", "x if x else", "sigmoid", "sigmoid(x, x)", "f(x)", "x @ x", "x // 2",
                       "exp(1e400)*x", "-" * 150 + "x", "x\x00", "x\udcff", "µ*y", "e**(e**(e**(e**x)))*0 + nope"]

#: Bad options, each bad whatever valid base (or other bad item) it joins: (subcommand, arguments).
MODIFIERS: list[tuple[str, list[str]]] = [
    *[("gradcheck", ["--seed", v]) for v in ("-1", str(2**64), "abc", "1e3")],
    *[("gradcheck", ["--samples", v, "--range", "y=0:1"]) for v in ("0", "-5", "1000000000",
                                                                    "99999999999999999999999")],
    *[("gradcheck", ["--shape", v]) for v in ("x=4294967296,4294967296", "x=2097152,2097152,2097152,2097152",
                                              "x=" + ",".join(["2"] * 70), "input=" + ",".join(["1"] * 70),
                                              "x=,,,", "x=-3", "x=0", "x=3.5", "=3", "x", "x=1e9")],
    ("gradcheck", ["--shape", "y=3", "--shape", "y=4"]),
    ("gradcheck", ["--shape", "y=5000000", "--shape", "z=6000000"]),
    *[("gradcheck", ["--range", v]) for v in ("y=-1e308:1e308", "y=5:1", "y=nan:1", "y=1", "y=0:inf",
                                              "y=1.7976931348623157e308:1.7976931348623157e308", "y=-1e300:")],
    *[("gradcheck", ["--at", v]) for v in ("y=1,y=2", "y=nan", "y=inf", "y=1.7976931348623157e308", "y=", "=1",
                                           "y=abc", "y=1e400", "y=-1.7976931348623157e308")],
    ("gradcheck", ["--at", "z=1", "--range", "z=0:1"]),
    *[("gradcheck", ["--timeout", v]) for v in ("0", "-1", "nan", "1e300", "inf", "abc")],
    ("gradcheck", ["--mode", "slow"]), ("gradcheck", ["--dtype", "float16"]), ("gradcheck", ["--bogus"]),
    *[("train", ["--dataset", v]) for v in ("truncated.npz", "zeros.npz", "label1e9.npz", "label2p62.npz",
                                            "nofeatures.npz", "scaled1e300.npz", "scalars.npz", "pickled.npz",
                                            "plain.npy", "missing.npz", "", "afile")],
    *[("train", ["--lr", v]) for v in ("-1", "0", "nan", "inf", "abc")],
    *[("train", ["--epochs", v]) for v in ("0", "-5", "1e12", "99999999999")],
    *[("train", ["--batch-size", v]) for v in ("0", "-1", "x")],
    *[("train", ["--seed", v]) for v in ("-1", str(2**64))],
    *[("train", ["--threads", v]) for v in ("0", "100000")],
    *[("train", ["--out", v]) for v in ("afile/run", "afile", "/dev/null", "/proc", "/proc/run", "a" * 300, "",
                                        "a/" * 3000)],
    *[("train", [opt, "bogus"]) for opt in ("--model", "--optimizer", "--schedule", "--dtype")],
    # derive (issue 17), handout (issue 19), export: each option's malformed and extreme values
    *[("derive", ["--format", v]) for v in ("pdf", "", "TEXT")],
    *[("derive", ["--timeout", v]) for v in ("0", "-1", "nan", "inf", "1e300", "abc")],
    *[("derive", ["-o", v]) for v in ("", " ", "afile/x", "fifo", "adir", "/proc/x", "a" * 300, "x\x00", "/proc")],
    *[("derive", [option]) for option in ("--stationary", "--jacobian")],
    ("derive", ["--assume", "sum(y)=1"]), ("derive", ["--at", "x=1"]), ("derive", ["--bogus"]),
    *[("handout", ["--seed", v]) for v in ("-1", str(2**64), str(2**70), "2**70", "1.5", "nan", "")],
    *[("handout", ["--format", v]) for v in ("docx", "", ",", "html,docx")],
    *[("handout", ["-o", v]) for v in ("", " ", "afile", "afile/x", "/proc/x", "/dev/null", "a" * 300, "x\x00")],
    *[("export", ["--to", v]) for v in ("tf", "")],
    *[("export", ["-o", v]) for v in ("", "fifo", "adir", "afile/m.py", "a" * 300, "x\x00.py", "/proc/m.py")],
]

#: Whole bad invocations (a bad target, the user's code, a name): (subcommand, arguments).
COMPLETE: list[tuple[str, list[str]]] = [
    *[("gradcheck", [e, "--at", "x=1"]) for e in HOSTILE_EXPRESSIONS],
    ("gradcheck", ["x*x", "--at", "x=1", "--range", "x=0:1"]),
    ("gradcheck", ["x*x", "--at", "x=1", "--wrt", "nope"]),
    ("gradcheck", ["x*x", "--at", "x=1", "--wrt", "x,x"]),
    ("gradcheck", ["t.py:f", "--vjp", "t.py:df", "--shape", "x=3", "--wrt", "x, x"]),
    ("gradcheck", ["x*x", "--at", "x=1", "--vjp", "t.py:df"]),
    *[("gradcheck", ["--op", v]) for v in ("nope", "", "relu;ls", "__class__", "x" * 5000)],
    *[("gradcheck", ["--op", "gelu", "--params", v]) for v in ("bogus=1", "approximate=cubic", "approximate",
                                                               "=tanh", "approximate=tanh,approximate=none")],
    *[("gradcheck", ["--op", "gelu", opt, value]) for opt, value in (("--shape", "nope=3"), ("--wrt", "input"),
                                                                     ("--at", "input=1"), ("--vjp", "t.py:df"))],
    ("gradcheck", ["--op", "gelu", "--shape", "input=" + ",".join(["1"] * 70)]),
    ("gradcheck", ["--op", "leaky_relu", "--params", "negative_slope=1e308"]),
    ("gradcheck", ["--op", "leaky_relu", "--params", "negative_slope=nan"]),
    ("gradcheck", ["--op", "gelu", "x*x"]),
    ("gradcheck", []),
    # the user's code: modifies its input, exits, never returns, fails, returns nonsense
    *[("gradcheck", [f"t.py:{name}", "--vjp", "t.py:df", "--shape", "x=3,4", "--timeout", "2"])
      for name in ("modifies", "exits0", "exits3", "os_exit", "never_returns", "interrupts", "raises", "text")],
    *[("gradcheck", ["t.py:f", "--vjp", f"t.py:{name}", "--shape", "x=3,4", "--timeout", "2"])
      for name in ("exits0", "os_exit", "never_returns", "raises", "nope")],  # (a VJP of the wrong shape: FAIL, 1)
    *[("gradcheck", [f"{module}:f", "--vjp", f"{module}:f", "--shape", "x=3", "--timeout", "2"])
      for module in ("hang_import.py", "exit_import.py", "missing.py", "afile.py")],
    ("gradcheck", ["t.py:f", "--shape", "x=3"]),
    ("gradcheck", ["t.py:f", "--vjp", "t.py:df", "--shape", "x=3", "--grad", "x"]),
    ("train", ["--dataset", "scaled1e300.npz", "--dtype", "float64", "--out", "RUN"]),
    ("train", ["--dataset", "good.npz", "--lr", "1e308", "--epochs", "3", "--out", "RUN"]),
    ("train", ["--resume"]),
    *[("train", ["--dataset", "good.npz", "--epochs", "2", "--out", name, "--resume"])
      for name in ("epoch_negative", "state_list", "history_text", "config_list", "history_rows", "history_nan")],
    *[("show", [v]) for v in ("nope", "", " ", "x" * 10000, "relu\x00", "../../etc/passwd", "µ")],
    ("show", ["relu", "--variant", "nope"]), ("show", ["relu", "--format", "html5"]), ("show", []),
    ("show", ["relu", "adam"]),
    ("kernels", ["extra"]), ("kernels", ["--bogus"]),
    *[("verify", ["--ops", v]) for v in (",", "", " , ", "relu,relu", "nope", "relu,nope")],
    ("verify", ["--bogus"]), ("verify", ["--json", "--ops", ","]),
    *[("derive", [e]) for e in ("9**9**9**9", "x**(10**10)", "(" * 200 + "x" + ")" * 200, "x" * 3000, "",
                                "   ", "__import__('os').system('touch pwned')", "x.real", "lambda: x", "x[0]",
                                "'x'", "1/0*x", "x if x else", "sigmoid(x, x)", "f(x)", "x @ x", "x // 2", "x\x00")],
    *[("derive", [target]) for target in ("t.py:nope", "missing.py:f", "afile.py:f", "t.py:f", "d.py:1g")],
    ("derive", ["d.py:g", "--check", "t.py:nope"]), ("derive", ["x", "--check", "d.py:g"]),
    ("derive", ["x*y", "--wrt", "1x"]), ("derive", ["x*y", "--wrt", "x,x"]), ("derive", ["x*x", "--wrt", "nope"]),
    ("derive", ["d.py:g", "--wrt", "q"]), ("derive", ["x*x", "--graph", "--at", "x=1,x=2"]),
    ("derive", ["x*x", "--shape", "x=,,,"]), ("derive", ["relu", "--variant", "nope"]),
    ("derive", ["x", "--variant", "tanh"]), ("derive", ["x", "--graph"]), ("derive", ["x", "--graph", "--at", "x=nan"]),
    ("derive", ["sum(x)", "--shape", "x=4294967296,4294967296"]), ("derive", ["x @ w", "--shape", "x=-3"]),
    ("derive", []),
    *[("handout", argv) for argv in (["nope"], [""], ["../etc"], [], ["calculus", "--bogus"], ["x" * 10000])],
    *[("export", [names, "--to", "torch", "-o", "m.py"]) for names in ("nope", "", ",", "relu,relu", "t.py",
                                                                        "missing.py", "relu;ls", "x" * 5000)],
    ("export", ["relu", "--to", "torch"]), ("export", []),
    ("nope", []), ("", []),
]


def _joined(base: list[str], modifiers: list[list[str]]) -> list[str]:
    """``base`` with each modifier added; a modifier's option replaces the base's value of it."""
    args = list(base)
    for modifier in modifiers:
        option = modifier[0]
        if option in args and option not in ("--shape", "--at", "--range"):
            at = args.index(option)
            del args[at:at + 2]
        args += modifier
    return args


def invocations(seed: int = SEED) -> list[list[str]]:
    """Every bad item once, then :data:`RANDOM_ROUNDS` random combinations of one to three of them."""
    rng = random.Random(seed)
    out = [[command, *args] for command, args in COMPLETE]
    out += [[command, *_joined(rng.choice(BASES[command]), [args])] for command, args in MODIFIERS]
    commands = sorted({c for c, _ in COMPLETE + MODIFIERS if c})
    for _ in range(RANDOM_ROUNDS):
        command = rng.choice(commands)
        modifiers = [args for c, args in MODIFIERS if c == command]
        complete = [args for c, args in COMPLETE if c == command]
        base = rng.choice(complete) if not modifiers or rng.random() < 0.4 else rng.choice(BASES[command])
        chosen = rng.sample(modifiers, k=min(len(modifiers), rng.randint(0 if base in complete else 1, 2)))
        out.append([command, *_joined(base, chosen)])
    return [[a.replace("RUN", f"runs/r{n}") for a in argv] for n, argv in enumerate(out)]


def test_fuzz_every_subcommand_fails_on_one_line_with_exit_2(workspace: Path, tmp_path: Path) -> None:
    import symdl.catalog  # noqa: F401 - imported once here, not in each of the forked invocations
    import symdl.printing.derivations  # noqa: F401
    import symdl.steps  # noqa: F401 - symdl derive's engine, likewise
    from symdl.cli import SUBCOMMANDS

    runs = [run_forked(argv, workspace, tmp_path) for argv in invocations()]
    problems = [(r.problem(), r.argv, r.code, r.stderr[-300:]) for r in runs if r.problem()]
    counts = {"invocations": len(runs), "tracebacks": sum(r.traceback for r in runs),
              "hangs": sum(r.hung for r in runs), "multi-line errors": sum(not r.one_line and not r.hung for r in runs),
              "exit codes other than 2": sum(r.code != 2 and not r.hung for r in runs),
              "slowest (s)": round(max(r.seconds for r in runs), 2),
              "subcommands": sorted({r.argv[0] for r in runs})}
    print(f"\nfuzz (seed {SEED}): {counts}")
    assert not problems, problems[:10]
    assert {"verify", "kernels", "show", "gradcheck", "train", "derive", "handout", "export"} <= set(
        counts["subcommands"])
    assert not [p for p in workspace.iterdir() if p.name.startswith("m.py") or p.name.endswith(".tmp")]
    assert (workspace / "fifo").is_fifo() and (workspace / "afile").read_text() == "not a folder"
    assert set(counts["subcommands"]) - set(SUBCOMMANDS) == {"", "nope"}  # and two names that are no subcommand
    assert not (workspace / "pwned").exists()


def test_fuzz_is_seeded() -> None:
    assert invocations(SEED) == invocations(SEED)
    assert invocations(SEED) != invocations(SEED + 1)


# --------------------------------------------------------------------------- what a real process does
@pytest.mark.parametrize(("target", "message"), [
    ("os_exit", "ended the process before the check finished"),
    ("exits0", "called sys.exit(0)"),
    ("never_returns", "did not finish within --timeout 2 s"),
])
def test_a_real_process_never_passes_user_exits_or_hangs(workspace: Path, target: str, message: str) -> None:
    run = run_process(["gradcheck", f"t.py:{target}", "--vjp", "t.py:df", "--shape", "x=3", "--timeout", "2"],
                      workspace)
    assert run.problem() == "", run
    assert message in run.stderr and run.stdout == ""


def test_json_stays_parseable_when_the_target_prints(workspace: Path) -> None:
    run = run_process(["gradcheck", "t.py:loud", "--vjp", "t.py:df", "--shape", "x=3", "--json"], workspace)
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["passed"] is True
    assert "a print from f" in run.stderr  # the user's print went to stderr, not lost


@pytest.mark.parametrize("argv", [
    ["gradcheck", "t.py:never_returns", "--vjp", "t.py:df", "--shape", "x=3"],
    ["train", "--model", "cnn", "--epochs", "50", "--check-grads", "--out", "RUN"],
], ids=["looping-target", "train"])
def test_ctrl_c_is_one_line_and_exit_130(workspace: Path, tmp_path: Path, argv: list[str]) -> None:
    argv = [a.replace("RUN", str(tmp_path / "run")) for a in argv]
    process = subprocess.Popen([sys.executable, "-m", "symdl.cli", *argv], cwd=workspace, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(2.5)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("symdl: interrupted"), stderr
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- finite extremes and large inputs
@pytest.mark.parametrize("argv", [
    ["x*x", "--at", "x=5e-324"],
    ["x*sigmoid(x)", "--at", "x=5e-324"],
    ["tanh(x)", "--range", "x=0:1e-320"],
    ["x*x", "--at", "x=1e-310"],
])
def test_subnormal_points_pass_without_warnings(workspace: Path, tmp_path: Path, argv: list[str]) -> None:
    run = run_forked(["gradcheck", *argv], workspace, tmp_path)
    assert run.code == 0 and run.stderr == "", run
    assert "PASS" in run.stdout and "nan" not in run.stdout


@pytest.mark.parametrize("value", ["1.7976931348623157e308", "-1.7976931348623157e308", "1e308"])
def test_points_within_a_step_of_overflow_are_refused_on_one_line(workspace: Path, tmp_path: Path,
                                                                  value: str) -> None:
    run = run_forked(["gradcheck", "x*sigmoid(x)", f"--at=x={value}"], workspace, tmp_path)
    assert run.problem() == "", run
    assert "finite differences there would overflow" in run.stderr


@pytest.mark.parametrize("argv", [
    ["exp(x)", "--at", "x=709.7"],
    ["cosh(x)", "--at", "x=710"],
    ["t.py:big", "--vjp", "t.py:dbig", "--at", "x=709.78"],
])
def test_derivatives_near_the_largest_float_pass_without_warnings(workspace: Path, tmp_path: Path,
                                                                  argv: list[str]) -> None:
    """A derivative past half the largest float (1.6e308 at 709.7) once overflowed rtol (|n| + s) and the sweep's
    second difference f+ + f- - 2 f0 into an infinite allowance: a correct gradient failed, with warnings."""
    run = run_forked(["gradcheck", *argv], workspace, tmp_path)
    assert run.code == 0 and run.stderr == "", run
    assert "PASS" in run.stdout and " inf " not in run.stdout


def test_a_wrong_derivative_near_the_largest_float_still_fails(workspace: Path, tmp_path: Path) -> None:
    run = run_forked(["gradcheck", "t.py:big", "--vjp", "t.py:dbig_off", "--at", "x=709.7"], workspace, tmp_path)
    assert run.code == 1 and run.stderr == "" and "FAIL" in run.stdout, run


def test_ctrl_c_while_the_subcommands_load_is_one_line_and_exit_130(workspace: Path) -> None:
    """Ctrl-C in the first half second (NumPy loading, before ``main`` runs) printed a traceback; an import hook
    sends SIGINT exactly while ``symdl.cli.gradcheck`` is being imported."""
    script = """
import os, runpy, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "symdl.cli.gradcheck":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["symdl", "kernels"]
runpy.run_module("symdl.cli", run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=workspace,
                            timeout=HANG_SECONDS, check=False)
    assert result.returncode == 130, result.stderr
    assert result.stderr == "symdl: interrupted\n" and result.stdout == ""


def test_large_input_switches_to_fast_mode_with_a_note(workspace: Path, tmp_path: Path) -> None:
    run = run_forked(["gradcheck", "t.py:f", "--vjp", "t.py:df", "--shape", "x=100000"], workspace, tmp_path, 60)
    assert run.code == 0, run
    assert "fast mode" in run.stdout and "give --mode full to insist" in run.stdout
    assert "mode fast" in run.stdout  # the report says which mode ran
    assert run.seconds < 30


def test_full_mode_insisted_on_says_its_cost_before_it_starts(workspace: Path, tmp_path: Path) -> None:
    # 30,000 elements: past the switch to fast mode; f is a scalar, so the Jacobian fits and the check runs
    run = run_forked(["gradcheck", "t.py:f", "--vjp", "t.py:df", "--shape", "x=30000", "--mode", "full",
                      "--timeout", "1"], workspace, tmp_path, 60)
    first, *rest = run.stderr.splitlines()
    assert first.startswith("symdl: note: full mode on 30000 checked elements evaluates f 60000 times"), run
    assert "--mode fast takes seconds" in first
    assert run.code == 2 and rest and rest[-1].startswith("symdl: error: the check did not finish"), run
    # where the check refuses at once (an elementwise op's Jacobian past the limit), its error is the one line
    refused = run_forked(["gradcheck", "--op", "tanh", "--shape", "input=30000", "--mode", "full"], workspace,
                         tmp_path, 60)
    assert refused.code == 2 and len(refused.stderr.splitlines()) == 1 and "full Jacobian" in refused.stderr
    # a size that full mode checks in seconds gets no note
    small = run_forked(["gradcheck", "t.py:f", "--vjp", "t.py:df", "--shape", "x=300", "--mode", "full"], workspace,
                       tmp_path, 60)
    assert small.code == 0 and small.stderr == "", small


def test_a_flat_sum_of_999_terms_and_the_micro_sign(workspace: Path, tmp_path: Path) -> None:
    flat = run_forked(["gradcheck", "+".join(["x"] * 999), "--at", "x=0.5"], workspace, tmp_path)
    assert flat.code == 0 and "PASS" in flat.stdout, flat
    for text, at in (("µ*µ", "μ=2"), ("μ*μ", "µ=2")):  # micro sign U+00B5 and Greek mu U+03BC: one name (NFKC)
        run = run_forked(["gradcheck", text, "--at", at], workspace, tmp_path)
        assert run.code == 0 and "PASS" in run.stdout, run
