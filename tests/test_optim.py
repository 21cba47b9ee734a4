"""Generated optimizer kernels against their SymPy rules; state handling; bad input.

Every rule and every branch (``cases`` in the catalog) is run over many steps
on hypothesis-drawn gradient sequences and hyper-parameters and compared with
a direct float64 evaluation of its assignments (:mod:`symdl.verify.rule_eval`).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symdl.optim as optim
from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule
from symdl.errors import OpInputError, OpParameterError, OpTypeError
from symdl.verify.rule_eval import local_error, run_kernel, run_rule, trajectory_error

CASES = [pytest.param(rule, case, id=f"{rule.name}-{case}") for rule in OPTIMIZERS.values() for case in rule.cases]
RULES = [pytest.param(rule, id=rule.name) for rule in OPTIMIZERS.values()]

#: One kernel step from the rule's own state against the same step in long double, as a fraction of
#: the running rounding-error bound of evaluating the rule (symdl.verify.rounding): the kernel may
#: order and fuse operations differently from the rule, but must stay within what rounding allows.
STEP_ERROR_BOUND = 1.0
#: Whole trajectories at the catalog's cases (tame dynamics): measured at most 2e-16 over 200 steps.
TRAJECTORY_BOUND = 1e-14


def _gradients(seed: int, steps: int, size: int, scale: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    drift = rng.standard_normal(size)  # a persistent direction plus noise, like a real loss surface
    return [scale * (drift + rng.standard_normal(size)) for _ in range(steps)]


def _draw_hypers(rule: UpdateRule, case: str, data: st.DataObject) -> dict[str, object]:
    hypers = dict(rule.cases[case])
    for h in rule.hypers:
        if h.sample is None or h.name in hypers:
            continue
        low, high = h.sample
        draw = st.floats(low, high, allow_nan=False, allow_infinity=False)
        hypers[h.name] = (data.draw(draw), data.draw(draw)) if h.kind == "pair" else data.draw(draw)
    return hypers


@pytest.mark.parametrize(("rule", "case"), CASES)
@settings(max_examples=4, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 1e3]))
@example(data=None, seed=0, scale=1.0)
@example(data=None, seed=1, scale=1e-3)
def test_kernel_step_equals_sympy_rule(rule: UpdateRule, case: str, data: st.DataObject | None, seed: int,
                                       scale: float) -> None:
    """Every step, from the rule's own state, to a few ulps (hypothesis draws the hyper-parameters)."""
    hypers = dict(rule.cases[case]) if data is None else _draw_hypers(rule, case, data)
    param = np.random.default_rng(seed).standard_normal(16)
    grads = _gradients(seed, 60, 16, scale)
    assert local_error(rule, hypers, param, grads) <= STEP_ERROR_BOUND, hypers


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_kernel_trajectory_equals_sympy_rule(rule: UpdateRule, case: str) -> None:
    """Hundreds of steps at the catalog's settings, kernel and rule never drift apart."""
    param = np.random.default_rng(11).standard_normal(16)
    grads = _gradients(11, 200, 16, 1.0)
    error = trajectory_error(run_kernel(rule, rule.cases[case], param, grads),
                             run_rule(rule, rule.cases[case], param, grads))
    assert error <= TRAJECTORY_BOUND


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_float32_stays_float32_and_close(rule: UpdateRule, case: str) -> None:
    """float32 parameters and state stay float32 and follow the float64 rule to float32 rounding."""
    rng = np.random.default_rng(7)
    param = rng.standard_normal(64).astype(np.float32)
    grads = [g.astype(np.float32) for g in _gradients(7, 50, 64, 1.0)]
    result = run_kernel(rule, rule.cases[case], param, grads)
    assert all(p.dtype == np.float32 for p in result.params)
    assert all(v.dtype == np.float32 for v in result.state.values() if isinstance(v, np.ndarray))
    reference = run_rule(rule, rule.cases[case], param.astype(np.float64), grads)
    if rule.name == "lion":  # sign(c) of a c rounded to float32 may flip where c ~ 0: compare the first steps
        result.params[:], reference.params[:] = result.params[:3], reference.params[:3]
    assert trajectory_error(result, reference) <= 5e-5


