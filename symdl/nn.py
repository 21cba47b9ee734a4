"""symdl.nn: layers whose forward and backward passes are symdl's generated kernels.

A model is a tree of :class:`Module` objects. ``forward`` computes with a
kernel from :mod:`symdl.kernels` and keeps what the backward pass needs;
``backward(grad)`` calls the matching ``<kernel>_vjp`` (whose gradient SymPy
derived and ``symdl verify`` checked), stores the parameter gradients in
``self.grads`` and returns the gradient of the input. Nothing here
differentiates anything by hand: the chain rule is :class:`Sequential`
calling ``backward`` in reverse order. (In training, :class:`Sequential` runs
each ``Conv2d - ReLU - MaxPool2d`` run as one fused step in the batch-last
layout, :mod:`symdl.kernels._layers.batch_last`: the same kernels' products,
sums and masks, fewer layout changes, the same values bit for bit.)

.. math::

    \\bar{x}_{k} = \\mathrm{vjp}_k(\\bar{x}_{k+1}, x_k), \\qquad
    \\bar{\\theta}_k = \\partial \\ell / \\partial \\theta_k \\text{ from the same vjp}

Parameters are plain NumPy arrays (float32 unless ``dtype=np.float64``),
updated in place by :mod:`symdl.optim`; ``backward`` overwrites the gradients
(there is no accumulation, so no ``zero_grad``). Initialisation is PyTorch's:
weights and biases of Linear and Conv2d uniform in
:math:`\\pm 1/\\sqrt{\\text{fan\\_in}}` (``kaiming_uniform_(a=sqrt(5))``), drawn
from the ``generator`` given (one seeded generator makes a run reproducible).

Every activation and loss of the catalog is a layer with PyTorch's class name
(``ReLU``, ``LeakyReLU(negative_slope=0.01)``, ``CrossEntropyLoss``, ...),
made at import time from the generated kernel modules, which are the catalog
in printed form (so importing nn needs no SymPy).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from symdl import kernels
from symdl.errors import SymdlError
from symdl.kernels._layers import batch_last

Array = np.ndarray


class ModelStateError(SymdlError, ValueError):
    """A state dict does not fit the model (missing, extra or mis-shaped arrays)."""


# --------------------------------------------------------------------------- the base class
class Module:
    """A layer or a container of layers.

    Subclasses put trainable arrays in ``self.params``, other state (running
    statistics) in ``self.buffers``, sub-modules in ``self.children``, and
    implement ``forward(*inputs)`` and ``backward(grad) -> grad of the input``.
    """

    training: bool = True

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.children: dict[str, Module] = {}

    def __call__(self, *inputs: Any) -> Array:
        return self.forward(*inputs)

    def forward(self, *inputs: Any) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        """Store the parameter gradients in ``self.grads``; return the gradient of the input.

        ``input_grad=False``: the caller does not need the input's gradient (a first layer's input
        is data), so a layer may skip computing it and return None (Linear and Conv2d do).
        """
        raise NotImplementedError

    # -- traversal: names as in PyTorch ("0.weight", "3.running_mean")
    def named_arrays(self, kind: str, prefix: str = "") -> Iterator[tuple[str, Array]]:
        """``(name, array)`` for ``kind`` in ``params``, ``grads`` or ``buffers``, depth first."""
        for name, array in getattr(self, kind).items():
            yield prefix + name, array
        for child_name, child in self.children.items():
            yield from child.named_arrays(kind, f"{prefix}{child_name}.")

    def modules(self) -> Iterator[Module]:
        """This module and every module below it."""
        yield self
        for child in self.children.values():
            yield from child.modules()

    def parameters(self) -> list[Array]:
        """The trainable arrays, in a fixed order (hand them to an optimizer)."""
        return [array for _, array in self.named_arrays("params")]

    def gradients(self) -> list[Array]:
        """The gradients from the last ``backward``, in the order of :meth:`parameters`."""
        slots = self.__dict__.get("_gradient_slots")
        if slots is None:  # walk the tree once: this runs every training step
            slots = self._gradient_slots = [(module.grads, name) for module in self.modules() for name in module.params]
        return [grads[name] for grads, name in slots]

    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers by name (the arrays themselves, not copies)."""
        return dict(self.named_arrays("params")) | dict(self.named_arrays("buffers"))

    def load_state_dict(self, state: dict[str, Array]) -> None:
        """Copy ``state`` into this model's arrays in place (optimizers keep their references).

        Raises:
            ModelStateError: when a name is missing or extra, or a shape differs.
        """
        own = self.state_dict()
        if own.keys() != state.keys():
            missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
            raise ModelStateError(f"state does not fit the model: missing {missing}, unexpected {extra}")
        for name, array in own.items():
            if np.shape(state[name]) != array.shape:
                raise ModelStateError(f"state does not fit the model: {name} has shape {np.shape(state[name])}, "
                                      f"the model's has {array.shape}")
            np.copyto(array, state[name], casting="same_kind")

    def flatten_parameters(self) -> Module:
        """Lay the parameters out in one buffer per dtype, in :meth:`parameters` order: each
        becomes a view of it, values unchanged (a model's parameters are then consecutive pieces
        of one array, which optimizers update without copying them: :mod:`symdl.optim.packing`).

        Call it before building the optimizer: an optimizer keeps the arrays it was given.
        ``to(dtype)`` makes new, separate arrays again.
        """
        stores: dict[np.dtype, list[tuple[dict[str, Array], str]]] = {}
        for module in self.modules():
            for name, array in module.params.items():
                stores.setdefault(array.dtype, []).append((module.params, name))
        for entries in stores.values():
            flat = np.concatenate([store[name] for store, name in entries], axis=None)
            start = 0
            for store, name in entries:
                shape = store[name].shape
                store[name] = flat[start:start + store[name].size].reshape(shape)
                start += store[name].size
        return self

    # -- modes and dtype
    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) or, with ``mode=False``, evaluation mode."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    def to(self, dtype: type | np.dtype) -> Module:
        """Cast parameters and floating buffers to ``dtype`` (new arrays: build optimizers afterwards);
        counters such as ``num_batches_tracked`` stay integers."""
        for module in self.modules():
            for store in (module.params, module.buffers):
                for name, array in store.items():
                    if np.issubdtype(array.dtype, np.floating):
                        store[name] = array.astype(dtype)
            module.grads.clear()
        return self

    def __repr__(self) -> str:
        if not self.children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self.children.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        return ""


