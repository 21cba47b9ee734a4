"""The exported PyTorch module's fused CPU loops (symdl.export.fused): every elementwise op has them, they are
taken where they apply and left where they do not, and they give the PyTorch operations' non-finite values and
subgradients at kinks exactly.

Their accuracy against mpmath is measured by tests/test_export_torch.py's ulp-bound test, which runs the
default path (the fused loops, on CPU tensors); built without a compiler, or failing to build, the module warns
once and runs its PyTorch operations.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.export import define_op, export_module, export_source
from symdl.export.forms import implementation_name, implementations, print_forms
from symdl.export.fused import fused_kernels
from symdl.printing.torch_printer import (
    TORCH_CPU_COSTS,
    TorchInplacePrinter,
    TorchPrinter,
    lower_to_torch,
)
from tests.conftest import case_settings
from tests.test_export_torch import (
    ELEMENTWISE_CASES,
    EXPORTED,
    _params,
    _special_values,
    load,
)

needs_compiler = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="no C++ compiler")
ELEMENTWISE = sorted({name for name, _ in ELEMENTWISE_CASES})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The catalog's module as tests/test_export_torch.py exports it: the same C++, so one build serves both
    (the library is named by a hash of its source)."""
    path = tmp_path_factory.mktemp("fused") / "ops_torch.py"
    export_module([op.name for op in EXPORTED], "torch", path)
    return load(path, "ops_torch_fused")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """A module of one op, for the tests that build its library again (a few seconds, where the catalog's
    takes ten)."""
    path = tmp_path_factory.mktemp("fused_small") / "ops_torch.py"
    export_module(["silu"], "torch", path)
    return load(path, "ops_torch_fused_small")


class _Spy:
    """Records each ``_fused`` call of a module: (kernel, whether it ran)."""

    def __init__(self, module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bool]] = []
        original = module._fused

        def spy(kernel, arrays, scalars, outputs):
            result = original(kernel, arrays, scalars, outputs)
            self.calls.append((kernel, result is not None))
            return result
        monkeypatch.setattr(module, "_fused", spy)

    def ran(self) -> set[str]:
        return {kernel for kernel, ran in self.calls if ran}


def _value_and_grad(function, x: torch.Tensor, params: dict, upstream: torch.Tensor, **options):
    x = x.detach().clone().requires_grad_(True)
    out = function(x, **params)
    (grad,) = torch.autograd.grad(out, x, upstream, **options)
    return out, grad


def _in_place(module: ModuleType, monkeypatch: pytest.MonkeyPatch, call, *args):
    """``call(*args)`` with the module's fused loops off: its PyTorch operations."""
    with monkeypatch.context() as patch:
        patch.setitem(module._FUSED_STATE, "library", None)
        return call(*args)


#: Functions the C++ printer leaves to PyTorch's operations (slower as ATen vectors, or inaccurate there).
UNTRANSLATED = ("erfc", "asinh")


def _translatable(exprs) -> bool:
    return not any(type(node).__name__ in UNTRANSLATED for e in exprs for node in sp.preorder_traversal(e))


#: Implementations whose derivative needs the exponentials (or tanh) their forward computes anyway: their fused
#: forward saves it and their backward is one product. tanh's derivative sigma(-2|x|) needs an exp beside
#: SLEEF's tanh, elu's an exp beside its expm1: they save nothing, as the ops whose backward is arithmetic.
SAVING = {"gelu_none", "silu", "mish", "softplus", "sigmoid", "logsigmoid", "tanhshrink"}


def _expected_loops(implementation: str, forms) -> set[str]:
    """The loops an implementation runs for a value and its gradient: ``forward_saving`` alone where it is in
    :data:`SAVING`, else its forward and backward where the C++ printer translates their forms."""
    if implementation in SAVING:
        return {f"{implementation}_forward_saving"}
    return {f"{implementation}_{what}" for what, exprs in (("forward", forms.forward_exprs.values()),
                                                           ("backward", forms.backward_exprs.values()))
            if _translatable(exprs)}


def _directions(loops: set[str]) -> set[str]:
    """``forward``, ``backward``, ``forward_saving``: what each loop of ``loops`` computes."""
    return {re.search(r"(forward_saving|forward|backward)$", loop).group(1) for loop in loops}


