"""The exported PyTorch module's CPU fast path: an elementwise op's forward and backward, each one C++ loop.

Eager PyTorch runs a formula as one operation per operation, each a pass over memory (silu's backward is
six); the built-in is one loop. This module prints the same proven forms as one loop over ATen's SIMD vectors
(:mod:`symdl.printing.vec_printer`): ``_FUSED_SOURCE``, C++ in the generated module, compiled on first use
by the module's ``_fused_library`` (the C++ compiler PyTorch's inductor uses too, ATen's headers from the
installed torch) into a per-user cache and loaded with ``ctypes``, so that the module still imports torch only.
Each autograd Function then takes, in order: the plain form under ``torch.compile`` (inductor fuses it
itself); the fused loop where ``_fused`` applies (CPU float32/float64 tensors of one shape, the first
contiguous, parameters Python numbers; the backward not under ``create_graph``, which needs the recorded
operations); else the PyTorch operations in their own temporaries. Where no compiler is found, or
``SYMDL_FUSED=0``, every call takes the PyTorch operations.

Where the backward would evaluate again an exponential or a logarithm the forward evaluates
(:func:`derivative_forms`: sigmoid, silu, GELU, softplus, logsigmoid, mish, tanhshrink), a third loop, ``NAME_forward_saving``, computes the value and the local derivative
together (one exponential for both: :func:`symdl.printing.vec_printer.over_exponentials`); the Function takes it
where an input requires grad, saves the derivative, and its backward is one product, ``g * d``.

Kernels take their arrays as one array of pointers (the inputs, then the outputs), the parameters as an
array of doubles and the length, one ``extern "C"`` entry point per dtype: ``NAME_float``, ``NAME_double``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy as sp

from symdl.catalog.spec import RESULT, Op
from symdl.export.forms import Printed, scalar_params
from symdl.printing.vec_printer import (
    VEC_PRELUDE,
    VecPrinter,
    exponentials,
    print_statements,
)

#: Op kinds with a fused loop: one output per element, from elements at the same index.
FUSED_KINDS = frozenset({"elementwise"})

#: Elements per task of ``at::parallel_for`` (ATen's own grain for elementwise loops, at::internal::GRAIN_SIZE).
GRAIN = 32768


@dataclass(frozen=True)
class FusedCall:
    """One fused loop: its C++ entry point's base name and what the Python code passes it.

    Attributes:
        kernel: the base name (``NAME_float``, ``NAME_double`` in the library).
        arrays: the Python names of the tensors read, in order.
        scalars: the Python names of the parameters passed as doubles, in order.
        outputs: the Python names the new tensors are assigned to, in order.
    """

    kernel: str
    arrays: tuple[str, ...]
    scalars: tuple[str, ...]
    outputs: tuple[str, ...]

    def lines(self) -> tuple[str, list[str]]:
        """The condition that runs the loop (binding ``fused``) and the lines that take its results."""
        arrays = ", ".join(self.arrays) + ("," if len(self.arrays) == 1 else "")
        scalars = ", ".join(self.scalars) + ("," if len(self.scalars) == 1 else "")
        call = f"(fused := _fused({self.kernel!r}, ({arrays}), ({scalars}), {len(self.outputs)})) is not None"
        return call, [f"{', '.join(self.outputs)}, = fused"]


@dataclass(frozen=True)
class FusedKernels:
    """One implementation's fused forward and backward (None: that direction keeps its PyTorch operations),
    their calls and C++ source.

    ``saving`` is the forward that also writes the local derivatives (None: there is none, see
    :func:`derivative_forms`); ``derivatives`` maps each ``grad_<input>`` to the name of its saved derivative,
    which the backward multiplies by ``g``.
    """

    forward: FusedCall | None
    backward: FusedCall | None
    source: str
    saving: FusedCall | None = None
    derivatives: dict[str, str] = field(default_factory=dict)


def derivative_forms(op: Op, printed: Printed) -> dict[str, sp.Expr]:
    """The local derivatives a fused forward saves: ``grad_<input>`` -> the derivative d, where every VJP is
    ``g * d`` (``g`` one factor of the product, so ``g * d`` is the same product: NaN and inf in ``g`` stay), the
    derivatives evaluate an exponential or a logarithm, and the forward already evaluates all of them
    (:func:`symdl.printing.vec_printer.exponentials`: sigmoid's sigma(x) sigma(-x) over its e^-|x|, GELU's
    density over its CDF's Gaussian). Empty otherwise: the backward computes from the saved input and output.

    Saving d is what JAX's linearization does: the forward's loop computes it for a few products more, and the
    backward is one product, as cheap as the built-in's, instead of a second exponential. It costs one tensor
    the size of the input per call, kept until the backward. Where the derivative needs an exponential the
    forward does not (tanh's sigma(-2|x|) beside SLEEF's tanh, elu's exp beside its expm1), saving would only
    move that exp, and nothing is saved."""
    g = op.upstream
    derivatives = {}
    for name, expr in printed.backward_exprs.items():
        if not (isinstance(expr, sp.Mul) and g in expr.args):
            return {}
        derivative = expr.xreplace({g: sp.S.One})
        if derivative.has(g):
            return {}
        derivatives[name] = derivative.xreplace({RESULT: printed.forward_exprs["out"]})
    forward = exponentials([printed.forward_exprs["out"]])
    needed = exponentials(derivatives.values())
    return derivatives if needed and needed <= forward else {}


def _kernel(call: FusedCall, printer: VecPrinter, outputs: dict[str, sp.Expr], what: str) -> str:
    """The C++ template and entry points of one loop computing ``outputs`` from ``call.arrays``."""
    body = print_statements({f"r_{name}": expr for name, expr in outputs.items()}, printer)
    pointers = [f"const T* a_{name} = static_cast<const T*>(arrays[{i}]);" for i, name in enumerate(call.arrays)]
    pointers += [f"T* o_{name} = static_cast<T*>(arrays[{len(call.arrays) + i}]);"
                 for i, name in enumerate(call.outputs)]
    scalars = [f"const double s_{name} = scalars[{i}];" for i, name in enumerate(call.scalars)]
    loads = [f"const V<T> v_{name} = V<T>::loadu(a_{name} + i, m);" for name in call.arrays]
    stores = [f"r_{name}.store(o_{name} + i, m);" for name in call.outputs]
    loop = [*loads, *body, *stores]
    lines = [
        f"// {what}",
        *(f"//   {name} = {sp.sstr(expr)}" for name, expr in outputs.items()),
        "template <typename T>",
        f"void {call.kernel}(void* const* arrays, const double* scalars, int64_t n) {{",
        *(f"  {line}" for line in pointers + scalars),
        "  (void)scalars;",
        f"  at::parallel_for(0, n, {GRAIN}, [&](int64_t begin, int64_t end) {{",
        "    // m elements from i: whole vectors (m a constant once inlined: no branch per load), then the rest",
        "    auto step = [&](int64_t i, int64_t m) __attribute__((always_inline)) {",
        *(f"      {line}" for line in loop),
        "    };",
        "    int64_t i = begin;",
        "    for (; i + V<T>::size() <= end; i += V<T>::size()) step(i, V<T>::size());",
        "    if (i < end) step(i, end - i);",
        "  });",
        "}",
        *(f'extern "C" void {call.kernel}_{t}(void* const* arrays, const double* scalars, int64_t n) '
          f"{{ {call.kernel}<{t}>(arrays, scalars, n); }}" for t in ("float", "double")),
    ]
    return "\n".join(lines)


def fused_kernels(op: Op, name: str, printed: Printed) -> FusedKernels | None:
    """The fused loops of one implementation ``name`` of ``op`` (its printed forms), or None where there are
    none: an op kind other than :data:`FUSED_KINDS`, or neither direction translatable. A direction whose
    forms call a function the C++ printer does not translate keeps its PyTorch operations (a user op's
    ``erfc`` or ``asinh``: :mod:`symdl.printing.vec_printer`). With a forward, also the saving forward where
    :func:`derivative_forms` gives derivatives."""
    if op.kind not in FUSED_KINDS or printed.gathered or printed.saved:
        return None
    scalars = tuple(p.name for p in scalar_params(op))
    scalar_names = {p.symbol: f"s_{p.name}" for p in scalar_params(op)}
    inputs = tuple(i.symbol.name for i in op.inputs)
    vectors = {i.symbol: f"v_{i.symbol.name}" for i in op.inputs}
    read = inputs + (("result",) if printed.uses_result else ()) + ("g",)  # what the backward reads
    directions = [
        (FusedCall(f"{name}_forward", inputs, scalars, ("out",)), vectors, printed.forward_exprs, "forward"),
        (FusedCall(f"{name}_backward", read, scalars, tuple(printed.backward_exprs)),
         {**vectors, RESULT: "v_result", op.upstream: "v_g"}, printed.backward_exprs, "backward"),
    ]
    calls: list[FusedCall | None] = []
    sources = []
    for call, arrays, outputs, what in directions:
        try:
            sources.append(_kernel(call, VecPrinter(arrays, scalar_names), outputs, f"{name}: {what}"))
            calls.append(call)
        except NotImplementedError:
            calls.append(None)
    if not sources:
        return None
    saving, derivatives = None, {}
    forms = derivative_forms(op, printed) if calls[0] is not None else {}
    if forms:
        derivatives = {grad: f"derivative_{grad.removeprefix('grad_')}" for grad in forms}
        outputs = {"out": printed.forward_exprs["out"], **{derivatives[grad]: d for grad, d in forms.items()}}
        call = FusedCall(f"{name}_forward_saving", inputs, scalars, tuple(outputs))
        try:
            sources.append(_kernel(call, VecPrinter(vectors, scalar_names), outputs,
                                   f"{name}: forward, saving the derivatives"))
            saving = call
        except NotImplementedError:
            derivatives = {}
    return FusedKernels(calls[0], calls[1], "\n\n".join(sources), saving, derivatives)


def fused_source(kernels: Sequence[FusedKernels]) -> str:
    """The module's ``_FUSED_SOURCE`` assignment: the prelude and every implementation's loops."""
    source = "\n\n".join([VEC_PRELUDE.rstrip(), *(k.source for k in kernels)])
    return f'_FUSED_SOURCE = r"""{source}\n"""'


#: The generated module's runtime for the fused loops (its ``_fused`` and the library build).
FUSED_RUNTIME = r'''_FUSED_TYPES = {torch.float32: "float", torch.float64: "double"}
_FUSED_STATE = {}  # "library": the loaded library of _FUSED_SOURCE, or None where it cannot be built

#: Compiler flags per ATen CPU capability (torch.backends.cpu.get_cpu_capability()): the vector width
#: ATen's own kernels run at on this machine. Others compile ATen's portable vectors.
_FUSED_CAPABILITY_FLAGS = {
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
}


def _fused(kernel, arrays, scalars, outputs):
    """Run the loop ``kernel`` of _FUSED_SOURCE over ``arrays`` with the parameters ``scalars``: its
    ``outputs`` new tensors, or None where it does not apply and the caller runs its PyTorch operations
    (tensors not all CPU float32 or float64 of one shape, a first one not contiguous, a parameter that is not
    a Python number, no library: SYMDL_FUSED=0 or no C++ compiler). A call costs a few microseconds of Python
    (plain loops, no generators: below 1e5 elements these fixed costs are most of a call)."""
    first = arrays[0]
    dtype = _FUSED_TYPES.get(first.dtype)
    if dtype is None or not first.is_cpu or not first.is_contiguous():
        return None
    for array in arrays[1:]:
        if array.shape != first.shape or array.dtype != first.dtype or not array.is_cpu:
            return None
    for scalar in scalars:
        if not isinstance(scalar, (int, float)):
            return None
    library = _fused_library()
    if library is None:
        return None
    import ctypes

    function = getattr(library, f"{kernel}_{dtype}")  # ctypes keeps each function once looked up
    if function.argtypes is None:  # the length as a 64-bit integer (ctypes' default is a C int)
        function.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    arrays = [a.contiguous() for a in arrays]  # an upstream gradient may be a broadcast view
    results = [torch.empty_like(first) for _ in range(outputs)]
    pointers = (ctypes.c_void_p * (len(arrays) + outputs))(*[t.data_ptr() for t in arrays + results])
    values = (ctypes.c_double * max(len(scalars), 1))(*scalars)
    function(pointers, values, first.numel())
    return results


def _fused_library():
    """The compiled _FUSED_SOURCE (a ctypes library), built once: None where it cannot be (see _build_fused)."""
    if "library" not in _FUSED_STATE:
        _FUSED_STATE["library"] = _build_fused()
    return _FUSED_STATE["library"]


def _build_fused():
    """Compile _FUSED_SOURCE with the C++ compiler (CXX, else g++ or c++) against the installed torch's ATen
    headers, into the cache (SYMDL_FUSED_CACHE, else ~/.cache/symdl/fused), named by a hash of the source,
    the compiler, its flags and torch's version, and load it. Written atomically (compiled to a temporary
    file, then renamed): processes building at once each get a whole library. None, with a warning, where no
    compiler is found, the build fails or the library does not load; None without one where SYMDL_FUSED=0."""
    import ctypes
    import hashlib
    import os
    import shutil
    import subprocess
    import tempfile
    import warnings

    if os.environ.get("SYMDL_FUSED", "1") == "0":
        return None
    compiler = next(filter(None, (shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++") if c)), None)
    if compiler is None:
        warnings.warn("no C++ compiler (CXX, g++, c++): symdl's exported ops run their PyTorch operations, "
                      "without the fused CPU loops", RuntimeWarning, stacklevel=3)
        return None
    root = os.path.dirname(torch.__file__)
    capability = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off",
             *_FUSED_CAPABILITY_FLAGS.get(capability, []), "-I", os.path.join(root, "include")]
    libraries = ["-L", os.path.join(root, "lib"), "-ltorch_cpu", "-lc10", "-Wl,-rpath," + os.path.join(root, "lib")]
    key = hashlib.sha256("\0".join([_FUSED_SOURCE, compiler, *flags, torch.__version__]).encode()).hexdigest()
    cache = os.environ.get("SYMDL_FUSED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "symdl", "fused")
    path = os.path.join(cache, f"ops_{key[:24]}.so")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            source, built = os.path.join(scratch, "ops.cpp"), os.path.join(scratch, "ops.so")
            with open(source, "w") as file:
                file.write(_FUSED_SOURCE)
            run = subprocess.run([compiler, *flags, source, "-o", built, *libraries], capture_output=True, text=True)
            if run.returncode != 0:
                last = (run.stderr.strip().splitlines() or ["no message"])[-1]
                warnings.warn(f"symdl's fused CPU loops did not compile ({compiler}: {last}): the exported ops "
                              "run their PyTorch operations", RuntimeWarning, stacklevel=3)
                return None
            os.replace(built, path)
    try:
        return ctypes.CDLL(path)
    except OSError as error:  # a damaged file, or a cache shared with a machine it was not built for
        warnings.warn(f"symdl's fused CPU loops did not load ({error}): the exported ops run their PyTorch "
                      "operations; delete the file to build it again", RuntimeWarning, stacklevel=3)
        return None
'''