@functools.cache
def _takes_input_grad(layer: type) -> bool:
    """Whether ``layer.backward`` accepts ``input_grad`` (a user's layer may predate it)."""
    return "input_grad" in inspect.signature(layer.backward).parameters


class Sequential(Module):
    """Layers applied in order; the backward pass runs them in reverse (the chain rule).

    Runs of ``Conv2d - ReLU - MaxPool2d`` (these classes exactly, pools whose windows tile the
    plane) run as one fused step in training (:class:`_BatchLastChain`): the same values, with
    fewer layout changes. The layers stay this model's children, with their names and arrays.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.children = {str(i): layer for i, layer in enumerate(layers)}
        self.layers = layers
        self._steps: tuple[Module, ...] = _fused_steps(layers)

    def forward(self, x: Array) -> Array:
        for step in self._steps:
            x = step.forward(x)
        return x

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        """The chain rule, last layer first. With ``input_grad=False`` the layers before the first one
        with parameters are not run at all and that one skips its input's gradient (returns None)."""
        steps = self._steps
        first = 0 if input_grad else next(
            (i for i, step in enumerate(steps) if any(module.params for module in step.modules())), len(steps))
        for index in range(len(steps) - 1, first - 1, -1):
            step = steps[index]
            if index == first and not input_grad and _takes_input_grad(type(step)):
                grad = step.backward(grad, input_grad=False)
            else:  # the plain call: a user's layer may define backward(grad) only
                grad = step.backward(grad)
        return grad if input_grad else None

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)