def _fused_loops(name: str, variant: str, fast: int | None = None) -> set[str]:
    """The loops the op's implementation (the general one, or a parameter case) runs (:func:`_expected_loops`)."""
    op = ACTIVATIONS_AND_LOSSES[name]
    formula = next(f for v, k, gathered, f in implementations(op) if v == variant and k == fast and not gathered)
    printed = print_forms(op, formula, TorchPrinter, TorchInplacePrinter, lower_to_torch, True, TORCH_CPU_COSTS)
    return _expected_loops(implementation_name(op, variant, fast), printed)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_implementation_has_fused_loops(name: str) -> None:
    """Every variant and parameter case of every elementwise catalog op prints a fused forward and backward,
    except a direction whose forms call erfc or asinh (ATen's vector erfc is slower than torch.erfc, its asinh
    overflows), so no op is left to its PyTorch operations for want of a translation."""
    op = ACTIVATIONS_AND_LOSSES[name]
    for variant, fast, gathered, formula in implementations(op):
        printed = print_forms(op, formula, TorchPrinter, TorchInplacePrinter, lower_to_torch, True, TORCH_CPU_COSTS)
        kernels = fused_kernels(op, implementation_name(op, variant, fast, gathered), printed)
        assert kernels is not None, (name, variant, fast)
        for call, exprs in ((kernels.forward, printed.forward_exprs), (kernels.backward, printed.backward_exprs)):
            assert (call is not None) == _translatable(exprs.values()), (name, variant, fast, exprs)
            assert call is None or f"void {call.kernel}(" in kernels.source


def test_a_direction_without_a_translation_keeps_its_operations(tmp_path: Path) -> None:
    """asinh has no fused form (ATen's vector asinh overflows from x = 1e19 in float32, torch.asinh does not):
    the op's forward keeps its operations, its backward (1 / hypot(x, 1)) is fused, and both are right far out."""
    op = define_op("arsinh_unit", "asinh(x)")
    source = export_source([op], "torch")
    assert "_fused('arsinh_unit_forward'" not in source and "_fused('arsinh_unit_backward'" in source
    path = tmp_path / "ops.py"
    path.write_text(source)
    module = load(path, "ops_torch_asinh")
    x = torch.tensor([1.0, 1e30], dtype=torch.float32, requires_grad=True)
    out = module.arsinh_unit(x)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    torch.testing.assert_close(out, torch.asinh(x), rtol=2e-7, atol=0)
    torch.testing.assert_close(grad, torch.tensor([0.5**0.5, 1e-30]), rtol=4e-7, atol=0)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "variant"), ELEMENTWISE_CASES)
def test_the_fused_loops_run_and_keep_the_dtype(exported: ModuleType, name: str, variant: str, dtype: torch.dtype,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 2)
    spy = _Spy(exported, monkeypatch)
    x = torch.tensor(np.random.default_rng(2).standard_normal(101) * 3, dtype=dtype)
    out, grad = _value_and_grad(getattr(exported, name), x, params, torch.ones_like(x))
    assert out.dtype == grad.dtype == dtype and out.is_contiguous()
    # (the parameters may select a case's implementation: its loops' directions are compared)
    assert _directions(spy.ran()) == _directions(_fused_loops(name, variant)), spy.calls


@needs_compiler
@pytest.mark.parametrize(("name", "index", "params"), [c for c in case_settings()
                                                       if ACTIVATIONS_AND_LOSSES[c.values[0]].kind == "elementwise"])