@pytest.mark.parametrize("rule", RULES)
def test_step_is_in_place_and_skips_none(rule: UpdateRule) -> None:
    a, b = np.ones(5), np.ones((2, 3))
    opt = getattr(optim, rule.class_name)([a, b], lr=0.1)
    before_b = b.copy()
    opt.step([np.full(5, 0.5), None])
    assert not np.array_equal(a, np.ones(5))  # updated, same object
    assert np.array_equal(b, before_b) and 1 not in opt.state  # None gradient: untouched, no state


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_a_step_allocates_no_parameter_sized_array(rule: UpdateRule, case: str) -> None:
    """The generated kernels write into the parameter, its state and the scratch buffers allocated once: a
    step's peak of new memory stays far below one parameter's size (measured: under 4 kB for 64 kB)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    param = rng.standard_normal(8192)  # 64 kB: one block, updated by one kernel call
    opt = getattr(optim, rule.class_name)([param], **rule.cases[case])
    grads = [rng.standard_normal(8192) for _ in range(3)]
    opt.step([grads[0]])
    opt.step([grads[1]])  # state and scratch exist
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        opt.step([grads[2]])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < param.nbytes // 4, peak


@pytest.mark.parametrize(("rule", "case"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_update_equals_whole_array_update(rule: UpdateRule, case: str, dtype: type,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter larger than a block (updated block by block, last block partial) ends bit for bit
    where one kernel call over the whole array does, state included; a transposed (non-contiguous)
    parameter of the same size takes the whole-array path and agrees too."""
    import symdl.optim.optimizer as base

    block_bytes = base.BLOCK_BYTES
    shape = (block_bytes // np.dtype(dtype).itemsize // 100 * 2 + 7, 100)  # 2 blocks and a bit
    grads = [g.astype(dtype).reshape(shape) for g in _gradients(5, 4, shape[0] * shape[1], 1.0)]

    def run(block_bytes: int, transposed: bool) -> tuple[np.ndarray, dict]:
        monkeypatch.setattr(base, "BLOCK_BYTES", block_bytes)
        p = np.linspace(-1, 1, shape[0] * shape[1], dtype=dtype).reshape(shape)
        p = np.ascontiguousarray(p.T).T if transposed else p
        opt = getattr(optim, rule.class_name)([p], **rule.cases[case])
        for g in grads:
            opt.step([np.ascontiguousarray(g.T).T if transposed else g])
        return p, opt.state[0]

    whole, whole_state = run(1 << 40, False)
    for p, state in (run(block_bytes, False), run(block_bytes, True)):
        assert np.array_equal(p, whole) and p.dtype == dtype
        assert state.keys() == whole_state.keys()
        assert all(np.array_equal(state[k], whole_state[k]) for k in state)


@pytest.mark.parametrize("rule", RULES)
def test_state_dict_round_trips_exactly(rule: UpdateRule) -> None:
    rng = np.random.default_rng(3)
    grads = _gradients(3, 20, 6, 1.0)
    hypers = dict(list(rule.cases.values())[-1])

    def fresh() -> tuple[np.ndarray, optim.Optimizer]:
        p = np.linspace(-1, 1, 6)
        return p, getattr(optim, rule.class_name)([p], **hypers)

    p1, opt1 = fresh()
    for g in grads[:10]:
        opt1.step([g])
    saved = pickle.loads(pickle.dumps(opt1.state_dict()))
    p2, opt2 = fresh()
    p2[:] = p1
    opt2.load_state_dict(saved)
    for g in grads[10:]:
        opt1.step([g])
        opt2.step([g])
    assert np.array_equal(p1, p2)
    assert rng is not None and opt1.state_dict()["param_groups"] == opt2.state_dict()["param_groups"]


def test_state_dict_is_a_copy_and_zero_state_resets() -> None:
    p = np.ones(3)
    opt = optim.Adam([p], lr=0.1)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    opt.step([np.ones(3)])
    assert saved["state"][0]["step"] == 1 and not np.array_equal(saved["state"][0]["exp_avg"], opt.state[0]["exp_avg"])
    opt.zero_state()
    assert opt.state == {}


def test_param_groups_are_torch_like() -> None:
    a, b = np.zeros(2), np.zeros(3)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    opt.step([np.ones(2), np.ones(3)])
    assert np.allclose(a, -0.1) and np.allclose(b, -0.5)


# --------------------------------------------------------------------------- bad input
BAD_HYPERS = [
    ("SGD", {"lr": -0.1}, "SGD: lr must be >= 0"),
    ("SGD", {"nesterov": True}, "SGD: nesterov requires momentum > 0 and dampening = 0"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov requires"),
    ("Adam", {"betas": (1.0, 0.999)}, r"Adam: betas\[0\] must be in \[0, 1\)"),
    ("Adam", {"betas": (0.9, -0.1)}, r"Adam: betas\[1\] must be in \[0, 1\)"),
    ("Adam", {"eps": 0.0}, "Adam: eps must be > 0"),
    ("AdamW", {"weight_decay": -1.0}, "AdamW: weight_decay must be >= 0"),
    ("Adagrad", {"eps": -1e-10}, "Adagrad: eps must be > 0"),
    ("RMSprop", {"momentum": -0.5}, "RMSprop: momentum must be >= 0"),
    ("Adadelta", {"rho": 1.5}, r"Adadelta: rho must be in \[0, 1\]"),
    ("Lion", {"betas": (0.9, 1.0)}, r"Lion: betas\[1\] must be in \[0, 1\)"),
    ("NAdam", {"momentum_decay": -1.0}, "NAdam: momentum_decay must be >= 0"),
    ("Adam", {"lr": float("nan")}, "Adam: lr must be finite"),
    ("Adam", {"amsgrad": "yes"}, "Adam: amsgrad must be True or False"),
    ("RAdam", {"betas": 0.9}, "RAdam: betas must be a pair"),
]


@pytest.mark.parametrize(("name", "hypers", "message"), BAD_HYPERS)
def test_bad_hyper_parameters_raise_value_error(name: str, hypers: dict, message: str) -> None:
    with pytest.raises(OpParameterError, match=message) as info:
        getattr(optim, name)([np.zeros(2)], **hypers)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("name", "good", "bad", "message"), [
    ("Adam", {"amsgrad": True}, {"amsgrad": 1}, "Adam: amsgrad must be True or False"),
    ("Adam", {"lr": 1e-3}, {"lr": float("nan")}, "Adam: lr must be finite"),
    ("SGD", {"momentum": 0.9, "nesterov": True}, {"momentum": 0.0}, "SGD: nesterov"),
    ("Adam", {"betas": (0.9, 0.999)}, {"betas": [0.9, 1.0]}, r"Adam: betas\[1\] must be in \[0, 1\)"),
])
def test_a_group_edited_between_steps_is_checked_again(name: str, good: dict, bad: dict, message: str) -> None:
    """Checks are remembered by the hyper-parameters' values and types: a value written into the
    group after good steps (by a scheduler or a user) is checked before anything changes."""
    param = np.ones(3)
    optimizer = getattr(optim, name)([param], **good)
    optimizer.step([np.ones(3)])
    optimizer.step([np.ones(3)])
    before = param.copy()
    optimizer.param_groups[0].update(bad)
    for _ in range(2):
        with pytest.raises(OpParameterError, match=message):
            optimizer.step([np.ones(3)])
    np.testing.assert_array_equal(param, before)
    optimizer.param_groups[0].update(good)
    optimizer.step([np.ones(3)])
    assert not np.array_equal(param, before)


@pytest.mark.parametrize("rule", RULES)
def test_bad_gradients_raise_before_any_change(rule: UpdateRule) -> None:
    a, b = np.ones(4), np.ones(3)
    opt = getattr(optim, rule.class_name)([a, b])
    opt.step([np.ones(4), np.ones(3)])
    snapshot = (a.copy(), b.copy(), pickle.dumps(opt.state_dict()["state"]))
    bad = [
        ([np.ones(4), np.ones(2)], OpInputError, r"grads\[1\] has shape \(2,\), its parameter \(3,\)"),
        ([np.ones(4)], OpInputError, r"step needs one gradient per parameter \(2\), got 1"),
        ([np.ones(4), np.ones(3, dtype=np.float32)], OpTypeError, r"grads\[1\] is float32, its parameter float64"),
        ([np.ones(4), [1.0, 2.0, 3.0]], OpTypeError, r"grads\[1\] must be a NumPy array"),
        ([np.ones(4), b], OpInputError, r"grads\[1\] shares memory with its parameter"),  # the array itself
        ([a[::-1], np.ones(3)], OpInputError, r"grads\[0\] shares memory with its parameter"),  # a view of it
    ]
    for grads, error, message in bad:
        with pytest.raises(error, match=f"{rule.class_name}: {message}"):
            opt.step(grads)
    shared = np.ones(8)
    view_param = getattr(optim, rule.class_name)([shared[:4]])
    view_param.step([shared[4:]])  # disjoint halves of one buffer: no overlap, no error
    with pytest.raises(OpInputError, match="shares memory"):
        view_param.step([shared[2:6]])  # overlapping halves
    opt.param_groups[0]["lr"] = -1.0  # a scheduler or a user writing a bad value
    with pytest.raises(OpParameterError, match=f"{rule.class_name}: lr must be >= 0"):
        opt.step([np.ones(4), np.ones(3)])
    assert np.array_equal(a, snapshot[0]) and np.array_equal(b, snapshot[1])
    assert pickle.dumps(opt.state_dict()["state"]) == snapshot[2]


def test_bad_params() -> None:
    with pytest.raises(OpTypeError, match=r"Adam: params\[0\] must be a float32 or float64 NumPy array"):
        optim.Adam([np.zeros(3, dtype=np.int64)])
    with pytest.raises(OpInputError, match="Adam: params must be a non-empty list"):
        optim.Adam([])
    p = np.zeros(3)
    with pytest.raises(OpInputError, match=r"params\[1\] appears in more than one place"):
        optim.SGD([p, p])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), a=st.floats(-1e3, 1e3, allow_nan=False), transposed=st.booleans())