class _BatchLastChain(Module):
    """``Conv2d - ReLU - MaxPool2d`` blocks run as one step of a :class:`Sequential` (not a child: the
    layers stay the model's, with their names; this step only holds them).

    In training, with one kernel thread, on a batched floating input whose dtype the weights share,
    the blocks run in the batch-last layout (:mod:`symdl.kernels._layers.batch_last`): one layout
    change in, one out, where the layers convert around every convolution and pool, and each
    ReLU acts on the pooled values. The values are the layers' own (the same products and sums; the
    ReLU commutes with the maximum; the gradient reaches the same position). Otherwise (evaluation,
    several threads, unbatched or mixed-dtype input, a bad call) the layers run one by one, as
    without fusion, and raise their usual errors.
    """

    def __init__(self, blocks: list[tuple[Conv2d, Module, MaxPool2d]]) -> None:
        super().__init__()
        self.blocks = blocks
        self.layers: tuple[Module, ...] = tuple(layer for block in blocks for layer in block)
        self._plans: dict[tuple, list[Any] | None] = {}
        self._saved: list[Any] | None = None  # the fused forward's, per block; None: the layers ran

    def modules(self) -> Iterator[Module]:
        for layer in self.layers:
            yield from layer.modules()

    def _plan(self, x: Array) -> list[Any] | None:
        """The blocks' plans for ``x``, or None when the fused path does not cover the call."""
        if type(x) is not np.ndarray or kernels.get_num_threads() != 1 \
                or not all(layer.training for layer in self.layers):
            return None
        key = (x.shape, x.dtype, *((conv.params["weight"].shape, conv.params["weight"].dtype,
                                    *((b.shape, b.dtype) if (b := conv.params.get("bias")) is not None else ()),
                                    *conv.options.values(), *pool.options.values())
                                   for conv, _, pool in self.blocks))
        if key not in self._plans:
            plans: list[Any] | None = []
            shape = x.shape
            for conv, _, pool in self.blocks:
                plan = batch_last.block_plan(shape, x.dtype, conv.params["weight"], conv.params.get("bias"),
                                             conv.options, pool.options)
                if plan is None:
                    plans = None
                    break
                plans.append(plan)
                shape = plan.out_shape
            if len(self._plans) > 16:  # a model sees a few batch shapes
                self._plans.clear()
            self._plans[key] = plans
        return self._plans[key]

    def forward(self, x: Array) -> Array:
        plans = self._plan(x)
        if plans is None:
            self._saved = None
            for layer in self.layers:
                x = layer.forward(x)
            return x
        xp = batch_last.to_batch_last(x, plans[0])
        saved = []
        for index, ((conv, _, _), plan) in enumerate(zip(self.blocks, plans, strict=True)):
            if index:
                xp = batch_last.padded_input(saved[-1][1].maxima, plan)
            saved.append((plan, batch_last.block_forward(xp, conv.params["weight"], conv.params.get("bias"), plan)))
        self._saved = saved
        return batch_last.chain_output(saved[-1][1].maxima)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        if self._saved is None:
            last = len(self.layers) - 1
            for index in range(last, -1, -1):
                grad = self.layers[index].backward(grad, input_grad=input_grad) if index == 0 \
                    else self.layers[index].backward(grad)
            return grad
        saved = self._saved
        plan = saved[-1][0]
        dtype = saved[-1][1].maxima.dtype
        grad = batch_last.grad_to_batch_last(grad, plan, dtype)
        for index in range(len(saved) - 1, -1, -1):
            conv = self.blocks[index][0]
            plan, kept = saved[index]
            grad, conv.grads["weight"], d_bias = batch_last.block_backward(
                grad, conv.params["weight"], conv.params.get("bias"), plan, kept, input_grad or index > 0)
            if d_bias is not None:
                conv.grads["bias"] = d_bias
        return None if grad is None else batch_last.grad_to_batch_first(grad)