def test_parameter_cases_run_their_own_fused_loops(exported: ModuleType, name: str, index: int, params: dict,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a case's condition holds (elu's alpha = 1), the case's own loops run, and give the built-in's values."""
    op = ACTIVATIONS_AND_LOSSES[name]
    spy = _Spy(exported, monkeypatch)
    x = torch.tensor(np.random.default_rng(index).standard_normal(64) * 3)
    out, grad = _value_and_grad(getattr(exported, name), x, params, torch.ones_like(x))
    assert spy.ran() == _fused_loops(name, "", len(op.fast_paths) + index)  # the case's loops
    builtin = getattr(torch.nn.functional, op.torch.split(".")[-1])
    expected, expected_grad = _value_and_grad(builtin, x, params, torch.ones_like(x))
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=0)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "variant"), ELEMENTWISE_CASES)
def test_non_finite_values_and_kink_subgradients_are_the_operations(exported: ModuleType, name: str, variant: str,
                                                                     dtype: torch.dtype,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """At each kink and the floats beside it, signed zeros, infinities, NaN and the extreme floats, the fused
    loops give NaN and +-inf exactly where the PyTorch operations do; at the kinks themselves, the same values
    and the same subgradient, bit for bit."""
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 4)
    function = getattr(exported, name)
    symbols = {p.symbol: params[p.name] for p in op.params if p.symbol is not None and p.name in params}
    kinks = torch.tensor([float(k.at.subs(symbols)) for k in op.formulas[variant].kinks], dtype=dtype)
    for x, exact in ((_special_values(op, variant, params, dtype), False), (kinks, True)):
        upstream = torch.linspace(-2, 2, x.numel(), dtype=dtype)
        fused = _value_and_grad(function, x, params, upstream)
        operations = _in_place(exported, monkeypatch, _value_and_grad, function, x, params, upstream)
        for got, want in zip(fused, operations):
            got, want = got.detach(), want.detach()
            if exact:
                assert torch.equal(got, want), (x, got, want)
            assert torch.equal(torch.isnan(got), torch.isnan(want)), (x, got, want)
            infinite = torch.isinf(want)
            assert torch.equal(torch.isinf(got), infinite) and torch.equal(got[infinite], want[infinite])


@needs_compiler
def test_partial_vectors_and_threads_give_each_element_its_own_value(exported: ModuleType) -> None:
    """Every length up to three vectors (the last vector partial) gives the values the long tensor gives at the
    same elements, and two threads the values of one, bit for bit: the loop neither skips nor mixes elements."""
    x = torch.tensor(np.random.default_rng(0).standard_normal(100_003) * 4, dtype=torch.float32)
    upstream = torch.tensor(np.random.default_rng(1).standard_normal(100_003), dtype=torch.float32)
    whole, whole_grad = _value_and_grad(exported.silu, x, {}, upstream)
    for n in range(3 * 16 + 2):
        out, grad = _value_and_grad(exported.silu, x[:n], {}, upstream[:n])
        assert torch.equal(out, whole[:n]) and torch.equal(grad, whole_grad[:n]), n
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out, grad = _value_and_grad(exported.silu, x, {}, upstream)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, whole) and torch.equal(grad, whole_grad)


@needs_compiler
def test_the_operations_run_where_the_loops_do_not_apply(exported: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transposed (non-contiguous) input, float16 and bfloat16, a parameter given as a tensor and the backward
    under create_graph (which needs the recorded operations) take the PyTorch operations: the fused loops are
    not called, and the values are the operations' bit for bit. A broadcast upstream gradient is made
    contiguous and fused (hardswish: its backward is a loop)."""
    data = np.random.default_rng(3).standard_normal((6, 5)) * 3
    cases = [
        ("silu", torch.tensor(data).t(), {}),
        ("silu", torch.tensor(data, dtype=torch.float16), {}),
        ("silu", torch.tensor(data, dtype=torch.bfloat16), {}),
        ("leaky_relu", torch.tensor(data), {"negative_slope": torch.tensor(0.2, dtype=torch.float64)}),
    ]
    for name, x, params in cases:
        spy = _Spy(exported, monkeypatch)
        function = getattr(exported, name)
        got = _value_and_grad(function, x, params, torch.ones_like(x))
        assert spy.ran() == set(), (name, x.dtype, spy.calls)
        want = _in_place(exported, monkeypatch, _value_and_grad, function, x, params, torch.ones_like(x))
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    x = torch.tensor(data, requires_grad=True)
    spy = _Spy(exported, monkeypatch)
    (grad,) = torch.autograd.grad(exported.sigmoid(x).sum(), x, create_graph=True)
    assert spy.ran() == {"sigmoid_forward_saving"}  # the backward: recorded operations
    (second,) = torch.autograd.grad(grad.sum(), x)  # (through the saved output too: its backward, fused)
    expected = torch.tensor(data, requires_grad=True)
    (expected_grad,) = torch.autograd.grad(torch.sigmoid(expected).sum(), expected, create_graph=True)
    torch.testing.assert_close(second, torch.autograd.grad(expected_grad.sum(), expected)[0], rtol=1e-12, atol=1e-14)
    spy = _Spy(exported, monkeypatch)
    _value_and_grad(exported.hardswish, torch.tensor(data), {}, torch.ones(()).expand(6, 5))
    assert spy.ran() == {"hardswish_forward", "hardswish_backward"}