@example(seed=0, a=-1e-3, transposed=False)
@example(seed=1, a=0.0, transposed=True)
def test_axpy_is_one_rounding_of_y_plus_a_x_in_place_whatever_the_layout(dtype: type, seed: int, a: float,
                                                                          transposed: bool) -> None:
    """The generated kernels' ``y += a x`` (one BLAS pass): the exact value rounded once (fused) or
    twice, so within half an ulp of the result plus half an ulp of ``a x`` of the exact value;
    written into ``y`` itself; the same bits for strided ``y`` and ``x`` as for contiguous ones."""
    from fractions import Fraction

    from symdl.optim._blas import axpy

    rng = np.random.default_rng(seed)
    x, y = (rng.standard_normal((37, 29)).astype(dtype) for _ in range(2))
    contiguous = y.copy()
    axpy(a, x, contiguous)
    strided_y, strided_x = np.asfortranarray(y), np.asfortranarray(x)
    if transposed:
        strided_y, strided_x = strided_y.T.copy().T, strided_x.T.copy().T
    axpy(a, strided_x, strided_y)
    np.testing.assert_array_equal(strided_y, contiguous)
    scale = Fraction(float(dtype(a)))  # BLAS takes a in the arrays' precision
    exact = np.array([float(Fraction(float(v)) + scale * Fraction(float(u)) - Fraction(float(w)))
                      for v, u, w in zip(y.ravel(), x.ravel(), contiguous.ravel())]).reshape(y.shape)
    bound = 0.5 * np.spacing(np.abs(contiguous)) + 0.5 * np.spacing(np.abs(dtype(a) * x))
    assert np.all(np.abs(exact) <= bound.astype(np.float64) * 1.0001)
    frozen = y.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        axpy(a, x, frozen)


