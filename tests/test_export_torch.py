"""Every exported catalog op in PyTorch: gradcheck, equal to torch.nn.functional and to symdl's NumPy kernels.

Ground truth from outside the code under test: PyTorch's own built-ins (values
and autograd gradients) and torch.autograd.gradcheck's finite differences.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import inspect
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import symdl.kernels as kernels  # noqa: E402
from symdl.catalog import ACTIVATIONS_AND_LOSSES  # noqa: E402
from symdl.catalog.spec import Op  # noqa: E402
from symdl.export import export_module  # noqa: E402
from symdl.export.forms import EXPORTED_KINDS, camel, expression_cost, implementation_name  # noqa: E402
from symdl.sampling import draw_inputs, draw_params  # noqa: E402
from symdl.verify.ops import implementation_ulps  # noqa: E402
from symdl.verify.reference import Reference  # noqa: E402
from tests.conftest import boundary_params, case_settings  # noqa: E402

#: Built-ins whose float64 backward is less accurate than a few ulp (measured, torch 2.13 CPU): for these the
#: gradient is compared with the mpmath reference of the definition instead, and the built-in within its error.
LESS_ACCURATE_BUILTINS: dict[str, float] = {
    "celu": 1e-7,  # alpha != 1: relative errors near 1e-9
    "hardsigmoid": 1e-7,  # the 1/6 slope is rounded to float32 (relative error about 1e-8)
}

EXPORTED = [op for op in ACTIVATIONS_AND_LOSSES.values() if op.kind in EXPORTED_KINDS]
CASES = [(op.name, variant) for op in EXPORTED for variant in op.formulas]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # torch.compile looks the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("export") / "ops_torch.py"
    export_module([op.name for op in EXPORTED], "torch", path)
    return load(path, "ops_torch_catalog")


@pytest.fixture
def in_place(exported: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported module without its fused C++ loops (as without a compiler): its PyTorch operations into
    their own temporaries, which compute the plain form's values bit for bit. The fused loops round otherwise
    (tests/test_export_fused.py measures them)."""
    monkeypatch.setitem(exported._FUSED_STATE, "library", None)


def _params(op: Op, variant: str, seed: int) -> dict[str, object]:
    params = draw_params(op, np.random.default_rng(seed), variant or None)
    if op.kind == "row":
        params["dim"] = 1
    return params


def _inputs(op: Op, seed: int, shape: tuple[int, ...] = (4, 5)) -> list[np.ndarray]:
    return draw_inputs(op, np.random.default_rng(seed), shape)


def _builtin(op: Op):
    if op.torch is None:
        return None
    target = torch
    for part in op.torch.split(".")[1:]:
        target = getattr(target, part)
    return target


