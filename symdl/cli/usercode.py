"""Running a user's code (a target, its gradient, its module's import) so that it cannot hang or fool the CLI.

The work runs in a forked child process and its answer comes back through a
pipe, so that whatever the user's code does, the ``symdl`` process decides
what is printed and with which exit code:

* a call that does not return within ``timeout`` seconds: the child is killed
  (SIGKILL) and the error says so;
* ``sys.exit(n)`` (``SystemExit``) and ``os._exit(n)``: the work did not finish,
  which is an error (exit 2), never a pass (exit 0) or the user's own code;
* an exception: re-raised in the parent (a :class:`~symdl.errors.SymdlError`
  keeps its type and message; anything else becomes a one-line
  :class:`UserCodeError`);
* Ctrl-C: ``KeyboardInterrupt`` in the parent, which kills the child first
  (``symdl.cli.main`` turns it into one line and exit 130);
* ``print`` in the user's code: the child's standard output is its standard
  error, so ``--json`` output on stdout stays parseable.

Fork, rather than a fresh interpreter, because the child inherits the loaded
modules: measured on the 2-core test machine, a forked round trip (fork, the
pickled answer, wait) costs 2-4 ms after NumPy is imported, where a new
``python -c "import numpy"`` costs about 100 ms. Where ``os.fork`` does not
exist (Windows), the work runs in this process without a time limit.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from symdl.errors import SymdlError

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "UserCodeError", "run_guarded"]

T = TypeVar("T")

#: Seconds a ``symdl gradcheck`` may take by default (``--timeout``): a full check of a few thousand
#: elements takes well under one; past this, the user is told to use ``--mode fast`` or a larger timeout.
DEFAULT_TIMEOUT = 120.0
#: Largest ``--timeout`` accepted (one day): beyond that the option is a typo, not a plan.
MAX_TIMEOUT = 86_400.0


class UserCodeError(SymdlError):
    """The user's code failed, exited, or did not return in time (one line, exit 2)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _described(error: BaseException) -> BaseException:
    """What the parent re-raises for an exception of the child's work (picklable, one line)."""
    if isinstance(error, SystemExit):
        return UserCodeError(f"the user's code called sys.exit({error.code!r}) before the check finished")
    if isinstance(error, KeyboardInterrupt):  # a real Ctrl-C kills the child (SIG_DFL): this one was raised
        return UserCodeError("the user's code raised KeyboardInterrupt")
    if isinstance(error, SymdlError):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:  # noqa: BLE001 - a subclass whose constructor pickle cannot replay
            return UserCodeError(_one_line(str(error)))
    text = _one_line(str(error))
    # The user's own exceptions are named as such where they are caught (evaluating the target, importing
    # it); what reaches here is anything else, so it is named plainly.
    return UserCodeError(f"the check failed: {type(error).__name__}" + (f": {text}" if text else ""))


def _child(work: Callable[[], object], write_end: int) -> None:
    """Run ``work`` with stdout sent to stderr; write ``("ok", value)`` or ``("error", exc)``; never return."""
    code = 0
    try:
        sys.stdout.flush()
        os.dup2(2, 1)  # the user's prints (and C-level writes) land on stderr
        sys.stdout = sys.stderr
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it; the child just dies
        try:
            answer: tuple[str, object] = ("ok", work())
        except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included, on purpose
            answer = ("error", _described(error))
        try:
            payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - the result holds something pickle cannot carry
            payload = pickle.dumps(("error", UserCodeError(f"cannot return the result: {_one_line(str(error))}")))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - nothing may escape the child into the caller's stack
        code = 70
    finally:
        os._exit(code)


def _read_all(fd: int, deadline: float, pid: int, what: str) -> bytes:
    """Everything the child writes to ``fd`` until it closes it; kill it when ``deadline`` passes."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _kill(pid)
            raise UserCodeError(what)
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"was killed by signal {signal.Signals(number).name}"
        return f"was killed by signal {number}"
    return f"exited with status {os.WEXITSTATUS(status)} (os._exit?)"


def run_guarded(work: Callable[[], T], timeout: float, *, hint: str = "") -> T:
    """``work()`` in a forked child with a time limit; its value, or its error re-raised here.

    Args:
        work: the computation (it may import and call user code); its value must be picklable.
        timeout: seconds before the child is killed.
        hint: appended to the time-out message (what to try instead).

    Raises:
        UserCodeError: the work timed out, exited (``sys.exit``, ``os._exit``) or raised a non-symdl error.
        SymdlError: the work raised one (re-raised with its type and message).
        KeyboardInterrupt: Ctrl-C (the child is killed first).
    """
    if not hasattr(os, "fork"):
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage cannot follow it
        os.close(read_end)
        _child(work, write_end)
    os.close(write_end)
    message = f"the check did not finish within --timeout {timeout:g} s" + (f"; {hint}" if hint else "")
    try:
        payload = _read_all(read_end, time.monotonic() + timeout, pid, message)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_end)
    if not payload:
        raise UserCodeError(f"the user's code ended the process before the check finished: it {_exit_status(status)}")
    try:
        kind, value = pickle.loads(payload)
    except Exception as error:  # noqa: BLE001 - a truncated answer: the child died while writing
        raise UserCodeError(f"the check's process died while answering ({_exit_status(status)}; "
                            f"{type(error).__name__})") from None
    if kind == "error":
        raise value  # type: ignore[misc]
    return value  # type: ignore[no-any-return]