def test_errors_see_nan_and_inf_instead_of_dropping_them() -> None:
    """A NaN or an overflow in the kernel's result where the rule's is finite is an infinite error
    (``max`` ignores a NaN, which once let a broken kernel pass); equal non-finite values agree."""
    from symdl.verify.rule_eval import Trajectory

    reference = Trajectory(params=[np.array([1.0, 2.0]), np.array([np.inf, 3.0])], state={})
    for bad in (np.nan, np.inf, -np.inf):
        computed = Trajectory(params=[np.array([1.0, bad]), np.array([np.inf, 3.0])], state={})
        assert trajectory_error(computed, reference) == np.inf
    same = Trajectory(params=[np.array([1.0, 2.0]), np.array([np.inf, 3.0 + 3e-16])], state={})
    assert 0 < trajectory_error(same, reference) < 1e-15


def test_state_a_flag_needs_is_created_when_the_flag_turns_on() -> None:
    """Momentum switched on mid-run gets its buffer (from zero, as documented), and so does a
    state cleared by zero_state or replaced by load_state_dict: the optimizer remembers which
    states it initialised for which hyper-parameters, never more."""
    param = np.zeros(3)
    optimizer = optim.SGD([param], lr=0.5)
    optimizer.step([np.ones(3)])
    assert "momentum_buffer" not in optimizer.state[0]
    optimizer.param_groups[0]["momentum"] = 0.9
    optimizer.step([np.ones(3)])  # buffer = 0.9 * 0 + d
    np.testing.assert_array_equal(optimizer.state[0]["momentum_buffer"], np.ones(3))
    np.testing.assert_array_equal(param, -np.ones(3))
    saved = optimizer.state_dict()
    optimizer.zero_state()
    optimizer.step([np.ones(3)])  # step 1 again: the buffer starts at the gradient
    np.testing.assert_array_equal(optimizer.state[0]["momentum_buffer"], np.ones(3))
    optimizer.load_state_dict({**saved, "state": {}})
    optimizer.step([2 * np.ones(3)])
    np.testing.assert_array_equal(optimizer.state[0]["momentum_buffer"], 2 * np.ones(3))