def _tensors(arrays: list[np.ndarray], op: Op, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Tensors of ``arrays`` (real ones in ``dtype``); class indices stay integer and need no gradient."""
    tensors = []
    for a, item in zip(arrays, op.inputs):
        real = a.dtype.kind == "f"
        tensor = torch.tensor(a, dtype=dtype if real else None)
        tensors.append(tensor.requires_grad_(item.differentiable and real))
    return tensors


def _grads(out: torch.Tensor, tensors: list[torch.Tensor], upstream: torch.Tensor) -> list[torch.Tensor | None]:
    wanted = [t for t in tensors if t.requires_grad]
    computed = iter(torch.autograd.grad(out, wanted, upstream))
    return [next(computed) if t.requires_grad else None for t in tensors]


def _on_arrays(op: Op, call_with: Callable[[dict[str, object]], Callable[..., torch.Tensor]]):
    """The forward and VJP on NumPy arrays (what :func:`implementation_ulps` measures) of the tensor function
    ``call_with(params)``: gradients through torch.autograd."""
    def implementation(params: dict[str, object]):
        call = call_with(params)

        def forward(*inputs: np.ndarray) -> np.ndarray:
            return call(*(torch.tensor(a) for a in inputs)).numpy()

        def vjp(grad: np.ndarray, *inputs: np.ndarray) -> list[np.ndarray | None]:
            tensors = _tensors(list(inputs), op, torch.tensor(inputs[0]).dtype)
            grads = _grads(call(*tensors), tensors, torch.tensor(grad))
            return [None if g is None else g.numpy() for g in grads]
        return forward, vjp
    return implementation


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_gradcheck_float64(exported: ModuleType, name: str, variant: str) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 1)
    tensors = _tensors(_inputs(op, 1, (3, 4)), op)
    function = getattr(exported, name)
    assert torch.autograd.gradcheck(lambda *t: function(*t, **params), tuple(tensors), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_values_and_gradients_within_the_stated_ulp_bounds_of_mpmath(exported: ModuleType, name: str,
                                                                    variant: str, dtype: type) -> None:
    """The exported forward and backward, in whichever proven forms they print (the backward from the input,
    or from the saved output where that loses no accuracy and costs less), keep what ``symdl verify``
    promises of the NumPy kernels: within the op's ulp bounds of the mpmath reference of the definition, on
    domain samples and at the extremes, in float32 and float64. A form that loses accuracy where the output
    has rounded (sigmoid's y (1 - y), tanh's 1 - y^2) fails here, as does a framework function less
    accurate in the tails than symdl's runtime (torch.special.ndtr)."""
    op = ACTIVATIONS_AND_LOSSES[name]
    function = getattr(exported, name)
    implementation = _on_arrays(op, lambda params: lambda *t: function(*t, **params))
    forward_error, grad_error = implementation_ulps(op, variant, implementation, dtype, seed=3)
    tolerance = op.tolerance_for(variant)
    assert forward_error <= tolerance.forward_ulp, f"{name} {np.dtype(dtype).name}: forward {forward_error} ulp"
    assert grad_error <= tolerance.grad_ulp, f"{name} {np.dtype(dtype).name}: gradient {grad_error} ulp"


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_values_and_gradients_equal_numpy_kernels_and_torch(exported: ModuleType, name: str, variant: str) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 2)
    arrays = _inputs(op, 2)
    tensors = _tensors(arrays, op)
    out = getattr(exported, name)(*tensors, **params)
    rng = np.random.default_rng(3)
    upstream = rng.standard_normal(tuple(out.shape))
    grads = _grads(out, tensors, torch.tensor(upstream))
    # symdl's NumPy kernels: the same forms, printed for NumPy
    expected = getattr(kernels, name)(*arrays, **params)
    expected_grads = getattr(kernels, f"{name}_vjp")(upstream if np.ndim(expected) else float(upstream), *arrays,
                                                     **params)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-13, atol=1e-15)
    for got, want, item in zip(grads, expected_grads, op.inputs):
        assert (got is None) == (want is None), item.name  # class indices get no gradient
        if got is not None:
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14, err_msg=item.name)
    builtin = _builtin(op)
    if builtin is None:
        return
    references = _tensors(arrays, op)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's reduction='mean' warning
        reference = builtin(*references, **params)
    reference_grads = _grads(reference, references, torch.tensor(upstream))
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-14)
    if name in LESS_ACCURATE_BUILTINS:
        for got, builtin_grad in zip(grads, reference_grads):
            torch.testing.assert_close(builtin_grad, got, rtol=LESS_ACCURATE_BUILTINS[name], atol=1e-12)
        exact = Reference(op, variant, params).gradients(arrays, upstream)
        reference_grads = [torch.tensor(np.asarray(e, dtype=np.float64)) for e in exact]
    for got, want, item in zip(grads, reference_grads, op.inputs):
        if got is not None and want is not None:
            torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13, msg=f"{name} d/d{item.name}")


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_dtype_preserved_and_finite_where_builtin_is(exported: ModuleType, name: str, variant: str) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    extremes = [v for v in op.inputs[0].domain.extremes if np.isfinite(np.float32(v))]
    if not extremes:
        pytest.skip(f"{name} has no extremes in its domain")
    params = _params(op, variant, 4)
    if "reduction" in params or any(p.name == "reduction" for p in op.params):
        params["reduction"] = "none"
    for dtype in (torch.float32, torch.float64):
        rows = op.kind in ("row", "class_loss")
        arrays = draw_inputs(op, np.random.default_rng(5), (len(extremes), 3) if rows else (len(extremes),))
        arrays[0] = (np.array([[e, 0.0, -e] for e in extremes]) if rows else np.array(extremes))
        tensors = _tensors(arrays, op, dtype)
        out = getattr(exported, name)(*tensors, **params)
        grads = _grads(out, tensors, torch.ones_like(out))
        assert out.dtype == dtype
        ours = [out.detach(), *(g for g in grads if g is not None)]
        builtin = _builtin(op)
        if builtin is None:
            assert all(bool(torch.isfinite(t).all()) for t in ours), name
            continue
        references = _tensors(arrays, op, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = builtin(*references, **params)
        theirs = [reference.detach(), *(g for g in _grads(reference, references, torch.ones_like(reference))
                                        if g is not None)]
        for mine, reference_value in zip(ours, theirs):
            assert mine.dtype == dtype
            finite = torch.isfinite(reference_value)
            assert bool(torch.isfinite(mine[finite]).all()), f"{name}: non-finite where PyTorch is finite ({dtype})"


def test_module_wrapper_and_signature(exported: ModuleType) -> None:
    module = exported.LeakyRelu(negative_slope=0.2)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(module(x), torch.nn.functional.leaky_relu(x, 0.2), rtol=0, atol=0)
    assert isinstance(module, torch.nn.Module)
    assert issubclass(exported.LeakyReluFunction, torch.autograd.Function)
    with pytest.raises(TypeError):
        exported.leaky_relu(x, 0.2)  # parameters are keyword-only, as in the NumPy kernel
    with pytest.raises(ValueError, match="reduction must be one of"):
        exported.mse_loss(x, x, reduction="average")


def test_generated_module_imports_torch_only(exported: ModuleType) -> None:
    source = Path(exported.__file__).read_text()
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"__future__", "math", "torch"}
    assert source.startswith('"""PyTorch functions exported by symdl')
    assert "Generated by" in source and "do not edit by hand" in source


