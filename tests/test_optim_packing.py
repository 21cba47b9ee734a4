"""Small parameters updated together (symdl.optim.packing) end where one update each does, bit for bit.

The reference is the same optimizer with packing switched off (``PACK_BYTES = 0``): one kernel
call per parameter. Packed runs use separate arrays (gathered and scattered every step) and
consecutive views of one buffer (updated where they lie, as after ``nn.Module.flatten_parameters``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import symdl.optim as optim
import symdl.optim.packing as packing
from symdl import nn
from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule

CASES = [pytest.param(rule, case, id=f"{rule.name}-{case}") for rule in OPTIMIZERS.values() for case in rule.cases]
SHAPES = [(3, 4), (5,), (2, 3, 2), (1,), (7,)]


def _params(dtype: type, layout: str) -> list[np.ndarray]:
    """Parameters of SHAPES: separate arrays, or consecutive views of one buffer."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    if layout == "separate":
        return arrays
    flat, start, views = np.concatenate(arrays, axis=None), 0, []
    for array in arrays:
        views.append(flat[start:start + array.size].reshape(array.shape))
        start += array.size
    return views


def _grads(dtype: type, steps: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]


def _run(rule: UpdateRule, hypers: dict, params: list[np.ndarray], grads: list[list[np.ndarray]],
         pack_bytes: int, monkeypatch: pytest.MonkeyPatch) -> optim.Optimizer:
    monkeypatch.setattr(packing, "PACK_BYTES", pack_bytes)
    optimizer = getattr(optim, rule.class_name)(params, **hypers)
    for step_grads in grads:
        optimizer.step(step_grads)
    return optimizer


def _same_state(a: optim.Optimizer, b: optim.Optimizer) -> None:
    assert a.state.keys() == b.state.keys()
    for index in a.state:
        assert a.state[index].keys() == b.state[index].keys()
        for name, value in a.state[index].items():
            np.testing.assert_array_equal(value, b.state[index][name], err_msg=f"state[{index}][{name!r}]")
            assert np.shape(value) == np.shape(b.state[index][name])