def _rebuild(module: ModuleType, monkeypatch: pytest.MonkeyPatch, cache: Path, **environment: str | None):
    """The module's library built again (not from this session's state) into ``cache``, with ``environment``
    set (None: unset); the warnings raised."""
    monkeypatch.setenv("SYMDL_FUSED_CACHE", str(cache))
    for key, value in environment.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    monkeypatch.delitem(module._FUSED_STATE, "library", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library = module._fused_library()
        module._fused_library()  # once: the state holds the outcome
    return library, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_without_a_compiler_the_module_warns_once_and_runs_its_operations(small: ModuleType, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    library, caught = _rebuild(small, monkeypatch, tmp_path / "cache", PATH=str(tmp_path), CXX=None)
    assert library is None and len(caught) == 1 and "no C++ compiler" in caught[0]
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(small.silu(x), torch.nn.functional.silu(x), rtol=1e-15, atol=1e-300)


def test_a_failed_build_warns_with_the_compilers_message_and_leaves_no_library(
        small: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = tmp_path / "broken-c++"
    compiler.write_text("#!/bin/sh\necho 'ops.cpp:1: error: this compiler is broken' >&2\nexit 1\n")
    compiler.chmod(0o755)
    library, caught = _rebuild(small, monkeypatch, tmp_path / "cache", CXX=str(compiler))
    assert library is None and len(caught) == 1
    assert "did not compile" in caught[0] and "this compiler is broken" in caught[0]
    assert not list((tmp_path / "cache").rglob("*.so"))  # no half-written library for the next process to load


@needs_compiler
def test_a_library_that_does_not_load_warns_and_leaves_the_operations(small: ModuleType, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached library that the loader rejects (damaged, or copied from a machine it was not built for) gives
    one warning naming the loader's message, and the module runs its PyTorch operations."""
    library, caught = _rebuild(small, monkeypatch, tmp_path / "built")
    assert library is not None and caught == []
    (built,) = (tmp_path / "built").glob("*.so")
    damaged = tmp_path / "cache" / built.name  # another path: the loader does not reuse the loaded library
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a shared object")
    library, caught = _rebuild(small, monkeypatch, damaged.parent)
    assert library is None and len(caught) == 1
    assert "did not load" in caught[0] and str(damaged) in caught[0]
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(small.silu(x), torch.nn.functional.silu(x), rtol=1e-15, atol=1e-300)


def test_symdl_fused_0_turns_the_loops_off_silently(small: ModuleType, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    library, caught = _rebuild(small, monkeypatch, tmp_path / "cache", SYMDL_FUSED="0")
    assert library is None and caught == [] and not (tmp_path / "cache").exists()


@needs_compiler
def test_the_library_is_built_once_and_then_loaded_from_the_cache(small: ModuleType, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    library, caught = _rebuild(small, monkeypatch, cache)
    assert library is not None and caught == []
    (built,) = cache.glob("*.so")
    assert [p.name for p in cache.iterdir()] == [built.name]  # the scratch directory is gone

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")
    monkeypatch.setattr(subprocess, "run", no_compiler)
    library, caught = _rebuild(small, monkeypatch, cache)
    assert library is not None and caught == [] and library._name == str(built)


@needs_compiler
def test_a_machine_without_avx2_builds_atens_portable_vectors(small: ModuleType, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ATen reports no vector capability it knows flags for (ARM, or an x86 without AVX2), the library is
    built on ATen's portable vectors (std:: functions per lane): it runs, and gives silu within a few ulp of the
    PyTorch operations."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    library, caught = _rebuild(small, monkeypatch, tmp_path / "cache")
    assert library is not None and caught == []
    x = torch.tensor(np.random.default_rng(6).standard_normal(1001) * 5, dtype=torch.float32)
    fused = _value_and_grad(small.silu, x, {}, torch.ones_like(x))
    operations = _in_place(small, monkeypatch, _value_and_grad, small.silu, x, {}, torch.ones_like(x))
    torch.testing.assert_close(fused[0], operations[0], rtol=4 * 2**-23, atol=1e-30)
    # the gradient g sigma(x) (1 + x (1 - sigma(x))) has a root: its rounding scales with its terms, 1 + |x|
    assert torch.all(torch.abs(fused[1] - operations[1]) <= 4 * 2**-23 * (1 + torch.abs(x)))


@needs_compiler
def test_the_forward_saves_the_derivative_only_where_a_gradient_is_wanted(exported: ModuleType,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The saving loop runs where an input requires grad; an input that does not (inference, under no_grad the
    activations) takes the plain forward loop: no derivative is computed or kept."""
    x = torch.tensor(np.random.default_rng(7).standard_normal(300))
    spy = _Spy(exported, monkeypatch)
    exported.sigmoid(x)
    with torch.no_grad():
        exported.sigmoid(x)
    assert spy.ran() == {"sigmoid_forward"}
    spy = _Spy(exported, monkeypatch)
    _value_and_grad(exported.sigmoid, x, {}, torch.ones_like(x))
    assert spy.ran() == {"sigmoid_forward_saving"}


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["sigmoid", "silu", "gelu", "softplus", "mish"])
def test_the_saved_derivative_gives_the_operations_gradient_and_survives_a_second_backward(
        exported: ModuleType, name: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """g times the saved derivative is the gradient the PyTorch operations compute from the saved input and
    output, to a few roundings (each is the same proven form, rounded in its own order); a second backward
    through the same graph (retain_graph) gives the same gradient bit for bit: the saved derivative is read,
    never written."""
    x = torch.tensor(np.random.default_rng(8).standard_normal(1000) * 4, dtype=dtype, requires_grad=True)
    upstream = torch.linspace(-2, 2, x.numel(), dtype=dtype)
    out = getattr(exported, name)(x)
    (first,) = torch.autograd.grad(out, x, upstream, retain_graph=True)
    (second,) = torch.autograd.grad(out, x, upstream)
    assert torch.equal(first, second)
    _, operations = _in_place(exported, monkeypatch, _value_and_grad, getattr(exported, name), x, {}, upstream)
    eps = torch.finfo(dtype).eps
    # the gradients' roundings scale with their terms (silu's and gelu's have roots): 1 + |x| bounds them
    assert torch.all(torch.abs(first - operations) <= 8 * eps * torch.abs(upstream) * (1 + torch.abs(x.detach())))


def _loop_source(source: str, kernel: str) -> str:
    """The C++ body of ``kernel`` in a module's _FUSED_SOURCE."""
    start = source.index(f"void {kernel}(")
    return source[start:source.index('extern "C"', start)]


@pytest.mark.parametrize(("name", "kernel"), [("sigmoid", "sigmoid_forward_saving"), ("silu", "silu_forward_saving"),
                                              ("softplus", "softplus_forward_saving"),
                                              ("logsigmoid", "logsigmoid_forward_saving"),
                                              ("gelu", "gelu_none_forward_saving")])
def test_a_saving_loop_computes_one_exponential_for_the_value_and_the_derivative(name: str, kernel: str) -> None:
    """The value and the derivative share their exponential (sigma(x) and sigma(-x) over e^-|x|; GELU's normal
    CDF and density over one Gaussian), so that saving the derivative costs the forward no second exp."""
    body = _loop_source(export_source([name], "torch"), kernel)
    assert body.count(".exp()") + body.count("symdl_gaussian<T>(") == 1, body


@needs_compiler
@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 8.0), (torch.float64, 5.0)], ids=["float32", "float64"])
def test_the_fused_normal_cdf_is_accurate_in_both_tails(exported: ModuleType, dtype: torch.dtype,
                                                        bound: float) -> None:
    """GELU's fused forward x Phi(x) (the NumPy kernel's forms of Phi over an exactly squared Gaussian) is within
    ``bound`` ulp of mpmath from x = -37.5 to 9, deep in the left tail too, where erfc(-x / sqrt 2) of a rounded
    x / sqrt 2 is off by up to x^2 / 2 ulp (measured at most 7.1 ulp in float32, 4.0 in float64); results below
    the smallest normal float are left out (their ulp is the subnormal one)."""
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(9)
    numpy_dtype = np.float32 if dtype == torch.float32 else np.float64
    xs = np.concatenate([rng.uniform(lo, hi, 200) for lo, hi in ((-37.5, -20), (-20, -8), (-8, -3), (-3, -0.7),
                                                                 (-0.7, 0.7), (0.7, 9))]).astype(numpy_dtype)
    values = exported.gelu(torch.tensor(xs)).numpy()
    worst = 0.0
    with mp.workdps(40):
        for x, value in zip(xs, values):
            exact = mp.mpf(float(x)) * mp.ncdf(mp.mpf(float(x)))
            rounded = numpy_dtype(float(exact))
            if abs(rounded) >= np.finfo(numpy_dtype).tiny:
                worst = max(worst, float(abs(mp.mpf(float(value)) - exact)) / float(np.spacing(abs(rounded))))
    assert worst <= bound