def test_torch_compile(exported: ModuleType) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: exported.silu(x).sum(), backend="aot_eager", fullgraph=True)
    x = torch.linspace(-5, 5, 16, dtype=torch.float64, requires_grad=True)
    value = compiled(x)
    (grad,) = torch.autograd.grad(value, x)
    y = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(torch.nn.functional.silu(y).sum(), y)
    torch.testing.assert_close(value, torch.nn.functional.silu(y).sum(), rtol=1e-13, atol=0)
    torch.testing.assert_close(grad, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("name", "variant"), CASES)
@pytest.mark.usefixtures("in_place")
def test_every_op_compiles_to_one_graph_with_the_eager_values(exported: ModuleType, name: str, variant: str) -> None:
    """Under torch.compile each exported op traces whole (``fullgraph``: a graph break raises, and so does a
    recompile past dynamo's limit, which would otherwise run eager unnoticed), forward and backward, in
    float32 and float64. The traced branch is the plain form (``torch.compiler.is_compiling()``), the eager
    call the in-place one (the fused loops off: they round differently, tests/test_export_fused.py): their
    values and gradients are equal bit for bit."""
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 5)
    arrays = _inputs(op, 5)
    function = getattr(exported, name)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        compiled = torch.compile(lambda *t: function(*t, **params), backend="aot_eager", fullgraph=True)
        for dtype in (torch.float32, torch.float64):
            traced, eager = _tensors(arrays, op, dtype), _tensors(arrays, op, dtype)
            out, expected = compiled(*traced), function(*eager, **params)
            upstream = torch.ones_like(expected)
            torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
            for got, want in zip(_grads(out, traced, upstream), _grads(expected, eager, upstream)):
                if want is not None:
                    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


#: Ops whose transcendental functions inductor's generated C++ computes its own way (vectorized, or
#: std::erfc) instead of PyTorch's loops, so accuracy is measured again: erfc and exp in a product (gelu), exp
#: and log1p in a helper with a select (softplus), exp and log over rows (log_softmax; cross_entropy's are the
#: same functions). Clamps, comparisons, selects and gathers round nothing. Each compilation takes seconds (3-10
#: s cold on 2 cores), the whole catalog minutes; aot_eager above covers every op's trace.
INDUCTOR_CASES = [("gelu", "none"), ("softplus", ""), ("log_softmax", "")]


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor compiles C++: no g++ on this machine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "variant"), INDUCTOR_CASES)
def test_inductor_compiled_ops_keep_the_stated_ulp_bounds(exported: ModuleType, name: str, variant: str,
                                                           dtype: type) -> None:
    """The exported op compiled by inductor (dynamic shapes, one graph, no eager fallback) is within the op's
    ulp bounds of the mpmath reference, values and gradients, on domain samples and at the extremes."""
    op = ACTIVATIONS_AND_LOSSES[name]
    function = getattr(exported, name)
    torch._dynamo.reset()
    implementation = _on_arrays(op, lambda params: torch.compile(lambda *t: function(*t, **params),
                                                                 dynamic=True, fullgraph=True))
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        forward_error, grad_error = implementation_ulps(op, variant, implementation, dtype, seed=3)
    tolerance = op.tolerance_for(variant)
    assert forward_error <= tolerance.forward_ulp, f"{name} {np.dtype(dtype).name}: forward {forward_error} ulp"
    assert grad_error <= tolerance.grad_ulp, f"{name} {np.dtype(dtype).name}: gradient {grad_error} ulp"


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_class_index_losses_with_weights_ignored_rows_and_smoothing(exported: ModuleType, name: str,
                                                                    reduction: str) -> None:
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 4, 3))  # (N, C, d): the class axis is 1
    target = torch.tensor(rng.integers(0, 4, (6, 3)))
    target[0, 0] = target[3, 2] = -100  # ignored rows: out of the loss, its gradient and the mean's denominator
    weight = torch.tensor(rng.uniform(0.5, 2.0, 4))
    params = {"weight": weight, "reduction": reduction}
    if name == "cross_entropy":
        params["label_smoothing"] = 0.2
    ours_x = torch.tensor(logits, requires_grad=True)
    theirs_x = torch.tensor(logits, requires_grad=True)
    ours = getattr(exported, name)(ours_x, target, **params)
    theirs = getattr(torch.nn.functional, name)(theirs_x, target, **params)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    upstream = torch.tensor(rng.standard_normal(tuple(ours.shape)))
    (grad_ours,) = torch.autograd.grad(ours, ours_x, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, theirs_x, upstream)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-11, atol=1e-13)
    assert bool((grad_ours[0, :, 0] == 0).all())  # an ignored row gets no gradient


def test_cross_entropy_with_probability_targets(exported: ModuleType) -> None:
    rng = np.random.default_rng(8)
    logits = torch.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    target = torch.softmax(torch.tensor(rng.standard_normal((5, 4))), dim=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: exported.cross_entropy(a, b, label_smoothing=0.1), (logits, target))
    ours = exported.cross_entropy(logits, target)
    theirs = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", [op.name for op in EXPORTED])
