"""The trainer: accuracy, bit-for-bit determinism, SIGKILL and resume, checkpoints, CLI input errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from symdl.data import load_digits
from symdl.train import (
    CheckpointError,
    RunExistsError,
    TrainConfig,
    Trainer,
    checkpoint,
)

DIGITS = load_digits()


def trained(folder: Path, **options: object) -> Trainer:
    trainer = Trainer(TrainConfig(**options), folder, dataset=DIGITS)  # type: ignore[arg-type]
    trainer.fit()
    return trainer


def symdl(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symdl.cli", *args], capture_output=True, text=True, timeout=120,
                          check=False, **kwargs)  # type: ignore[call-overload]


def test_mlp_learns_digits_and_writes_its_outputs(tmp_path: Path) -> None:
    trainer = trained(tmp_path, epochs=4, lr=3e-3)
    history = trainer.history
    assert history[-1]["test_accuracy"] >= 0.92  # chance is 0.10
    assert history[-1]["train_loss"] < history[0]["train_loss"] < np.log(10)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.npz", "metrics.csv", "metrics.json", "curves.png"}
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["summary"]["final_test_accuracy"] == history[-1]["test_accuracy"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_parameters_bit_for_bit(tmp_path: Path) -> None:
    options = {"epochs": 2, "model": "mlp", "schedule": "cosine", "batch_size": 50}
    first, second = trained(tmp_path / "a", **options), trained(tmp_path / "b", **options)
    other = trained(tmp_path / "c", seed=1, **options)
    for a, b, c in zip(first.model.parameters(), second.model.parameters(), other.model.parameters(), strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]


def test_float64_on_request(tmp_path: Path) -> None:
    trainer = trained(tmp_path, epochs=1, dtype="float64", optimizer="sgd", lr=0.1)
    assert all(p.dtype == np.float64 for p in trainer.model.parameters())


def _wait_for(predicate: object, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.002)


def test_sigkill_at_any_moment_then_resume_ends_bit_identical(tmp_path: Path) -> None:
    epochs = 12
    options = ["--epochs", str(epochs), "--batch-size", "16", "--seed", "5", "--schedule", "cosine"]
    folder = tmp_path / "killed"
    path = folder / "checkpoint.npz"
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = [sys.executable, "-m", "symdl.cli", "train", *options, "--out", str(folder)]
    # 1: killed as soon as the first checkpoint lands (mid-epoch 2 or mid-write of the next file)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _wait_for(path.exists, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # 2: resumed, killed again as soon as it has written one more checkpoint
    stamp = path.stat().st_mtime_ns
    (folder / ".checkpoint.npz.stray.tmp").write_bytes(b"half a checkpoint")  # what a kill mid-write leaves
    process = subprocess.Popen([*command, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _wait_for(lambda: path.stat().st_mtime_ns != stamp, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.load(path)["epoch"] < epochs  # the kills really interrupted the run
    # 3: resumed to the end
    result = symdl("train", *options, "--out", str(folder), "--resume", env=env)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout

    # as `symdl train` runs: one BLAS thread (a product's rounding depends on how OpenBLAS splits it between
    # threads: NumPy's OpenBLAS 0.3.31 splits these, and the losses then differ from the 8th digit)
    with threadpool_limits(limits=1, user_api="blas"):
        reference = trained(tmp_path / "uninterrupted", epochs=epochs, batch_size=16, seed=5, schedule="cosine")
    final = checkpoint.load(path)
    assert final["epoch"] == epochs
    for name, array in reference.model.state_dict().items():
        assert np.array_equal(final["model"][name], array), name
    assert final["rng"] == reference.generator.bit_generator.state
    assert [r["test_loss"] for r in final["history"]] == [r["test_loss"] for r in reference.history]


def test_corrupt_or_foreign_checkpoint_is_an_error_never_a_restart(tmp_path: Path) -> None:
    trained(tmp_path, epochs=1)
    path = tmp_path / "checkpoint.npz"
    good = path.read_bytes()
    with pytest.raises(CheckpointError, match="different run: lr 0.001 \\(asked: 0.01\\)"):
        Trainer(TrainConfig(epochs=1, lr=0.01), tmp_path, resume=True, dataset=DIGITS)
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(TrainConfig(epochs=1), tmp_path, dataset=DIGITS)
    for damaged in (good[: len(good) // 2], good[:100] + bytes(200) + good[300:], b"PK\x03\x04 junk"):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="corrupt checkpoint"):
            Trainer(TrainConfig(epochs=1), tmp_path, resume=True, dataset=DIGITS)
    result = symdl("train", "--epochs", "1", "--out", str(tmp_path), "--resume")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "corrupt checkpoint" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--model", "resnet"), "unknown model 'resnet'"),
    (("--dataset", "missing.npz"), "missing.npz: no such file"),
    (("--lr", "-0.001"), "lr must be a finite number > 0"),
    (("--lr=-1e-3",), "lr must be a finite number > 0"),
    (("--epochs", "0"), "epochs must be an integer >= 1"),
    (("--optimizer", "adamax2"), "unknown optimizer"),
    (("--resume",), "--resume needs --out"),
    (("--batch-size", "ten"), "invalid int value"),
    (("--threads", "0"), "--threads must be >= 1, got 0"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = symdl("train", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("symdl: error: ")
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()


def test_check_grads_reports_before_training(tmp_path: Path) -> None:
    result = symdl("train", "--model", "cnn", "--epochs", "1", "--check-grads", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "gradcheck PASS" in result.stdout and "3.weight" in result.stdout  # one row per parameter
    assert result.stdout.index("gradcheck PASS") < result.stdout.index("epoch   1/1")


def test_user_npz_trains_and_a_cnn_needs_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "flat.npz"
    np.savez(path, x=rng.standard_normal((120, 6)), y=rng.integers(0, 3, 120))
    result = symdl("train", "--model", "cnn", "--dataset", str(path), "--out", str(tmp_path / "cnn"))
    assert result.returncode == 2 and "cnn: needs inputs shaped (N, C, H, W)" in result.stderr
    trainer = Trainer(TrainConfig(dataset=str(path), epochs=2), tmp_path / "mlp")
    trainer.fit()
    assert trainer.model.parameters()[0].shape == (128, 6) and trainer.model.parameters()[-1].shape == (3,)


_leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=5)
           | st.builds(lambda v, d: np.asarray(v, dtype=d), st.lists(st.floats(-1e3, 1e3), max_size=4),
                       st.sampled_from([np.float32, np.float64, np.int64]))
           | st.builds(np.float32, st.floats(-1e3, 1e3)))
_states = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                       | st.dictionaries(st.integers(0, 5) | st.text(max_size=4), inner, max_size=3), max_leaves=12)


def _same(a: object, b: object) -> bool:
    if isinstance(a, (np.ndarray, np.generic)):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)  # type: ignore[union-attr]
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))  # type: ignore
    return type(a) is type(b) and a == b


@settings(max_examples=40)
@given(state=_states)
@example(state={0: {"step": np.float32(3), "exp_avg": np.zeros((2, 2), np.float32)}, "betas": (0.9, 0.999)})
def test_checkpoint_round_trip_keeps_values_and_types(tmp_path_factory: pytest.TempPathFactory, state: object) -> None:
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    checkpoint.save(path, {"state": state})
    assert _same(checkpoint.load(path)["state"], state)


# --------------------------------------------------------------------------- bad data, bad folders, divergence
def _user_data(folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> Path:
    path = folder / name
    np.savez(path, x=x, y=y)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda x, y: (x, np.where(np.arange(len(y)) == 0, 10**9, y)), "holds the class label 1000000000; labels must"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 0, 2**62, y)), "holds the class label 4611686018427387904"),
    (lambda x, y: (np.zeros((len(y), 0)), y), "examples have no features (shape (48, 0))"),
    (lambda x, y: (x * 1e300, y), "inputs reach 3.11e+300 in magnitude"),
])
def test_user_arrays_outside_the_bounds_are_one_line(tmp_path: Path, make: object, message: str) -> None:
    rng = np.random.default_rng(0)
    x, y = make(rng.standard_normal((60, 5)), rng.integers(0, 3, 60))  # type: ignore[operator]
    path = _user_data(tmp_path, "data.npz", x, y)
    for dtype in ("float32", "float64"):
        result = symdl("train", "--dataset", str(path), "--dtype", dtype, "--out", str(tmp_path / "run"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
    assert not (tmp_path / "run").exists()  # refused before any folder was made


def test_truncated_or_foreign_npz_is_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = _user_data(tmp_path, "good.npz", rng.standard_normal((60, 5)), rng.integers(0, 3, 60)).read_bytes()
    for name, content, why in (("truncated.npz", good[: len(good) // 2], "(BadZipFile"),
                               ("zeros.npz", bytes(4096), "(ValueError")):  # NumPy reads it as a pickle: refused
        (tmp_path / name).write_bytes(content)
        result = symdl("train", "--dataset", str(tmp_path / name), "--out", str(tmp_path / "run"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"{name}: not a readable .npz archive of plain arrays {why}" in result.stderr


@pytest.mark.parametrize("out", ["afile/run", "afile", "/dev/null", "/proc", "x" * 300, ""])
def test_unwritable_out_fails_before_training(tmp_path: Path, out: str) -> None:
    (tmp_path / "afile").write_text("a file", encoding="utf-8")
    start = time.perf_counter()
    result = symdl("train", "--epochs", "30", "--out", out, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "epoch" not in result.stdout  # not a single epoch was trained first
    assert ("--out is empty" if not out else f"{out[:40]}") in result.stderr
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(("optimizer", "dtype"), [("adam", "float64"), ("adam", "float32"), ("sgd", "float64")])
def test_divergence_is_an_error_never_a_nan_run(tmp_path: Path, optimizer: str, dtype: str) -> None:
    rng = np.random.default_rng(0)
    lr = 1e308
    path = _user_data(tmp_path, "data.npz", rng.standard_normal((60, 5)), rng.integers(0, 3, 60))
    result = symdl("train", "--dataset", str(path), "--lr", repr(lr), "--epochs", "5", "--dtype", dtype,
                   "--optimizer", optimizer, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "training diverged: the loss is" in result.stderr
    assert f"lr {lr:g}" in result.stderr and "RuntimeWarning" not in result.stderr
    metrics = tmp_path / "run" / "metrics.json"
    if metrics.exists():  # epochs before the divergence were finite and are all that was kept
        assert all(np.isfinite(row["train_loss"]) for row in json.loads(metrics.read_text())["epochs"])


def _tampered(tmp_path: Path, change: object) -> Path:
    rng = np.random.default_rng(0)
    path = _user_data(tmp_path, "data.npz", rng.standard_normal((60, 5)), rng.integers(0, 3, 60))
    folder = tmp_path / "run"
    Trainer(TrainConfig(dataset=str(path), epochs=2), folder).fit()
    state = checkpoint.load(folder / "checkpoint.npz")
    checkpoint.save(folder / "checkpoint.npz", change(state))  # type: ignore[operator]
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: [1, 2, 3], "its state is a list, not a dict"),
    (lambda s: {**s, "epoch": -5}, "checkpoint epoch -5 is not a whole number from 0 to 2"),
    (lambda s: {**s, "epoch": 7}, "checkpoint epoch 7 is not a whole number from 0 to 2"),
    (lambda s: {**s, "epoch": 1.5}, "checkpoint epoch 1.5 is not a whole number"),
    (lambda s: {**s, "history": "abc"}, "checkpoint history does not hold one row per epoch"),
    # rows the metrics files cannot be written from (a KeyError traceback after the next epoch, before)
    (lambda s: {**s, "history": [{}, {}]}, "checkpoint history does not hold one row per epoch (2 epochs) with finite"),
    (lambda s: {**s, "history": [{**r, "lr": "x"} for r in s["history"]]}, "with finite epoch, lr, train_loss"),
    (lambda s: {**s, "history": s["history"][::-1]}, "checkpoint history does not hold one row per epoch"),
    (lambda s: {**s, "config": [1]}, "checkpoint does not fit this run (no config)"),
])
def test_checkpoint_of_the_wrong_shape_is_refused(tmp_path: Path, change: object, message: str) -> None:
    path = _tampered(tmp_path, change)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Trainer(TrainConfig(dataset=str(path), epochs=2), tmp_path / "run", resume=True)
    result = symdl("train", "--dataset", str(path), "--epochs", "2", "--out", str(tmp_path / "run"), "--resume")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_stale_temporary_files_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    stale = [folder / ".checkpoint.npz.abc123.tmp", folder / ".metrics.csv.x.tmp", folder / ".curves.png.y.tmp"]
    for path in stale:
        path.write_bytes(bytes(1000))
    mine = folder / ".notes.txt.tmp"  # not a temporary file of the trainer's: left alone
    mine.write_text("keep", encoding="utf-8")
    Trainer(TrainConfig(epochs=1), folder, dataset=DIGITS, resume=True)
    assert not any(path.exists() for path in stale) and mine.exists()