# --------------------------------------------------------------------------- one-pass steps
ONE_PASS_RULES = [pytest.param(rule, id=rule.name) for rule in OPTIMIZERS.values() if rule.one_pass != sp.false]


def _literal_values(condition: sp.Basic) -> dict[sp.Basic, sp.Basic]:
    """The values a conjunction of equalities and boolean literals fixes."""
    values: dict[sp.Basic, sp.Basic] = {}
    for clause in sp.And.make_args(condition):
        if isinstance(clause, sp.Eq):
            values[clause.lhs] = clause.rhs
        elif isinstance(clause, sp.Not):
            values[clause.args[0]] = sp.false
        else:
            assert clause.is_Symbol, f"one_pass clause {clause} is not an equality or a literal"
            values[clause] = sp.true
    return values


@pytest.mark.parametrize("rule", ONE_PASS_RULES)
def test_one_pass_condition_makes_the_step_plain_gradient_descent(rule: UpdateRule) -> None:
    """Under ``one_pass``, the rule's assignments compose to param - lr * grad, and every state stays
    as it was, for all values of the other hyper-parameters and states (so one unblocked pass is
    the whole step)."""
    from symdl.catalog.optimizers import GRAD, LR, PARAM

    values = _literal_values(rule.one_pass)
    current: dict[sp.Basic, sp.Basic] = {}
    for target, expr in rule.steps:
        current[target] = expr.xreplace(values).xreplace(current)
    assert sp.simplify(current[PARAM] - (PARAM - LR * GRAD)) == 0
    for state in rule.states:
        assert sp.simplify(current.get(state.symbol, state.symbol) - state.symbol) == 0, state.name


@pytest.mark.parametrize(("hypers", "blocked"), [({}, False), ({"momentum": 0.9}, True), ({"maximize": True}, True)])
def test_only_multi_pass_steps_update_large_parameters_in_blocks(hypers: dict, blocked: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import symdl.optim.optimizer as base

    calls = []
    monkeypatch.setattr(base.Optimizer, "_update_blocks", lambda self, *args: calls.append(args) or ())
    param = np.zeros(base.BLOCK_BYTES // 8 * 3)
    optim.SGD([param], lr=0.1, **hypers).step([np.ones_like(param)])
    assert bool(calls) == blocked
    assert blocked or np.all(param == -0.1)