def test_signature_is_the_numpy_kernels(exported: ModuleType, name: str) -> None:
    def shape(function: object) -> list[tuple[str, object, object]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(getattr(exported, name)) == shape(getattr(kernels, name))


@pytest.fixture(scope="module")
def exported_plain(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The same ops printed in the plain form: each operation a fresh tensor, the backward from the inputs."""
    from symdl.export import resolve
    from symdl.export.torch_module import render

    path = tmp_path_factory.mktemp("export_plain") / "ops_torch_plain.py"
    path.write_text(render(resolve([op.name for op in EXPORTED]), inplace=False))
    return load(path, "ops_torch_plain_catalog")


@pytest.mark.usefixtures("in_place")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_in_place_code_equals_the_plain_form_and_writes_no_input(exported: ModuleType, exported_plain: ModuleType,
                                                                 name: str, variant: str, dtype: torch.dtype) -> None:
    """The exported code computes into its own temporaries: bit for bit what the plain form computes.

    Forward values and gradients equal the plain-form module's exactly (no tolerance); the inputs and
    the upstream gradient keep their values and their version counters (nothing wrote into them); the
    output aliases no input. The plain branch of the exported backward (taken under create_graph) is
    also compared with the in-place one.
    """
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 4)
    arrays = _inputs(op, 4, (6, 7))
    tensors, plain = _tensors(arrays, op, dtype), _tensors(arrays, op, dtype)
    snapshot = [t.detach().clone() for t in tensors]
    versions = [t._version for t in tensors]
    out = getattr(exported, name)(*tensors, **params)
    expected = getattr(exported_plain, name)(*plain, **params)
    assert out.dtype == expected.dtype and torch.equal(out, expected)
    upstream = torch.tensor(np.random.default_rng(5).standard_normal(tuple(out.shape)), dtype=out.dtype)
    upstream_copy = upstream.clone()
    grads = _grads(out, tensors, upstream)
    expected_grads = _grads(expected, plain, upstream)
    for got, want, item in zip(grads, expected_grads, op.inputs):
        assert (got is None) == (want is None), item.name
        if got is not None:
            assert torch.equal(got, want), item.name
    for tensor, before, version in zip(tensors, snapshot, versions):
        assert tensor._version == version and torch.equal(tensor.detach(), before)
        assert out.data_ptr() != tensor.data_ptr()
    assert torch.equal(upstream, upstream_copy)
    differentiable = [t for t in tensors if t.requires_grad]
    again = getattr(exported, name)(*tensors, **params)
    graph_grads = torch.autograd.grad(again, differentiable, upstream, create_graph=True)  # the plain branch
    for got, want in zip(graph_grads, [g for g in grads if g is not None]):
        assert torch.equal(got.detach(), want)


def _applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the autograd Functions applied from now on (torch.autograd.Function.apply, spied)."""
    original = torch.autograd.Function.apply.__func__
    calls: list[str] = []

    def spy(cls, *args, **kwargs):
        calls.append(cls.__name__)
        return original(cls, *args, **kwargs)
    monkeypatch.setattr(torch.autograd.Function, "apply", classmethod(spy))
    return calls


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_without_grad_mode_the_forward_runs_without_autograd_with_the_same_values(
        exported: ModuleType, name: str, variant: str, mode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torch.no_grad and torch.inference_mode an exported function runs its Function's forward without
    Function.apply (no graph node to build: ~10 us a call), and gives the values grad mode gives, bit for bit
    (float32 and float64; in grad mode the inputs require grad, so the fused loops' saving forward runs)."""
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 6)
    arrays = _inputs(op, 6, (6, 7))
    applied = _applied(monkeypatch)
    for dtype in (torch.float32, torch.float64):
        tensors = _tensors(arrays, op, dtype)
        expected = getattr(exported, name)(*tensors, **params)
        assert applied and expected.requires_grad  # grad mode: through autograd
        applied.clear()
        with mode():
            got = getattr(exported, name)(*tensors, **params)
        assert applied == [] and not got.requires_grad
        assert got.dtype == expected.dtype and torch.equal(got, expected.detach())


FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
RELATIONS = {"gt": torch.gt, "ge": torch.ge, "lt": torch.lt, "le": torch.le}


def _edges(dtype: torch.dtype, constants: list[float]) -> torch.Tensor:
    """Signed zeros, infinities, NaN, the extreme floats, each constant, its negation and the floats beside
    them, and random normals."""
    info = torch.finfo(dtype)
    points = torch.tensor([*constants, 0.0, 1.0, info.tiny, info.smallest_normal / 4, info.max, math.inf], dtype=dtype)
    points = torch.cat([points, -points])
    around = [torch.nextafter(points, torch.full_like(points, toward)) for toward in (math.inf, -math.inf)]
    normals = torch.tensor(np.random.default_rng(3).standard_normal(200), dtype=dtype)
    return torch.cat([points, *around, torch.tensor([math.nan], dtype=dtype), normals])


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("relation", RELATIONS)
def test_float_masks_are_the_comparisons(exported: ModuleType, dtype: torch.dtype, relation: str) -> None:
    """The generated ``_mask(x, relation, c)`` is ``(x relation c).to(x.dtype)`` for every x, NaN included
    (False), at and beside each constant: the float arithmetic the in-place code multiplies by instead of a
    bool mask. Into ``out`` of the same or another dtype; never -0.0; the input unchanged."""
    info = torch.finfo(dtype)
    constants = [0.0, -0.0, 1.0, -3.0, 6.0, 0.1, 1e-30, info.max, -info.max, info.tiny]
    x = _edges(dtype, constants)
    before = x.clone()
    for c in constants:
        expected = RELATIONS[relation](x, c).to(dtype)
        for out in (None, torch.empty_like(x), torch.empty_like(x, dtype=torch.float64)):
            got = exported._mask(x, relation, c, out=out)
            assert out is None or got is out
            assert got.dtype == (dtype if out is None else out.dtype)  # a mask never promotes what it multiplies
            assert torch.equal(got.to(dtype), expected), (c, x[got.to(dtype) != expected])
            assert not torch.signbit(got).any()
    assert torch.equal(x.nan_to_num(), before.nan_to_num())


@pytest.mark.parametrize("relation", RELATIONS)
def test_float_masks_of_integers_are_the_comparisons(exported: ModuleType, relation: str) -> None:
    """An integer tensor is compared as it is (there is no float just below c to compare with)."""
    x = torch.arange(-5, 6)
    for c in (0, 3, -2):
        expected = RELATIONS[relation](x, c)
        assert torch.equal(exported._mask(x, relation, c), expected)
        out = torch.empty(x.shape, dtype=torch.float32)
        assert exported._mask(x, relation, c, out=out) is out and torch.equal(out, expected.float())


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("into", ["new", "a", "b", "other"])
@pytest.mark.parametrize("holds", [0.0, 0.5, 1.0], ids=["nowhere", "half", "everywhere"])
def test_select_on_bits_is_torch_where(exported: ModuleType, dtype: torch.dtype, into: str, holds: float) -> None:
    """The generated ``_select`` picks each value's bits unchanged (infinities, NaN, -0.0 included), into a
    branch's buffer, another tensor or a new one, and writes nothing else; a condition holding nowhere or
    everywhere picks one branch whole."""
    a = _edges(dtype, [2.0])
    b = torch.cat([a[1:], a[:1]]).neg_()
    condition = torch.tensor(np.random.default_rng(4).random(a.numel()) < holds)
    expected = torch.where(condition, a, b)
    a_copy, b_copy = a.clone(), b.clone()
    out = {"new": None, "a": a, "b": b, "other": torch.empty_like(a)}[into]
    got = exported._select(condition, a, b, out=out)
    assert out is None or got is out
    assert torch.equal(_bits(got), _bits(expected))
    for tensor, copy, name in ((a, a_copy, "a"), (b, b_copy, "b")):
        if into != name:
            assert torch.equal(_bits(tensor), _bits(copy)), name


def test_select_falls_back_to_torch_where_where_bits_do_not_apply(exported: ModuleType) -> None:
    """A broadcast condition, a Python number as a branch, integer or mixed dtypes: torch.where's result."""
    x = torch.linspace(-2, 2, 12).reshape(3, 4)
    cases = [(x > 0, x, 0.5), (torch.tensor([True, False, True, False]), x, -x), (x > 0, x.to(torch.int64), x.to(torch.int64) * 2),
             (x > 0, x, x.to(torch.float64)), (True, x, -x)]
    for condition, a, b in cases:
        expected = torch.where(torch.as_tensor(condition), a, b)
        got = exported._select(condition, a, b)
        assert got.dtype == expected.dtype and torch.equal(got, expected)


ELEMENTWISE_CASES = [(name, variant) for name, variant in CASES if ACTIVATIONS_AND_LOSSES[name].kind == "elementwise"]


def _special_values(op: Op, variant: str, params: dict, dtype: torch.dtype) -> torch.Tensor:
    """:func:`_edges` at each kink of the variant and where the catalog's forms switch branches (|x| = 3, 20,
    1000)."""
    symbols = {p.symbol: params[p.name] for p in op.params if p.symbol is not None and p.name in params}
    kinks = [float(kink.at.subs(symbols)) for kink in op.formulas[variant].kinks]
    return _edges(dtype, [*kinks, 3.0, 20.0, 1000.0])


@pytest.mark.usefixtures("in_place")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "variant"), ELEMENTWISE_CASES)
def test_in_place_code_equals_the_plain_form_at_kinks_and_special_values(exported: ModuleType, exported_plain: ModuleType,
                                                                         name: str, variant: str,
                                                                         dtype: torch.dtype) -> None:
    """Where a float mask (``_mask``) or a select on bits (``_select``) could part from the plain form's bool
    comparison and torch.where, they give the same numbers: at each kink and the floats beside it, at signed
    zeros, infinities, NaN and the extreme floats. Forward against the plain-form module, the in-place backward
    against the plain branch of the same module (taken under create_graph); NaN equals NaN, nothing else is
    tolerated."""
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 4)
    x = _special_values(op, variant, params, dtype).requires_grad_(True)
    out = getattr(exported, name)(x, **params)
    torch.testing.assert_close(out, getattr(exported_plain, name)(x, **params), rtol=0, atol=0, equal_nan=True)
    upstream = torch.linspace(-2, 2, x.numel(), dtype=dtype)
    (in_place,) = torch.autograd.grad(out, x, upstream)
    (plain,) = torch.autograd.grad(getattr(exported, name)(x, **params), x, upstream, create_graph=True)
    torch.testing.assert_close(in_place, plain.detach(), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(("name", "variant"), [c for c in ELEMENTWISE_CASES if ACTIVATIONS_AND_LOSSES[c[0]].torch])
def test_values_at_infinities_are_the_builtins_where_it_has_one(exported: ModuleType, name: str, variant: str) -> None:
    """At x = +-inf the exported function gives the built-in's value wherever that is a number, for the
    defaults and each real parameter at 0, 1 and -1 (where a case form may stop holding: leaky_relu's
    max(x, slope x) gave NaN at inf with slope 0)."""
    op = ACTIVATIONS_AND_LOSSES[name]
    x = torch.tensor([math.inf, -math.inf], dtype=torch.float64)
    for params in boundary_params(op, variant):
        expected = _builtin(op)(x, **params)
        has_number = ~torch.isnan(expected)
        got = getattr(exported, name)(x, **params)
        torch.testing.assert_close(got[has_number], expected[has_number], rtol=4e-16, atol=0, msg=f"{name} {params}")


@pytest.mark.usefixtures("in_place")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "index", "params"), case_settings())
def test_parameter_cases_are_taken_and_equal_the_general_forms(exported: ModuleType, exported_plain: ModuleType,
                                                               name: str, index: int, params: dict,
                                                               dtype: torch.dtype) -> None:
    """Where a case's condition holds (elu's alpha = 1, leaky_relu's 0 < |slope| <= 1) the exported function
    runs the case's own Function, whose values and gradients are the general Function's, at random and
    special values (kinks, infinities, NaN); in place bit for bit the plain form's; equal to the built-in."""
    op = ACTIVATIONS_AND_LOSSES[name]
    case_function = camel(implementation_name(op, "", len(op.fast_paths) + index)) + "Function"
    general = getattr(exported, camel(implementation_name(op, "")) + "Function")
    random = torch.tensor(np.random.default_rng(index).standard_normal(40) * 3, dtype=dtype)
    x = torch.cat([random, _special_values(op, "", params, dtype)]).requires_grad_(True)
    upstream = torch.linspace(-2, 2, x.numel(), dtype=dtype)
    out = getattr(exported, name)(x, **params)
    assert type(out.grad_fn).__name__ == case_function + "Backward"
    expected = general.apply(x, *(params[p.name] for p in op.params))
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0, equal_nan=True)
    plain = getattr(exported_plain, name)(x, **params)
    torch.testing.assert_close(out, plain, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(grad, torch.autograd.grad(plain, x, upstream)[0], rtol=0, atol=0, equal_nan=True)
    finite = random.detach().clone().requires_grad_(True)
    reference = _builtin(op)(finite, **params)
    torch.testing.assert_close(out[:random.numel()], reference, rtol=1e-12 if dtype == torch.float64 else 1e-6,
                               atol=0)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(lambda t: getattr(exported, name)(t, **params), (finite,), eps=1e-6,
                                        atol=1e-7)


def test_the_cheaper_proven_gradient_form_is_printed(exported: ModuleType) -> None:
    """Of the two proven gradients, from the input and from the saved output, the one cheaper for PyTorch's
    CPU functions is printed: logsigmoid's sigma(-x) (torch.sigmoid, 0.4 ms per 1e6 float32 values) rather
    than -expm1(y) (1.2 ms); softmax's y (g - sum g y) rather than recomputing the exponentials; softplus's
    sigma(beta x) rather than -expm1(-beta y)."""
    source = {name: inspect.getsource(getattr(exported, camel(name) + "Function"))
              for name in ("logsigmoid", "softmax", "softplus")}
    assert "torch.sigmoid" in source["logsigmoid"] and "expm1" not in source["logsigmoid"]
    assert "ctx.save_for_backward(input, out)" in source["softmax"]
    assert "expm1" not in source["softplus"].split("def backward")[1]
    x = sp.Symbol("x")
    costs = {"exp": 8.0}
    # exp(x) computed once (8), sin (not listed: 1), a product and a sum
    assert expression_cost(sp.exp(x) * sp.sin(x) + sp.exp(x), costs) == 8.0 + 1 + 1 + 1


LOSSES = [op.name for op in EXPORTED if op.kind in ("pointwise_loss", "class_loss")]


@pytest.mark.parametrize("name", LOSSES)
def test_every_float32_float64_mix_of_a_loss_is_the_plain_forms(exported: ModuleType, exported_plain: ModuleType,
                                                                 name: str) -> None:
    """Each loss with its real inputs in every mix of float32 and float64: in place (float masks, selects
    on bits, buffers reused only where dtypes agree), the output and the gradients have the plain form's
    dtypes and values bit for bit."""
    op = ACTIVATIONS_AND_LOSSES[name]
    variant = next(iter(op.formulas))
    params = _params(op, variant, 6)
    arrays = _inputs(op, 6, (5, 6))
    real = [k for k, a in enumerate(arrays) if a.dtype.kind == "f"]
    for dtypes in itertools.product([torch.float32, torch.float64], repeat=len(real)):
        chosen = dict(zip(real, dtypes))

        def tensors() -> list[torch.Tensor]:
            return [torch.tensor(a, dtype=chosen.get(k)).requires_grad_(k in chosen and item.differentiable)
                    for k, (a, item) in enumerate(zip(arrays, op.inputs))]

        ours, plain = tensors(), tensors()
        out, expected = getattr(exported, name)(*ours, **params), getattr(exported_plain, name)(*plain, **params)
        assert out.dtype == expected.dtype and torch.equal(out, expected), dtypes
        upstream = torch.ones_like(out)
        for got, want in zip(_grads(out, ours, upstream), _grads(expected, plain, upstream)):
            assert (got is None) == (want is None)
            assert got is None or got.dtype == want.dtype and torch.equal(got, want), dtypes


@pytest.mark.parametrize("name", ["mse_loss", "huber_loss", "smooth_l1_loss", "l1_loss"])
def test_pointwise_loss_broadcasts_inputs_in_place(exported: ModuleType, exported_plain: ModuleType, name: str) -> None:
    """A target wider than the input broadcasts as in the built-in (float64), and with a float32 input promotes
    as the plain form does, bit for bit: the in-place code never writes a broadcast or promoted result into a
    narrower buffer."""
    op = ACTIVATIONS_AND_LOSSES[name]
    rng = np.random.default_rng(6)
    x64 = torch.tensor(rng.standard_normal((5, 1)), requires_grad=True)
    y = torch.tensor(rng.random((5, 4)), requires_grad=True)
    upstream = torch.tensor(rng.standard_normal((5, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the built-in's warning about broadcasting
        out = getattr(exported, name)(x64, y, reduction="none")
        reference = _builtin(op)(x64, y, reduction="none")
    assert out.shape == reference.shape == (5, 4)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-14)
    for got, want in zip(torch.autograd.grad(out, (x64, y), upstream),
                         torch.autograd.grad(reference, (x64, y), upstream)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    x32 = x64.detach().float().requires_grad_(True)
    out = getattr(exported, name)(x32, y, reduction="none")
    plain = getattr(exported_plain, name)(x32, y, reduction="none")
    assert out.dtype == plain.dtype == torch.float64 and torch.equal(out, plain)
    for got, want in zip(torch.autograd.grad(out, (x32, y), upstream), torch.autograd.grad(plain, (x32, y), upstream)):
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)


#: Class losses with class-index targets and their parameters: (op, parameters, class-axis shape (N, C, ...)).
#: ``weight`` True draws a per-class weight; an ``ignore_index`` that is a class (2) ignores real rows.
GATHER_CASES = [
    ("nll_loss", {}, (6, 5, 3)),
    ("nll_loss", {"weight": True, "ignore_index": 2}, (6, 5, 3)),
    ("nll_loss", {"weight": True}, (7, 5)),
    ("cross_entropy", {}, (6, 5, 3)),
    ("cross_entropy", {"weight": True}, (7, 5)),
    ("cross_entropy", {"label_smoothing": 0.1}, (6, 5, 3)),
    ("cross_entropy", {"weight": True, "label_smoothing": 0.3, "ignore_index": 2}, (6, 5, 3)),
    ("multi_margin_loss", {}, (7, 5)),
    ("multi_margin_loss", {"p": 2, "margin": 0.7, "weight": True}, (7, 5)),
]


def _gather_case(name: str, params: dict, shape: tuple[int, ...], dtype: torch.dtype, reduction: str,
                 seed: int = 11) -> tuple[np.ndarray, torch.Tensor, dict]:
    """Logits, class-index targets (with ignored rows where the op has ``ignore_index``) and parameters."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 2
    target = torch.tensor(rng.integers(0, shape[1], shape[:1] + shape[2:]))
    params = dict(params, reduction=reduction)
    if "ignore_index" in inspect.signature(getattr(torch.nn.functional, name)).parameters:
        ignored = params.get("ignore_index", -100)
        target.view(-1)[:2] = ignored  # the first two rows are out of the loss, its gradient and the mean
    if params.get("weight"):
        params["weight"] = torch.tensor(rng.uniform(0.5, 2.0, shape[1]), dtype=dtype)
    return logits, target, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("name", "params", "shape"), GATHER_CASES)
def test_class_index_targets_take_the_gather_form(exported: ModuleType, name: str, params: dict,
                                                 shape: tuple[int, ...], reduction: str, dtype: torch.dtype) -> None:
    """Class-index targets run the gather form (its Function is the output's grad_fn), whose values and
    gradients equal the built-in's in float32 and float64: ignored rows, per-class weights, label smoothing,
    every reduction, and a class axis 1 with a spatial axis after it."""
    logits, target, params = _gather_case(name, params, shape, dtype, reduction)
    ours_x = torch.tensor(logits, dtype=dtype, requires_grad=True)
    theirs_x = torch.tensor(logits, dtype=dtype, requires_grad=True)
    ours = getattr(exported, name)(ours_x, target, **params)
    theirs = getattr(torch.nn.functional, name)(theirs_x, target, **params)
    node = type(ours.grad_fn).__name__  # NameGather[FastN]FunctionBackward: a gather-form Function
    assert node.startswith("".join(p.title() for p in name.split("_")) + "Gather"), node
    assert node.endswith("FunctionBackward"), node
    assert ours.dtype == dtype and ours.shape == theirs.shape
    tight = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {}  # float32: assert_close's own
    torch.testing.assert_close(ours, theirs, **tight)
    upstream = torch.tensor(np.random.default_rng(12).standard_normal(tuple(ours.shape)), dtype=dtype)
    (grad_ours,) = torch.autograd.grad(ours, ours_x, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, theirs_x, upstream)
    assert grad_ours.dtype == dtype
    torch.testing.assert_close(grad_ours, grad_theirs, **tight)
    if "ignore_index" in inspect.signature(getattr(torch.nn.functional, name)).parameters:
        ignored = torch.movedim(grad_ours, 1, -1).reshape(-1, shape[1])[:2]
        assert bool((ignored == 0).all())  # ignored rows get no gradient, not even at class 0


@pytest.mark.parametrize(("name", "params", "shape"), GATHER_CASES)
def test_gather_form_gradcheck_and_create_graph(exported: ModuleType, name: str, params: dict,
                                                shape: tuple[int, ...]) -> None:
    """Finite differences agree with the gather form's backward (float64), and its plain branch (taken under
    create_graph) is differentiable again: the scatter is recorded by autograd."""
    logits, target, params = _gather_case(name, params, shape, torch.float64, "mean", seed=13)
    x = torch.tensor(logits, requires_grad=True)
    function = getattr(exported, name)
    assert torch.autograd.gradcheck(lambda v: function(v, target, **params), (x,), eps=1e-6, atol=1e-7)
    (grad,) = torch.autograd.grad(function(x, target, **params), x, create_graph=True)
    y = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(getattr(torch.nn.functional, name)(y, target, **params), y, create_graph=True)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    if name == "cross_entropy":  # a second derivative through the scatter: softmax's Hessian-vector product
        direction = torch.tensor(np.random.default_rng(14).standard_normal(shape))
        (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
        (expected_hvp,) = torch.autograd.grad((expected * direction).sum(), y)
        torch.testing.assert_close(hvp, expected_hvp, rtol=1e-11, atol=1e-13)


def test_gather_form_in_the_source_and_probability_targets_stay_dense(exported: ModuleType) -> None:
    """The generated source gathers (``_pick``) and scatters (``_add_at_targets``) for class indices, and
    the class losses without class-index targets have no gather form; probability targets take the rows."""
    source = Path(exported.__file__).read_text()
    for name in ("NllLoss", "CrossEntropy", "MultiMarginLoss"):
        block = source.split(f"class {name}GatherFunction(")[1].split("\nclass ")[0]
        assert "_pick(x, t, dim)" in block and "_add_at_targets(" in block and "one_hot" not in block
    assert "MultilabelSoftMarginLossGather" not in source and "CosineEmbeddingLossGather" not in source
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(5, 4, dtype=torch.float64), dim=1)
    assert type(exported.cross_entropy(logits, target).grad_fn).__name__ == "CrossEntropyFast0FunctionBackward"


def test_gather_form_under_torch_compile(exported: ModuleType) -> None:
    """The gather form traces whole under torch.compile (one graph) and computes the built-in's values and
    gradients there."""
    torch._dynamo.reset()
    logits, target, params = _gather_case("cross_entropy", {"weight": True, "ignore_index": 2}, (6, 5, 3),
                                          torch.float64, "mean", seed=15)
    compiled = torch.compile(lambda v: exported.cross_entropy(v, target, **params), backend="aot_eager",
                             fullgraph=True)
    x = torch.tensor(logits, requires_grad=True)
    value = compiled(x)
    (grad,) = torch.autograd.grad(value, x)
    y = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(y, target, **params)
    (expected_grad,) = torch.autograd.grad(expected, y)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("min_val", "max_val"), [(1.0, -1.0), (0.5, 0.5)])
def test_exported_hardtanh_refuses_the_bounds_pytorch_refuses(exported: ModuleType, min_val: float,
                                                              max_val: float) -> None:
    x = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    refused = {}
    for side, function in (("export", exported.hardtanh), ("torch", torch.nn.functional.hardtanh)):
        try:
            function(x, min_val=min_val, max_val=max_val)
            refused[side] = False
        except ValueError:
            refused[side] = True
    assert refused["export"] == refused["torch"] == (min_val > max_val)