def _fused_steps(layers: tuple[Module, ...]) -> tuple[Module, ...]:
    """``layers`` with each run of ``Conv2d - ReLU - MaxPool2d`` blocks (exactly these classes: a
    subclass may change what they compute) as one :class:`_BatchLastChain`."""
    steps: list[Module] = []
    blocks: list[tuple[Any, ...]] = []
    index = 0
    while index < len(layers):
        block = layers[index:index + 3]
        if tuple(map(type, block)) == (Conv2d, ACTIVATIONS["relu"], MaxPool2d):
            blocks.append(block)
            index += 3
            continue
        if blocks:
            steps.append(_BatchLastChain(blocks))  # type: ignore[arg-type]
            blocks = []
        steps.append(layers[index])
        index += 1
    if blocks:
        steps.append(_BatchLastChain(blocks))  # type: ignore[arg-type]
    return tuple(steps)


# --------------------------------------------------------------------------- layers with parameters
def _uniform(generator: np.random.Generator | None, bound: float, shape: tuple[int, ...], dtype: Any) -> Array:
    """U(-bound, bound) drawn in float64 (the same numbers for every dtype), then cast."""
    generator = np.random.default_rng() if generator is None else generator
    return generator.uniform(-bound, bound, shape).astype(dtype)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


class _Weighted(Module):
    """A layer ``kernel(x, weight, bias, **options)``; its backward stores the weight and bias
    gradients from ``kernel_vjp`` and returns the input's. ``saved``: what the forward kept for
    the backward (keyword arguments of ``kernel_vjp``)."""

    kernel: str = ""
    saved: dict[str, Any] = {}

    def __init__(self, weight_shape: tuple[int, ...], fan_in: int, bias: bool, dtype: Any,
                 generator: np.random.Generator | None, **options: Any) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) for the weight, and torch's bias rule
        self.params["weight"] = _uniform(generator, bound, weight_shape, dtype)
        if bias:
            self.params["bias"] = _uniform(generator, bound, weight_shape[:1], dtype)
        self.options = options
        self._forward: Callable[..., Array] = getattr(kernels, self.kernel)
        self._vjp: Callable[..., tuple[Array | None, ...]] = getattr(kernels, self.kernel + "_vjp")

    def forward(self, x: Array) -> Array:
        self.input = x
        return self._forward(x, self.params["weight"], self.params.get("bias"), **self.options)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        d_input, self.grads["weight"], d_bias = self._vjp(grad, self.input, self.params["weight"],
                                                          self.params.get("bias"), **self.options, **self.saved,
                                                          input_grad=input_grad)
        if d_bias is not None:
            self.grads["bias"] = d_bias
        return d_input  # type: ignore[return-value]


class Linear(_Weighted):
    """:math:`y = x W^T + b` with ``weight`` (out, in) and ``bias`` (out), as ``torch.nn.Linear``."""

    kernel = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype: Any = np.float32,
                 generator: np.random.Generator | None = None) -> None:
        super().__init__((out_features, in_features), in_features, bias, dtype, generator)

    def extra_repr(self) -> str:
        out_features, in_features = self.params["weight"].shape
        return f"in_features={in_features}, out_features={out_features}, bias={'bias' in self.params}"