@pytest.mark.parametrize(("rule", "case"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["separate", "views"])
def test_packed_steps_equal_one_kernel_call_per_parameter(rule: UpdateRule, case: str, dtype: type, layout: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    grads = _grads(dtype, 12)
    alone = _params(dtype, "separate")
    reference = _run(rule, rule.cases[case], alone, grads, 0, monkeypatch)
    packed_params = _params(dtype, layout)
    packed = _run(rule, rule.cases[case], packed_params, grads, 1 << 20, monkeypatch)
    assert len(packed._packs) == 1 and not reference._packs  # the test runs the path it is about
    assert packed._packs[0, np.dtype(dtype)].shares_memory == (layout == "views")
    for a, b in zip(packed_params, alone):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == dtype
    _same_state(packed, reference)


@pytest.mark.parametrize("layout", ["separate", "views"])
def test_state_changes_between_steps_reach_the_packed_update(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever happens to the state between steps happens as it would without packing: a state
    array replaced by the user, a flag that adds a state (amsgrad), a loaded state dict, a None
    gradient (that parameter's step count then differs, and the others go on alone), zero_state."""
    grads = _grads(np.float64, 30)

    def run(pack_bytes: int) -> tuple[list[np.ndarray], optim.Optimizer]:
        monkeypatch.setattr(packing, "PACK_BYTES", pack_bytes)
        params = _params(np.float64, layout)
        optimizer = optim.Adam(params, lr=0.01)
        for step, step_grads in enumerate(grads):
            if step == 5:
                optimizer.state[1]["exp_avg"] = np.full(SHAPES[1], 0.5)
            if step == 10:
                optimizer.param_groups[0]["amsgrad"] = True
            if step == 15:
                saved = pickle.loads(pickle.dumps(optimizer.state_dict()))
                saved["state"][2]["exp_avg_sq"] = saved["state"][2]["exp_avg_sq"] * 2
                optimizer.load_state_dict(saved)
            if step == 20:
                step_grads = [None if i == 3 else g for i, g in enumerate(step_grads)]
            if step == 25:
                optimizer.zero_state()
            optimizer.step(step_grads)
        return params, optimizer

    (packed_params, packed), (alone_params, alone) = run(1 << 20), run(0)
    for a, b in zip(packed_params, alone_params):
        np.testing.assert_array_equal(a, b)
    _same_state(packed, alone)
    assert packed._packs  # zero_state made every step count equal again: packed once more


def test_state_entries_are_views_of_the_flat_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In place edits of a state entry (torch users write ``state["exp_avg"].zero_()``) reach the
    update too; and state_dict copies, as without packing."""
    monkeypatch.setattr(packing, "PACK_BYTES", 1 << 20)
    params = _params(np.float64, "separate")
    optimizer = optim.Adam(params, lr=0.01)
    optimizer.step(_grads(np.float64, 1)[0])
    pack = optimizer._packs[0, np.dtype(np.float64)]
    assert all(np.shares_memory(optimizer.state[i]["exp_avg"], pack.flat_states[0]) for i in range(len(SHAPES)))
    saved = optimizer.state_dict()
    assert not any(np.shares_memory(s["exp_avg"], pack.flat_states[0]) for s in saved["state"].values())
    optimizer.state[0]["exp_avg"][...] = 0.0
    assert not np.any(pack.flat_states[0][:params[0].size])


def test_consecutive_finds_one_buffer_only_when_the_pieces_follow_each_other() -> None:
    flat = np.arange(20.0)
    pieces = [flat[0:6].reshape(2, 3), flat[6:7], flat[7:12]]
    view = packing.consecutive(pieces)
    assert view is not None and np.shares_memory(view, flat) and view.size == 12 and view[0] == 0.0
    offset = [flat[2:8], flat[8:10]]
    assert packing.consecutive(offset)[0] == 2.0
    assert packing.consecutive([flat[0:6], flat[7:12]]) is None  # a gap
    assert packing.consecutive([flat[6:12], flat[0:6]]) is None  # out of order
    assert packing.consecutive([flat[0:6:2], flat[6:9]]) is None  # strided
    assert packing.consecutive([np.zeros(3), np.zeros(3)]) is None  # separate arrays
    assert packing.consecutive([flat[0:6], np.arange(20.0)[6:12]]) is None  # two buffers


def test_only_small_parameters_of_one_dtype_share_a_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "PACK_BYTES", 100)
    params = [np.zeros(5), np.zeros(20), np.zeros(3, np.float32), np.zeros(4), np.zeros(2, np.float32), np.zeros(1)]
    assert packing.packable(params) == {np.dtype(np.float64): [0, 3, 5], np.dtype(np.float32): [2, 4]}
    assert packing.packable(params[:2]) == {}  # one small parameter: nothing to pack
    flat = np.zeros(5 + 20 + 1)  # consecutive views: up to twice PACK_BYTES (the 160 bytes of the second)
    views = [flat[:5], flat[5:25], flat[25:]]
    assert packing.packable(views) == {np.dtype(np.float64): [0, 1, 2]}
    assert packing.packable([v.copy() for v in views]) == {np.dtype(np.float64): [0, 2]}
    assert packing.packable([flat[:5], flat[6:26]]) == {}  # a gap: not one run, and the second too large


def test_flatten_parameters_keeps_values_and_makes_one_buffer() -> None:
    generator = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, generator=generator), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10, generator=generator))
    before = {name: array.copy() for name, array in model.state_dict().items()}
    assert model.flatten_parameters() is model
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        assert after[name].dtype == before[name].dtype
    flat = packing.consecutive(model.parameters())
    assert flat is not None and flat.size == sum(p.size for p in model.parameters())


def test_a_flattened_model_trains_as_the_unflattened_one() -> None:
    """Same batches, same Adam: the parameters end bit for bit equal (the small parameters updated
    where they lie against gathered and scattered; the first weight, above PACK_BYTES, alone in both)."""
    def train(flatten: bool) -> list[np.ndarray]:
        generator = np.random.default_rng(3)
        model = nn.Sequential(nn.Linear(64, 200, generator=generator), nn.ReLU(),
                              nn.Linear(200, 10, generator=generator))
        if flatten:
            model.flatten_parameters()
        loss = nn.CrossEntropyLoss()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        data = np.random.default_rng(4)
        for _ in range(5):
            x, y = data.standard_normal((16, 64)).astype(np.float32), data.integers(0, 10, 16)
            loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            optimizer.step(model.gradients())
        return model.parameters()

    for a, b in zip(train(True), train(False)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["Adam", "SGD", "NAdam"])
def test_mixed_dtypes_and_strided_parameters_pack_per_dtype(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 and float64 parameters of one group make two packs; a transposed (strided) parameter is
    gathered and scattered back through its strides; the result is the per-parameter one, bit for bit
    (NAdam carries a scalar state, mu_product, shared by the pack's members)."""
    def params() -> list[np.ndarray]:
        rng = np.random.default_rng(5)
        return [rng.standard_normal((4, 3)).astype(np.float32).T, rng.standard_normal(7),
                rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)), np.zeros(1, np.float32)]

    rng = np.random.default_rng(6)
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params()] for _ in range(6)]
    runs = []
    for pack_bytes in (1 << 20, 0):
        monkeypatch.setattr(packing, "PACK_BYTES", pack_bytes)
        arrays = params()
        optimizer = getattr(optim, name)(arrays, lr=0.01)
        for step_grads in grads:
            optimizer.step(step_grads)
        runs.append((arrays, optimizer))
    (packed_params, packed), (alone_params, alone) = runs
    assert sorted(str(dtype) for _, dtype in packed._packs) == ["float32", "float64"]
    for a, b in zip(packed_params, alone_params):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    _same_state(packed, alone)