class Conv2d(_Weighted):
    """2-D convolution (cross-correlation) over NCHW input, as ``torch.nn.Conv2d``;
    ``weight`` is (out, in / groups, kh, kw)."""

    kernel = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, *,
                 dtype: Any = np.float32, generator: np.random.Generator | None = None) -> None:
        kh, kw = _pair(kernel_size)
        super().__init__((out_channels, in_channels // groups, kh, kw), in_channels // groups * kh * kw, bias, dtype,
                         generator, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def forward(self, x: Array) -> Array:
        """In training, the forward's im2col columns are kept for the backward (``return_columns``),
        which then does not build them again."""
        if not self.training:
            self.saved = {}
            return super().forward(x)
        self.input = x
        out, columns = self._forward(x, self.params["weight"], self.params.get("bias"), **self.options,
                                     return_columns=True)
        self.saved = {"columns": columns}
        return out

    def extra_repr(self) -> str:
        out, inp, kh, kw = self.params["weight"].shape
        return f"{inp * self.options['groups']}, {out}, kernel_size=({kh}, {kw}), " + \
            ", ".join(f"{k}={v}" for k, v in self.options.items())


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, as ``torch.nn.BatchNorm2d``: batch
    statistics in training (running statistics updated in place), running ones in eval.

    ``momentum=None`` keeps the cumulative average of the batch statistics, as PyTorch: the
    update factor of the n-th training batch is 1/n (``num_batches_tracked`` counts them).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True, *,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        if affine:
            self.params["weight"] = np.ones(num_features, dtype)
            self.params["bias"] = np.zeros(num_features, dtype)
        self.buffers["running_mean"] = np.zeros(num_features, dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)
        self.eps, self.momentum = eps, momentum

    def _arrays(self) -> tuple[Array | None, ...]:
        return (self.buffers["running_mean"], self.buffers["running_var"], self.params.get("weight"),
                self.params.get("bias"))

    def forward(self, x: Array) -> Array:
        self.input, self.mode = x, self.training
        if self.training:
            self.buffers["num_batches_tracked"] += 1
        # the factor this batch's statistics enter the running ones with
        count = int(self.buffers["num_batches_tracked"])
        self.factor = self.momentum if self.momentum is not None else 1.0 / count if count else 0.0
        return kernels.batch_norm(x, *self._arrays(), training=self.training, momentum=self.factor, eps=self.eps)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        d_input, _, _, d_weight, d_bias = kernels.batch_norm_vjp(grad, self.input, *self._arrays(), training=self.mode,
                                                                 momentum=self.factor, eps=self.eps)
        if "weight" in self.params:
            self.grads["weight"], self.grads["bias"] = d_weight, d_bias
        return d_input


class LayerNorm(Module):
    """Normalisation over the last ``len(normalized_shape)`` axes, as ``torch.nn.LayerNorm``."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 *, dtype: Any = np.float32) -> None:
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if elementwise_affine:
            self.params["weight"] = np.ones(self.normalized_shape, dtype)
            self.params["bias"] = np.zeros(self.normalized_shape, dtype)
        self.eps = eps

    def forward(self, x: Array) -> Array:
        self.input = x
        return kernels.layer_norm(x, self.params.get("weight"), self.params.get("bias"),
                                  normalized_shape=self.normalized_shape, eps=self.eps)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        d_input, d_weight, d_bias = kernels.layer_norm_vjp(grad, self.input, self.params.get("weight"),
                                                           self.params.get("bias"),
                                                           normalized_shape=self.normalized_shape, eps=self.eps)
        if "weight" in self.params:
            self.grads["weight"], self.grads["bias"] = d_weight, d_bias
        return d_input


# --------------------------------------------------------------------------- layers without parameters
class _Stateless(Module):
    """A layer ``kernel(x, **options)`` whose backward is ``kernel_vjp(grad, x, **options)[0]``."""

    kernel: str = ""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options
        self._forward: Callable[..., Array] = getattr(kernels, self.kernel)
        self._vjp: Callable[..., tuple[Array | None, ...]] = getattr(kernels, self.kernel + "_vjp")

    def forward(self, x: Array) -> Array:
        self.input = x
        return self._forward(x, **self.options)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        return self._vjp(grad, self.input, **self.options)[0]  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class MaxPool2d(_Stateless):
    """Max pooling, as ``torch.nn.MaxPool2d``; ties go to the first maximum (the forward's
    indices are handed to the backward, so the window is not scanned twice)."""

    kernel = "max_pool2d"

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                         ceil_mode=ceil_mode)

    def forward(self, x: Array) -> Array:
        self.input = x
        out, self.indices = self._forward(x, return_indices=True, **self.options)
        return out

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        return self._vjp(grad, self.input, indices=self.indices, **self.options)[0]  # type: ignore[return-value]


class AvgPool2d(_Stateless):
    """Average pooling, as ``torch.nn.AvgPool2d``."""

    kernel = "avg_pool2d"

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad, divisor_override=divisor_override)


class Flatten(_Stateless):
    """Flatten axes ``start_dim..end_dim`` into one, as ``torch.nn.Flatten`` (default: all but the batch)."""

    kernel = "flatten"

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__(start_dim=start_dim, end_dim=end_dim)


class Dropout(_Stateless):
    """Zero each element with probability ``p`` in training and scale the rest by 1/(1-p),
    as ``torch.nn.Dropout``; the identity in eval mode. The keep-mask is drawn from ``generator``."""

    kernel = "dropout"

    def __init__(self, p: float = 0.5, *, generator: np.random.Generator | None = None) -> None:
        super().__init__(p=p)
        self.generator = np.random.default_rng() if generator is None else generator

    def forward(self, x: Array) -> Array:
        self.input, self.mode = x, self.training
        # a 0/1 mask in x's dtype (a boolean one would turn a float32 gradient into float64)
        if self.training:
            self.mask = (self.generator.random(x.shape) >= self.options["p"]).astype(x.dtype)
        else:  # the kernel ignores the mask in eval mode; a broadcast view costs nothing
            self.mask = np.broadcast_to(np.ones((), x.dtype), x.shape)
        return self._forward(x, self.mask, training=self.mode, **self.options)

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        return self._vjp(grad, self.input, self.mask, training=self.mode, **self.options)[0]  # type: ignore


# --------------------------------------------------------------------------- the catalog as layers
#: Words whose PyTorch spelling is not simply capitalised (``leaky_relu`` -> ``LeakyReLU``).
_SPELLING = {"relu": "ReLU", "relu6": "ReLU6", "elu": "ELU", "selu": "SELU", "celu": "CELU", "gelu": "GELU",
             "silu": "SiLU", "logsigmoid": "LogSigmoid", "mse": "MSE", "l1": "L1", "nll": "NLL", "kl": "KL",
             "bce": "BCE", "multilabel": "MultiLabel"}


def class_name(op: str, family: str) -> str:
    """PyTorch's class name for a kernel: ``leaky_relu`` -> ``LeakyReLU``,
    ``binary_cross_entropy_with_logits`` -> ``BCEWithLogitsLoss``, ``log_cosh`` -> ``LogCoshLoss``."""
    words = op.replace("binary_cross_entropy", "bce").split("_")
    if family == "loss" and words[-1] == "loss":
        words.pop()
    return "".join(_SPELLING.get(word, word.capitalize()) for word in words) + ("Loss" if family == "loss" else "")


class Activation(Module):
    """Base of the activation layers: ``y = op(x, **params)``, backward ``op_vjp``.

    In training, an op whose VJP takes the saved output (``op_vjp(..., result=y)``: sigmoid, tanh,
    softmax, elu, ...) keeps ``y`` and passes it on, so the backward does not recompute the forward's
    exp or tanh (as PyTorch saves ``result``); the output must then not be modified in place before
    ``backward``.
    """

    op: str = ""
    param_names: tuple[str, ...] = ()
    defaults: dict[str, Any] = {}
    _forward: Callable[..., Array]
    _vjp: Callable[..., tuple[Array | None, ...]]
    _takes_result: bool = False  # op_vjp accepts result=
    output: Array | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # positional in PyTorch's order: LeakyReLU(0.2)
        super().__init__()
        signature = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                         default=self.defaults[name]) for name in self.param_names])
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}: {error}") from None
        bound.apply_defaults()
        self.options = dict(bound.arguments)

    def forward(self, x: Array) -> Array:
        self.input = x
        out = type(self)._forward(x, **self.options)
        self.output = out if self.training and self._takes_result else None
        return out

    def backward(self, grad: Array, input_grad: bool = True) -> Array | None:
        if self.output is not None:
            return type(self)._vjp(grad, self.input, result=self.output, **self.options)[0]  # type: ignore
        return type(self)._vjp(grad, self.input, **self.options)[0]  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class Loss(Module):
    """Base of the loss layers: ``forward(*inputs)`` returns ``op(*inputs, **params)``;
    ``backward(grad=1)`` returns the gradient of the first input (all of them in ``input_grads``).

    In training mode a reduced class loss (cross-entropy, ...) computes its value and its
    gradients in one kernel call, ``op_value_and_vjp(1, ...)``: a backward pass always follows,
    and the two share the softmax's maxima, exponentials and sums. ``backward()`` then returns
    the gradients already computed; ``backward(grad)`` with an explicit ``grad`` calls ``op_vjp``.
    """

    op: str = ""
    param_names: tuple[str, ...] = ()
    _forward: Callable[..., Array]
    _vjp: Callable[..., tuple[Array | None, ...]]
    _value_and_vjp: Callable[..., tuple[Array, tuple[Array | None, ...]]] | None = None
    defaults: dict[str, Any] = {}
    _unit_grads: tuple[Array | None, ...] | None = None  # from op_value_and_vjp, for grad = 1

    def __init__(self, **kwargs: Any) -> None:  # keyword-only: PyTorch's positional order has legacy arguments
        super().__init__()
        unknown = kwargs.keys() - set(self.param_names)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) {', '.join(sorted(unknown))}; "
                            f"it takes {', '.join(self.param_names)}")
        self.options = {name: kwargs.get(name, self.defaults[name]) for name in self.param_names}

    def forward(self, *inputs: Array) -> Array:
        self.inputs = inputs
        fused = type(self)._value_and_vjp
        if fused is not None and self.training and self.options.get("reduction") != "none":
            self.output, self._unit_grads = fused(1.0, *inputs, **self.options)
        else:
            self.output, self._unit_grads = type(self)._forward(*inputs, **self.options), None
        return self.output

    def backward(self, grad: Array | None = None) -> Array:
        if grad is None and self._unit_grads is not None:  # computed with the value
            self.input_grads = self._unit_grads
        else:
            self.input_grads = type(self)._vjp(np.ones_like(self.output) if grad is None else grad, *self.inputs,
                                               **self.options)
        return self.input_grads[0]  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


def _catalog_layer(op: str, family: str, base: type[Module]) -> type[Module]:
    """A layer class for the kernel ``op``: parameters and defaults from its signature."""
    forward = getattr(kernels, op)
    parameters = inspect.signature(forward).parameters.values()
    keywords = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    takes_result = "result" in inspect.signature(getattr(kernels, op + "_vjp")).parameters
    summary = (forward.__doc__ or "").strip().splitlines()[0]
    return type(class_name(op, family), (base,), {
        "op": op,
        "param_names": tuple(p.name for p in keywords),
        "defaults": {p.name: p.default for p in keywords},
        "_forward": staticmethod(forward),
        "_vjp": staticmethod(getattr(kernels, op + "_vjp")),
        "_value_and_vjp": staticmethod(fused) if (fused := getattr(kernels, op + "_value_and_vjp", None)) else None,
        "_takes_result": takes_result,
        "__doc__": f"{summary} Layer over ``symdl.kernels.{op}`` and ``{op}_vjp``.",
        "__module__": __name__,
    })


#: Kernel module -> (family, layer base class): which generated kernels become layers.
_FAMILIES = {"symdl.kernels.activations": ("activation", Activation), "symdl.kernels.losses": ("loss", Loss)}

ACTIVATIONS: dict[str, type[Module]] = {}  # op name -> layer class
LOSSES: dict[str, type[Module]] = {}
for _op in kernels.OPS:
    _family, _base = _FAMILIES.get(getattr(kernels, _op).__module__, (None, None))
    if _base is not None:
        _layer = _catalog_layer(_op, _family, _base)  # type: ignore[arg-type]
        (ACTIVATIONS if _family == "activation" else LOSSES)[_op] = _layer
        globals()[_layer.__name__] = _layer

__all__ = ["Module", "Sequential", "Linear", "Conv2d", "BatchNorm2d", "LayerNorm", "MaxPool2d", "AvgPool2d",
           "Flatten", "Dropout", "Activation", "Loss", "ACTIVATIONS", "LOSSES", "ModelStateError", "class_name",
           *(layer.__name__ for layer in (*ACTIVATIONS.values(), *LOSSES.values()))]
